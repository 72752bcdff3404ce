import Logging
import NIOCore
import NIOEmbedded
import Storage
import Synchronization
import Testing
import XMPPCore
import XMPPXMLParser

@testable import XMPPStream

/// The client connection on its own: a real `C2SConnection` in a test channel whose
/// event loop's clock the test moves, a delegate that keeps accounts in memory and
/// records sessions, and the server's bytes read back with the stream parser. No
/// socket, no database: negotiation, authentication, binding, routing, deadlines and
/// stream errors as a client sees them.
@Suite(.timeLimit(.minutes(1)))
struct C2SConnectionTests {
    /// The node's side as the connection sees it: accounts, and what it was told.
    final class Node: C2SDelegate {
        struct Record {
            var bound: [C2SSession] = []
            var routed: [XMLElement] = []
            var ended: [JID] = []
        }
        let accounts: [JID: StoredCredentials]
        let record = Mutex(Record())
        /// Each ended session, as it ends (`sessionEnded` runs in a task of its own).
        let ends: AsyncStream<JID>
        private let endsContinuation: AsyncStream<JID>.Continuation

        init(accounts: [String: String]) {
            var stored: [JID: StoredCredentials] = [:]
            for (account, password) in accounts {
                stored[try! JID(account)] = StoredCredentials.derive(password: password)
            }
            self.accounts = stored
            (ends, endsContinuation) = AsyncStream.makeStream(of: JID.self)
        }

        /// Lookups throw while set: the store does not answer.
        let lookupsFail = Mutex(false)
        struct StoreDown: Error {}

        func credentials(for account: JID) async throws -> StoredCredentials? {
            if lookupsFail.withLock({ $0 }) { throw StoreDown() }
            return accounts[account.bare]
        }
        func sessionBound(_ session: C2SSession) async { record.withLock { $0.bound.append(session) } }
        func route(_ stanza: XMLElement, from session: C2SSession) { record.withLock { $0.routed.append(stanza) } }
        func sessionEnded(_ session: C2SSession) async {
            record.withLock { $0.ended.append(session.jid) }
            endsContinuation.yield(session.jid)
        }

        /// The next session to end.
        func nextEnded() async -> JID? {
            var iterator = ends.makeAsyncIterator()
            return await iterator.next()
        }
    }

    /// A client at the other end of the test channel.
    final class Client {
        let channel: NIOAsyncTestingChannel
        let node: Node
        private let parser = XMLStreamParser()
        private var events: [XMLStreamEvent] = []
        let metrics: C2SMetrics

