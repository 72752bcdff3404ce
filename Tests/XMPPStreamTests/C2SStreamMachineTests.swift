import Storage
import Testing
import XMPPCore
import XMPPXMLParser

@testable import XMPPStream

/// The client stream's protocol on its own: inputs in, actions out, with no channel,
/// no clock and no store. Each test plays the node's part by answering the steps the
/// machine asks for.
@Suite struct C2SStreamMachineTests {
    typealias Machine = C2SStreamMachine

    static let domain = try! JID("localhost")
    static let romeo = try! JID("romeo@localhost")

    static func machine(tls: Bool = false, plaintext: Bool = true, maxFailures: Int = 3) -> Machine {
        var options = C2SConfiguration.Options()
        options.maxAuthFailuresPerConnection = maxFailures
        options.maxPasswordBytes = 64
        options.offerChannelBinding = tls
        return Machine(
            domain: domain, options: options, tlsAvailable: tls, channelBindingData: tls ? [1, 2, 3] : nil,
            directTLS: false, plaintextAllowed: plaintext
        )
    }

    static func header(to: String = "localhost", namespace: String? = Namespace.client, version: String? = "1.0") -> Machine.Input {
        var header = XMLElement("stream", namespace: Namespace.stream, ["to": to])
        if let version { header[attribute: "version"] = version }
        return .streamOpened(header: header, defaultNamespace: namespace)
    }

    static func element(_ text: String) -> XMLElement {
        let parser = XMLStreamParser()
        let events = try! parser.parse(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>" + text
        )
        guard case .element(let element) = events.last else { fatalError("no element in \(text)") }
        return element
    }

    static func plainAuth(_ username: String, _ password: String, authzid: String = "") -> Machine.Input {
        let bytes = Array(authzid.utf8) + [0] + Array(username.utf8) + [0] + Array(password.utf8)
        return .element(element("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>\(Base64.encode(bytes))</auth>"))
    }

    /// The elements sent, in order.
    static func sent(_ actions: [Machine.Action]) -> [XMLElement] {
        actions.compactMap { if case .send(let element) = $0 { element } else { nil } }
    }

    static func streamError(_ actions: [Machine.Action]) -> StreamError.Condition? {
        for case .streamError(let error) in actions { return error.condition }
        return nil
    }

    /// A machine with Romeo authenticated by PLAIN and bound as `romeo@localhost/r`.
    static func bound(language: String? = nil) -> Machine {
        var machine = machine()
        _ = machine.handle(header())
        _ = machine.handle(plainAuth("romeo", "secret"))
        _ = machine.handle(.attemptStarted)
        _ = machine.handle(.passwordChecked(true))
        var header = XMLElement("stream", namespace: Namespace.stream, ["to": "localhost", "version": "1.0"])
        if let language { header[attribute: "xml:lang"] = language }
        _ = machine.handle(.streamOpened(header: header, defaultNamespace: Namespace.client))
        _ = machine.handle(.element(element("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")))
        return machine
    }

    @Test func plainLogInAndBindAskForEachStepInTurn() throws {
        var machine = Self.machine()
        let opened = machine.handle(Self.header())
        guard case .write(let header) = opened.first else { Issue.record("no header: \(opened)"); return }
        #expect(header.contains("from='localhost'"))
        let features = try #require(Self.sent(opened).first)
        let mechanisms = features.child("mechanisms", namespace: Namespace.sasl)?.elements.map(\.text)
        #expect(mechanisms == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])

        #expect(machine.handle(Self.plainAuth("Romeo", "secret")) == [.beginAttempt(account: Self.romeo)])
        #expect(machine.handle(.attemptStarted) == [.checkPassword(Self.romeo, password: "secret")])
        let success = machine.handle(.passwordChecked(true))
        #expect(success.first == .authenticationSucceeded(account: Self.romeo))
        #expect(Self.sent(success).map(\.name) == ["success"])
        #expect(success.last == .restartStream)
        #expect(machine.authenticated == Self.romeo)

        let restarted = Self.sent(machine.handle(Self.header()))
        #expect(restarted.first?.child("bind", namespace: Namespace.bind) != nil)
        #expect(restarted.first?.child("mechanisms", namespace: Namespace.sasl) == nil)

        let bind = machine.handle(
            .element(Self.element("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>balcony</resource></bind></iq>"))
        )
        let full = try Self.romeo.with(resource: "balcony")
        guard case .bind(let jid, let reply) = bind.first, bind.count == 1 else { Issue.record("no bind: \(bind)"); return }
        #expect(jid == full)
        #expect(reply.id == "b1")
        #expect(reply.child("bind", namespace: Namespace.bind)?.child("jid", namespace: Namespace.bind)?.text == full.description)
        #expect(machine.boundJID == full)
    }