        init(options: C2SConfiguration.Options = Client.options, node: Node, throttle: AuthThrottle = AuthThrottle()) async throws {
            self.node = node
            let configuration = C2SConfiguration(domain: try JID("localhost"), tls: nil, options: options)
            metrics = configuration.metrics
            channel = NIOAsyncTestingChannel()
            try await channel.testingEventLoop.executeInContext { [channel] in
                let connection = C2SConnection(
                    configuration: configuration, delegate: node, throttle: throttle, admission: ConnectionAdmission(),
                    address: "127.0.0.1", tls: nil, directTLS: false, remoteIsLoopback: true,
                    logger: Logger(label: "c2s-test")
                )
                try channel.pipeline.syncOperations.addHandler(connection)
            }
            try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000))
        }

        static var options: C2SConfiguration.Options {
            var options = C2SConfiguration.Options()
            options.allowPlaintextOnLoopback = true
            options.authFailureDelayStep = .zero
            return options
        }

        func send(_ text: String) async throws {
            try await channel.writeInbound(ByteBuffer(string: text))
        }

        /// The server's next stream event (waits for its next write).
        func next() async throws -> XMLStreamEvent {
            while events.isEmpty {
                let buffer = try await channel.waitForOutboundWrite(as: ByteBuffer.self)
                events += try buffer.withUnsafeReadableBytes { try parser.parse($0) }
            }
            return events.removeFirst()
        }

        func element() async throws -> XMLElement {
            let event = try await next()
            guard case .element(let element) = event else {
                Issue.record("expected an element, got \(event)")
                throw CancellationError()
            }
            return element
        }

        func header() async throws -> XMLElement {
            let event = try await next()
            guard case .streamOpen(let header, _) = event else {
                Issue.record("expected a stream header, got \(event)")
                throw CancellationError()
            }
            return header
        }

        /// The stream error the server ends with, after its `</stream:stream>`.
        func streamError() async throws -> StreamError? {
            let element = try await element()
            let error = StreamError(element: element)
            let end = try await next()
            guard case .streamClose = end else {
                Issue.record("expected the end of the stream after \(element), got \(end)")
                return error
            }
            return error
        }

        func open(to domain: String = "localhost") async throws -> (header: XMLElement, features: XMLElement) {
            try await send(
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='\(domain)' version='1.0'>"
            )
            return (try await header(), try await element())
        }

        /// Opens the stream again after authenticating (the server reset its parser; so
        /// does the client).
        func restart() async throws -> (header: XMLElement, features: XMLElement) {
            parser.reset()
            return try await open()
        }

        func authenticate(_ user: String, _ password: String) async throws -> XMLElement {
            let plain = Base64.encode(Array("\0\(user)\0\(password)".utf8))
            try await send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>\(plain)</auth>")
            return try await element()
        }

        /// Logs in with PLAIN and binds `resource`; returns the bound JID.
        func logIn(_ user: String, _ password: String, resource: String) async throws -> String? {
            _ = try await open()
            let answer = try await authenticate(user, password)
            #expect(answer.name == "success", "\(answer)")
            let (_, features) = try await restart()
            #expect(features.child("bind", namespace: Namespace.bind) != nil)
            try await send(
                "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>\(resource)</resource></bind></iq>"
            )
            let bound = try await element()
            #expect(bound.type == "result" && bound.id == "bind1", "\(bound)")
            return bound.child("bind", namespace: Namespace.bind)?.child("jid", namespace: Namespace.bind)?.text
        }
    }

    static func node() -> Node { Node(accounts: ["romeo@localhost": "secret"]) }

    @Test func aClientLogsInBindsAndItsStanzasReachTheNodeStampedWithItsAddress() async throws {
        let client = try await Client(node: Self.node())
        let (header, features) = try await client.open()
        #expect(header[attribute: "from"] == "localhost")
        #expect(!(header[attribute: "id"] ?? "").isEmpty)
        let mechanisms = features.child("mechanisms", namespace: Namespace.sasl)?.children("mechanism", namespace: Namespace.sasl).map(\.text)
        #expect(mechanisms?.contains("PLAIN") == true && mechanisms?.contains("SCRAM-SHA-1") == true, "\(features)")
        #expect(features.child("bind", namespace: Namespace.bind) == nil, "no binding before authentication")
        let answer = try await client.authenticate("romeo", "secret")
        #expect(answer.name == "success" && answer.namespace == Namespace.sasl)

        // The restarted stream offers binding.
        let (_, boundFeatures) = try await client.restart()
        #expect(boundFeatures.child("bind", namespace: Namespace.bind) != nil)
        #expect(boundFeatures.child("mechanisms", namespace: Namespace.sasl) == nil)
        try await client.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>balcony</resource></bind></iq>")
        let bound = try await client.element()
        #expect(bound.child("bind", namespace: Namespace.bind)?.child("jid", namespace: Namespace.bind)?.text == "romeo@localhost/balcony")
        #expect(client.node.record.withLock { $0.bound.map(\.jid.description) } == ["romeo@localhost/balcony"])

        // A stanza is routed with the session's address as `from`, whatever the client wrote.
        try await client.send("<message to='juliet@localhost' id='m1'><body>hi</body></message>")
        try await client.send("<message from='romeo@localhost' to='juliet@localhost' id='m2'><body>again</body></message>")
        let routed = client.node.record.withLock { $0.routed }
        #expect(routed.map(\.id) == ["m1", "m2"])
        #expect(routed.allSatisfy { $0[attribute: "from"] == "romeo@localhost/balcony" })

        // What the node delivers to the session reaches the client.
        let session = try #require(client.node.record.withLock { $0.bound.first })
        session.deliver(XMLElement("message", namespace: Namespace.client, ["from": "juliet@localhost/tomb", "id": "r1"]))
        let delivered = try await client.element()
        #expect(delivered.name == "message" && delivered.id == "r1" && delivered[attribute: "from"] == "juliet@localhost/tomb")

        // The client ends the stream: the session ends before the server answers.
        try await client.send("</stream:stream>")
        let end = try await client.next()
        guard case .streamClose = end else {
            Issue.record("expected the end of the stream, got \(end)")
            return
        }
        #expect(client.node.record.withLock { $0.ended.map(\.description) } == ["romeo@localhost/balcony"])
        try await client.channel.closeFuture.get()
    }

    @Test func aWrongPasswordFailsAndTheThirdFailureEndsTheStream() async throws {
        let client = try await Client(node: Self.node())
        _ = try await client.open()
        for attempt in 1...2 {
            let failure = try await client.authenticate("romeo", "wrong\(attempt)")
            #expect(failure.name == "failure" && failure.child("not-authorized", namespace: Namespace.sasl) != nil, "\(failure)")
        }
        // An unknown account fails the same way.
        let failure = try await client.authenticate("nobody", "secret")
        #expect(failure.child("not-authorized", namespace: Namespace.sasl) != nil, "\(failure)")
        #expect(try await client.streamError()?.condition == .policyViolation)
        #expect(client.node.record.withLock { $0.bound.isEmpty })
    }

    @Test func theThrottleCountsTheClientsFailuresNotTheStoresAndForgetsThemOnSuccess() async throws {
        let node = Self.node()
        let throttle = AuthThrottle()
        let client = try await Client(node: node, throttle: throttle)
        let romeo = try JID("romeo@localhost")
        _ = try await client.open()
        #expect(try await client.authenticate("romeo", "wrong").name == "failure")
        #expect(throttle.failures(of: romeo) == 1)
        #expect(throttle.failures(from: "127.0.0.1") == 1)
        // A malformed first message counts for the address, though no account is named.
        try await client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AAA=</auth>")
        #expect(try await client.element().child("malformed-request", namespace: Namespace.sasl) != nil)
        #expect(throttle.failures(from: "127.0.0.1") == 2)
        // The store not answering is nobody's failure.
        node.lookupsFail.withLock { $0 = true }
        let unanswered = try await client.authenticate("romeo", "secret")
        #expect(unanswered.child("temporary-auth-failure", namespace: Namespace.sasl) != nil)
        #expect(throttle.failures(from: "127.0.0.1") == 2)
        #expect(throttle.failures(of: romeo) == 1)
        node.lookupsFail.withLock { $0 = false }
        #expect(try await client.authenticate("romeo", "secret").name == "success")
        #expect(throttle.failures(of: romeo) == 0, "a success forgets the account's failures")
    }

    @Test func aStanzaBeforeAuthenticationEndsTheStreamNotAuthorized() async throws {
        let client = try await Client(node: Self.node())
        _ = try await client.open()
        try await client.send("<message to='juliet@localhost'><body>early</body></message>")
        #expect(try await client.streamError()?.condition == .notAuthorized)
        #expect(client.node.record.withLock { $0.routed.isEmpty })
    }

    @Test func aStreamToAnotherDomainOrInAnotherNamespaceIsRefused() async throws {
        let other = try await Client(node: Self.node())
        try await other.send(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>")
        _ = try await other.header()
        #expect(try await other.streamError()?.condition == .hostUnknown)

        let namespace = try await Client(node: Self.node())
        try await namespace.send(
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
        _ = try await namespace.header()
        #expect(try await namespace.streamError()?.condition == .invalidNamespace)

        let version = try await Client(node: Self.node())
        try await version.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>")
        _ = try await version.header()
        #expect(try await version.streamError()?.condition == .unsupportedVersion)
    }

    @Test func malformedXMLIsNotWellFormed() async throws {
        let client = try await Client(node: Self.node())
        _ = try await client.open()
        try await client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'></wrong>")
        #expect(try await client.streamError()?.condition == .notWellFormed)
    }

    @Test func aClientThatSendsTooMuchBeforeLoggingInIsCutOff() async throws {
        var options = Client.options
        options.maxPreAuthBytes = 4096
        let client = try await Client(options: options, node: Self.node())
        _ = try await client.open()
        try await client.send("<message to='x@localhost'><body>" + String(repeating: "a", count: 5000))
        #expect(try await client.streamError()?.condition == .policyViolation)
    }

    /// The deadline is the event loop's timer: the test moves the loop's clock instead of waiting.
    @Test func aClientThatDoesNotLogInWithinTheDeadlineIsTimedOut() async throws {
        var options = Client.options
        options.negotiationTimeout = .seconds(30)
        let client = try await Client(options: options, node: Self.node())
        _ = try await client.open()
        await client.channel.testingEventLoop.advanceTime(by: .seconds(29))
        try await client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGJvZ3VzAHg=</auth>")
        #expect(try await client.element().name == "failure", "still negotiating before the deadline")
        await client.channel.testingEventLoop.advanceTime(by: .seconds(1))
        #expect(try await client.streamError()?.condition == .connectionTimeout)
    }

    @Test func aBoundSessionIsNotTimedOutByTheNegotiationDeadline() async throws {
        var options = Client.options
        options.negotiationTimeout = .seconds(30)
        let client = try await Client(options: options, node: Self.node())
        #expect(try await client.logIn("romeo", "secret", resource: "r") == "romeo@localhost/r")
        await client.channel.testingEventLoop.advanceTime(by: .seconds(60))
        try await client.send("<presence/>")
        #expect(client.node.record.withLock { $0.routed.map(\.name) } == ["presence"])
        #expect(client.channel.isActive)
    }

    /// A bound session that sends nothing releases its parser's state between 10 and 20 s
    /// later (by the loop's clock); one that keeps sending does not; a released one reads
    /// its next stanzas as before.
    @Test func anIdleSessionReleasesItsParserAndReadsOnAsBefore() async throws {
        let client = try await Client(node: Self.node())
        #expect(try await client.logIn("romeo", "secret", resource: "r") == "romeo@localhost/r")
        let loop = client.channel.testingEventLoop
        for second in 1...30 {
            await loop.advanceTime(by: .seconds(1))
            try await client.send("<presence id='busy-\(second)'/>")
        }
        #expect(client.metrics.idleSessionsReleased == 0, "a session that sends is not idle")
        // The last input came at 30 s: watched at 40 s (input since the check at 30 s), and
        // released at 50 s, within 10–20 s of it.
        await loop.advanceTime(by: .seconds(19))
        #expect(client.metrics.idleSessionsReleased == 0)
        await loop.advanceTime(by: .seconds(1))
        #expect(client.metrics.idleSessionsReleased == 1)
        // A whitespace keep-alive does not wake it, nor does it count as a second release.
        try await client.send(" ")
        await loop.advanceTime(by: .seconds(20))
        #expect(client.metrics.idleSessionsReleased == 1)
        try await client.send("<message to='juliet@localhost/b' type='chat' id='after'><body>still here</body></message>")
        let routed = client.node.record.withLock { $0.routed }
        #expect(routed.last?.child("body")?.text == "still here")
        #expect(routed.last?[attribute: "from"] == "romeo@localhost/r")
        // Idle again: released again, and nothing more while nothing is read.
        await loop.advanceTime(by: .seconds(20))
        #expect(client.metrics.idleSessionsReleased == 2)
        await loop.advanceTime(by: .seconds(60))
        #expect(client.metrics.idleSessionsReleased == 2)
        #expect(client.channel.isActive)
    }

    @Test func aStanzaFromAnotherAddressOrOfAnUnknownKindEndsTheStream() async throws {
        let spoofing = try await Client(node: Self.node())
        _ = try await spoofing.logIn("romeo", "secret", resource: "r")
        try await spoofing.send("<message from='juliet@localhost/tomb' to='x@localhost'><body>spoofed</body></message>")
        #expect(try await spoofing.streamError()?.condition == .invalidFrom)
        #expect(spoofing.node.record.withLock { $0.routed.isEmpty })
        #expect(await spoofing.node.nextEnded()?.description == "romeo@localhost/r")

        let unknown = try await Client(node: Self.node())
        _ = try await unknown.logIn("romeo", "secret", resource: "r")
        try await unknown.send("<note to='x@localhost'/>")
        #expect(try await unknown.streamError()?.condition == .unsupportedStanzaType)
    }

    @Test func aStanzaBeforeBindingEndsTheStreamNotAuthorized() async throws {
        let client = try await Client(node: Self.node())
        _ = try await client.open()
        #expect(try await client.authenticate("romeo", "secret").name == "success")
        _ = try await client.restart()
        try await client.send("<message to='juliet@localhost'><body>unbound</body></message>")
        #expect(try await client.streamError()?.condition == .notAuthorized)
        #expect(client.node.record.withLock { $0.routed.isEmpty && $0.bound.isEmpty })
    }

    /// Options that shape only what is under test (the other rate off).
    static func shaped(bytesPerSecond: Int = 0, burstBytes: Int = 1, stanzasPerSecond: Int = 0, burstStanzas: Int = 1, maxHeld: Int = 5000)
        -> C2SConfiguration.Options
    {
        var options = Client.options
        options.shaping.bytesPerSecond = bytesPerSecond
        options.shaping.burstBytes = burstBytes
        options.shaping.stanzasPerSecond = stanzasPerSecond
        options.shaping.burstStanzas = burstStanzas
        options.shaping.maxHeldStanzas = maxHeld
        return options
    }

    /// Whether the connection reads from its socket now (the last `autoRead` it set).
    static func reading(_ channel: NIOAsyncTestingChannel) -> Bool {
        channel.options.last { $0.option is ChannelOptions.Types.AutoReadOption }.map { $0.value as! Bool } ?? true
    }

    /// A session sending faster than its stanza rate: its burst is handled at once, the
    /// rest one by one at the rate (by the loop's clock), in order, with reading paused
    /// meanwhile; nothing is lost and the stream stays open.
    @Test func stanzasBeyondTheBurstWaitForTheRateInOrder() async throws {
        let client = try await Client(options: Self.shaped(stanzasPerSecond: 10, burstStanzas: 5), node: Self.node())
        _ = try await client.logIn("romeo", "secret", resource: "r")
        let loop = client.channel.testingEventLoop
        let routed = { client.node.record.withLock { $0.routed.compactMap(\.id) } }
        try await client.send((1...12).map { "<message to='juliet@localhost' id='m\($0)'/>" }.joined())
        #expect(routed() == (1...5).map { "m\($0)" }, "the burst goes at once")
        #expect(!Self.reading(client.channel), "reading waits while stanzas are held")
        // One more stanza every 100 ms.
        await loop.advanceTime(by: .milliseconds(99))
        #expect(routed().count == 5)
        await loop.advanceTime(by: .milliseconds(1))
        #expect(routed().count == 6)
        // What comes meanwhile queues behind the held stanzas.
        try await client.send("<message to='juliet@localhost' id='late'/>")
        await loop.advanceTime(by: .milliseconds(600))
        #expect(routed() == (1...12).map { "m\($0)" })
        #expect(Self.reading(client.channel) == false)
        await loop.advanceTime(by: .milliseconds(100))
        #expect(routed().last == "late")
        #expect(Self.reading(client.channel), "reading resumes once nothing is held")
        #expect(client.metrics.shapingDelays >= 1)
        #expect(client.channel.isActive)
    }

    /// Bytes are shaped by delaying the next read: what was read is handled, and reading
    /// resumes once the debt is paid at the rate.
    @Test func bytesBeyondTheBurstDelayTheNextRead() async throws {
        let client = try await Client(options: Self.shaped(bytesPerSecond: 1000, burstBytes: 1000), node: Self.node())
        _ = try await client.logIn("romeo", "secret", resource: "r")
        let loop = client.channel.testingEventLoop
        let body = String(repeating: "x", count: 2900)
        try await client.send("<message to='juliet@localhost' id='big'><body>\(body)</body></message>")
        #expect(client.node.record.withLock { $0.routed.last?.id } == "big", "what was read is handled")
        #expect(!Self.reading(client.channel), "about 2 s of debt: the next read waits")
        await loop.advanceTime(by: .milliseconds(1500))
        #expect(!Self.reading(client.channel))
        await loop.advanceTime(by: .milliseconds(600))
        #expect(Self.reading(client.channel))
        // Within its rate again, a session is not delayed.
        await loop.advanceTime(by: .seconds(5))
        try await client.send("<message to='juliet@localhost' id='small'/>")
        #expect(Self.reading(client.channel))
        #expect(client.node.record.withLock { $0.routed.last?.id } == "small")
    }

    /// A client that sends far more than its shaper holds back is ended with
    /// `<policy-violation/>` and a text saying why; what it sent before the limit was handled.
    @Test func aSessionHoldingBackMoreThanTheHardLimitIsEndedPolicyViolation() async throws {
        let client = try await Client(options: Self.shaped(stanzasPerSecond: 1, burstStanzas: 2, maxHeld: 10), node: Self.node())
        _ = try await client.logIn("romeo", "secret", resource: "r")
        try await client.send((1...13).map { "<presence id='p\($0)'/>" }.joined())
        let error = try await client.streamError()
        #expect(error?.condition == .policyViolation)
        #expect(error?.text?.contains("faster than this server allows") == true, "\(String(describing: error))")
        #expect(client.node.record.withLock { $0.routed.compactMap(\.id) } == ["p1", "p2"])
        #expect(client.metrics.shapedSessionsEnded == 1)
        #expect(await client.node.nextEnded()?.description == "romeo@localhost/r")
    }

    /// Negotiation is not shaped (its own limits apply): a client logs in at once even
    /// with the slowest rates.
    @Test func negotiationIsNotShaped() async throws {
        let client = try await Client(options: Self.shaped(bytesPerSecond: 1, burstBytes: 1, stanzasPerSecond: 1, burstStanzas: 1), node: Self.node())
        #expect(try await client.logIn("romeo", "secret", resource: "r") == "romeo@localhost/r")
        try await client.send("<presence id='first'/>")
        #expect(client.node.record.withLock { $0.routed.compactMap(\.id) } == ["first"])
    }

    @Test func aConnectionLostEndsTheSession() async throws {
        let client = try await Client(node: Self.node())
        _ = try await client.logIn("romeo", "secret", resource: "r")
        try await client.channel.close()
        #expect(await client.node.nextEnded()?.description == "romeo@localhost/r")
    }

    @Test func aConnectionResetByTheClientEndsTheSessionWithoutAStreamError() async throws {
        let client = try await Client(node: Self.node())
        _ = try await client.logIn("romeo", "secret", resource: "r")
        client.channel.pipeline.fireErrorCaught(IOError(errnoCode: 104, reason: "read"))  // 104: ECONNRESET
        #expect(await client.node.nextEnded()?.description == "romeo@localhost/r")
        // Nothing was written to a connection that is gone: no internal-server-error.
        #expect(try await client.channel.readOutbound(as: ByteBuffer.self) == nil)
    }
}