    @Test func scramExchangesItsMessagesWithTheStoredKeys() throws {
        var machine = Self.machine()
        _ = machine.handle(Self.header())
        var client = SCRAMClient(hash: .sha256, username: "romeo", password: "secret", channelBindingData: nil)
        let auth = Self.element(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>\(Base64.encode(client.clientFirst))</auth>"
        )
        #expect(machine.handle(.element(auth)) == [.beginAttempt(account: Self.romeo)])
        #expect(machine.handle(.attemptStarted) == [.lookUpCredentials(Self.romeo)])
        let challenge = try #require(Self.sent(machine.handle(.credentials(StoredCredentials.derive(password: "secret", iterations: 4096)))).first)
        #expect(challenge.name == "challenge")
        let final = try client.clientFinal(serverFirst: try #require(Base64.decode(challenge.text)))
        let answer = machine.handle(.element(Self.element("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\(Base64.encode(final))</response>")))
        let success = try #require(Self.sent(answer).first)
        #expect(success.name == "success")
        #expect(client.verify(serverFinal: try #require(Base64.decode(success.text))))
        #expect(answer.last == .restartStream)
    }

    @Test func anUnknownAccountGetsAChallengeAndFailsLikeAWrongPassword() throws {
        var machine = Self.machine()
        _ = machine.handle(Self.header())
        var client = SCRAMClient(hash: .sha1, username: "nobody", password: "x", channelBindingData: nil)
        let auth = Self.element("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>\(Base64.encode(client.clientFirst))</auth>")
        _ = machine.handle(.element(auth))
        _ = machine.handle(.attemptStarted)
        let challenge = try #require(Self.sent(machine.handle(.credentials(nil))).first)
        #expect(challenge.name == "challenge")
        // As a known account's would be: a 16-byte salt and the usual iterations.
        let fields = Dictionary(
            uniqueKeysWithValues: String(decoding: try #require(Base64.decode(challenge.text)), as: UTF8.self)
                .split(separator: ",").map { (String($0.prefix(1)), String($0.dropFirst(2))) }
        )
        #expect(fields["i"] == "4096")
        #expect(Base64.decode(fields["s"] ?? "")?.count == 16)
        let final = try client.clientFinal(serverFirst: try #require(Base64.decode(challenge.text)))
        let answer = machine.handle(.element(Self.element("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\(Base64.encode(final))</response>")))
        #expect(Self.sent(answer).first?.child("not-authorized", namespace: Namespace.sasl) != nil)
        #expect(machine.authenticated == nil)
    }

    @Test func outcomesNobodyAskedForAreIgnored() {
        var machine = Self.machine()
        _ = machine.handle(Self.header())
        #expect(machine.handle(.passwordChecked(true)).isEmpty)
        #expect(machine.handle(.credentials(nil)).isEmpty)
        #expect(machine.handle(.attemptStarted).isEmpty)
        #expect(machine.handle(.attemptRefused).isEmpty)
        #expect(machine.handle(.lookupFailed).isEmpty)
        // Nor does an outcome of another step count: a lookup's failure while the
        // throttle's delay runs.
        _ = machine.handle(Self.plainAuth("romeo", "secret"))
        #expect(machine.handle(.lookupFailed).isEmpty)
        #expect(machine.handle(.passwordChecked(true)).isEmpty)
        #expect(machine.authenticated == nil)
    }

    @Test func theThirdFailureEndsTheStreamAndEachIsCountedWithTheThrottle() {
        var machine = Self.machine()
        _ = machine.handle(Self.header())
        for attempt in 1...3 {
            #expect(machine.handle(Self.plainAuth("romeo", "wrong")) == [.beginAttempt(account: Self.romeo)])
            _ = machine.handle(.attemptStarted)
            let failed = machine.handle(.passwordChecked(false))
            #expect(failed.first == .authenticationFailed(account: Self.romeo, SASLFailure(.notAuthorized)))
            #expect(Self.sent(failed).first?.child("not-authorized", namespace: Namespace.sasl) != nil)
            #expect(Self.streamError(failed) == (attempt == 3 ? .policyViolation : nil))
            #expect(failed.contains(.endSession(then: .close)) == (attempt == 3))
        }
        #expect(machine.isClosed)
        #expect(machine.handle(Self.plainAuth("romeo", "secret")).isEmpty)
    }

    @Test func plainRefusesAForeignAuthzidAndAnOversizedPasswordWithoutCheckingIt() {
        var machine = Self.machine(maxFailures: 10)
        _ = machine.handle(Self.header())
        _ = machine.handle(Self.plainAuth("romeo", "secret", authzid: "juliet@localhost"))
        let foreign = machine.handle(.attemptStarted)
        #expect(foreign.first == .authenticationFailed(account: Self.romeo, SASLFailure(.invalidAuthzid)))
        _ = machine.handle(Self.plainAuth("romeo", String(repeating: "p", count: 65)))
        let oversized = machine.handle(.attemptStarted)
        #expect(oversized.first == .authenticationFailed(account: Self.romeo, SASLFailure(.notAuthorized)))
        #expect(!oversized.contains { if case .checkPassword = $0 { true } else { false } })
        // A malformed PLAIN message fails at once, counted although no attempt began.
        let malformed = machine.handle(.element(Self.element("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AAA=</auth>")))
        #expect(malformed.first == .authenticationFailed(account: nil, SASLFailure(.malformedRequest)))
    }

    @Test func aRefusedAttemptOrAFailedLookupIsATemporaryFailureNotTheClients() {
        var machine = Self.machine(maxFailures: 1)
        _ = machine.handle(Self.header())
        _ = machine.handle(Self.plainAuth("romeo", "secret"))
        let refused = machine.handle(.attemptRefused)
        #expect(Self.sent(refused).first?.child("temporary-auth-failure", namespace: Namespace.sasl) != nil)
        _ = machine.handle(Self.plainAuth("romeo", "secret"))
        _ = machine.handle(.attemptStarted)
        let lost = machine.handle(.lookupFailed)
        #expect(Self.sent(lost).first?.child("temporary-auth-failure", namespace: Namespace.sasl) != nil)
        // Neither counts as a failure of the client's (one would end this stream).
        for actions in [refused, lost] {
            #expect(!actions.contains { if case .authenticationFailed = $0 { true } else { false } })
        }
        #expect(!machine.isClosed)
    }

    @Test func withTLSAvailableStartTLSComesFirstThenTheChannelBoundMechanisms() throws {
        var machine = Self.machine(tls: true, plaintext: false)
        let features = try #require(Self.sent(machine.handle(Self.header())).first)
        #expect(features.child("starttls", namespace: Namespace.tls)?.child("required", namespace: Namespace.tls) != nil)
        #expect(features.child("mechanisms", namespace: Namespace.sasl) == nil)
        let refused = Self.sent(machine.handle(Self.plainAuth("romeo", "secret")))
        #expect(refused.first?.child("encryption-required", namespace: Namespace.sasl) != nil)

        let started = machine.handle(.element(Self.element("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")))
        #expect(Self.sent(started).map(\.name) == ["proceed"])
        #expect(Array(started.dropFirst()) == [.startTLS, .restartStream])
        #expect(machine.tlsActive)
        let secured = try #require(Self.sent(machine.handle(Self.header())).first)
        let mechanisms = secured.child("mechanisms", namespace: Namespace.sasl)?.elements.map(\.text) ?? []
        #expect(mechanisms.first == "SCRAM-SHA-256-PLUS")
        #expect(secured.child("sasl-channel-binding", namespace: Namespace.saslChannelBinding) != nil)
        // A second STARTTLS fails and ends the stream.
        let again = machine.handle(.element(Self.element("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")))
        #expect(Self.sent(again).map(\.name) == ["failure"])
        #expect(again.suffix(2) == [.write("</stream:stream>"), .close])
    }

    @Test func aBoundSessionsStanzasAreStampedOrRefused() throws {
        var machine = Self.bound(language: "de")
        let full = try Self.romeo.with(resource: "r")
        let routed = machine.handle(.element(Self.element("<message to='room@conference.localhost' type='groupchat'><body>hi</body></message>")))
        guard case .route(let stanza) = routed.first, routed.count == 1 else { Issue.record("not routed: \(routed)"); return }
        #expect(stanza[attribute: "from"] == full.description)
        #expect(stanza[attribute: "xml:lang"] == "de")
        let bare = machine.handle(.element(Self.element("<presence from='romeo@localhost'/>")))
        guard case .route(let presence) = bare.first, bare.count == 1 else { Issue.record("not routed: \(bare)"); return }
        #expect(presence[attribute: "from"] == full.description, "a bare from is made the full JID")
        // The legacy session request is answered here, not routed.
        let session = machine.handle(.element(Self.element("<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")))
        #expect(Self.sent(session).map { $0[attribute: "type"] } == ["result"])

        var spoofing = Self.bound()
        #expect(Self.streamError(spoofing.handle(.element(Self.element("<message from='juliet@localhost/x'/>")))) == .invalidFrom)
        var unknown = Self.bound()
        #expect(Self.streamError(unknown.handle(.element(Self.element("<foo/>")))) == .unsupportedStanzaType)
    }

    @Test func theSessionEndsOnceWhetherTheClientClosesOrTheConnectionIsLost() {
        var closing = Self.bound()
        #expect(closing.handle(.streamClosed) == [.endSession(then: .closeStream)])
        #expect(closing.handle(.element(Self.element("<message to='a@localhost'/>"))).isEmpty)
        #expect(closing.handle(.connectionLost).isEmpty)

        var lost = Self.bound()
        #expect(lost.handle(.connectionLost) == [.endSession(then: nil)])
        #expect(lost.handle(.failed(StreamError(.systemShutdown))).isEmpty)

        var failing = Self.bound()
        let failed = failing.handle(.failed(StreamError(.conflict)))
        #expect(failed.first == .streamError(StreamError(.conflict)))
        #expect(failed.last == .endSession(then: .close))
        #expect(failing.handle(.connectionLost).isEmpty)
    }

    @Test func aStreamThatIsWrongFromItsHeaderOnGetsOurHeaderThenTheError() {
        var early = Self.machine()
        let failed = early.handle(.failed(StreamError(.connectionTimeout)))
        guard case .write(let header) = failed.dropFirst().first else { Issue.record("no header: \(failed)"); return }
        #expect(header.hasPrefix("<?xml version='1.0'?><stream:stream"))

        let wrongHeaders: [(Machine.Input, StreamError.Condition)] = [
            (Self.header(to: "example.org"), .hostUnknown),
            (Self.header(namespace: "jabber:server"), .invalidNamespace),
            (Self.header(version: nil), .unsupportedVersion),
        ]
        for (header, condition) in wrongHeaders {
            var machine = Self.machine()
            let actions = machine.handle(header)
            #expect(Self.streamError(actions) == condition)
            // Our header once, then the error and the end of the stream.
            let writes = actions.compactMap { if case .write(let text) = $0 { text } else { nil } }
            #expect(writes.count == 2)
            #expect(writes.first?.hasPrefix("<?xml version='1.0'?><stream:stream") == true)
            #expect(writes.last?.hasSuffix("</stream:stream>") == true)
            #expect(actions.last == .endSession(then: .close))
        }
        var beforeAuthentication = Self.machine()
        _ = beforeAuthentication.handle(Self.header())
        #expect(Self.streamError(beforeAuthentication.handle(.element(Self.element("<message to='a@localhost'/>")))) == .notAuthorized)
    }
}
