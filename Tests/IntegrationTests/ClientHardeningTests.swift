import NIOCore
import NIOPosix
import ServerRuntime
import Testing
import XMPPCore
import XMPPStream

/// Hostile clients on real sockets against a real node: one that never reads, one that
/// never finishes logging in, many that never log in, one that guesses passwords. Each
/// is stopped, and a logged-in bystander keeps being answered meanwhile.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(3)))
struct ClientHardeningTests {
    static let header =
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
        + " to='localhost' version='1.0'>"

    /// Logs `account` in, trying again while the node still refuses (it gives a place back
    /// only once it noticed a close), for at most 10 s.
    static func logInOnceAPlaceFrees(_ account: JID, on node: TestNode) async throws -> XMPPClient {
        let deadline = ContinuousClock.now + .seconds(10)
        var client: XMPPClient?
        while client == nil, ContinuousClock.now < deadline {
            client = try? await node.login(account)
        }
        return try #require(client)
    }

    /// 64 MiB of `<abort/>` before authentication, no reply ever read: the node used to
    /// read it all and queue a reply for each (+345 MiB). Now it ends the stream once the
    /// pre-authentication budget is spent, long before the 64 MiB are through.
    @Test func aFloodBeforeAuthenticationIsCutShort() async throws {
        let bystander = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let other = try await node.login(bystander)
            let raw = try await RawConnection.connect(port: node.ports.starttls)
            try await raw.channel.setOption(ChannelOptions.autoRead, value: false)
            try await raw.channel.writeAndFlush(raw.channel.allocator.buffer(string: Self.header))
            let chunk = raw.channel.allocator.buffer(string: String(repeating: "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", count: 1_300))
            var written = 0
            do {
                while written < 64 * 1024 * 1024 {
                    try await raw.channel.writeAndFlush(chunk)
                    written += chunk.readableBytes
                }
            } catch {
                // The node closed the connection: the write failed.
            }
            #expect(written < 64 * 1024 * 1024, "the node read all 64 MiB")
            #expect(try await other.ping().type == "result")
            await other.close()
            try? await raw.channel.close()
        }
    }

    /// A logged-in client that stops reading while another sends it a lot: its stream is
    /// ended once its unread output passes the bound, instead of growing the node.
    @Test func aSessionThatDoesNotReadIsEnded() async throws {
        let reader = try await TestDatabase.shared.makeAccount()
        let sender = try await TestDatabase.shared.makeAccount()
        try await withNode({
            $0.limits.maxUnsentBytes = 256 * 1024
            // The sender pushes many MiB (the kernel's buffers fill first): not shaped.
            $0.limits.sessionBytesPerSecond = 0
        }) { node in
            let stalled = try await node.login(reader, resource: "stalled")
            let talker = try await node.login(sender)
            try await stalled.setReading(false)
            let body = String(repeating: "x", count: 8 * 1024)
            var bounced = false
            // At most 256 MiB: far more than the kernel's buffers and the bound together.
            for index in 0..<32_768 where !bounced {
                talker.send(
                    XMLElement(
                        "message", namespace: Namespace.client, ["to": "\(reader)/stalled", "id": "m\(index)"],
                        children: [XMLElement("body", namespace: Namespace.client, text: body)]
                    )
                )
                if index % 64 == 63 {
                    // Round trips keep the sender from running far ahead, and tell whether
                    // the stalled session is gone (a message to it then bounces).
                    _ = try await talker.ping()
                    bounced = talker.drain().contains {
                        if case .element(let element) = $0 { return element.type == "error" }
                        return false
                    }
                }
            }
            #expect(bounced, "messages to the stalled session never bounced")
            let text = try await AdminHTTPTests.get("/metrics", port: try #require(node.ports.http)).body
            #expect((AdminHTTPTests.sample("conclave_slow_consumers_ended_total", in: text) ?? 0) >= 1, "\(text)")
            try await stalled.setReading(true)
            try await stalled.expectEnd(timeout: .seconds(30))
            await talker.close()
        }
    }

    /// A connection that opens a stream and never logs in is ended when the negotiation
    /// deadline passes (they used to live forever; 50 of them sending a byte every 10 s).
    @Test func aConnectionThatNeverLogsInIsTimedOut() async throws {
        try await withNode({ $0.c2s.negotiationTimeoutSeconds = 1 }) { node in
            let raw = try await RawConnection.connect(port: node.ports.starttls)
            let answer = try await raw.exchange(Self.header, timeout: .seconds(20))
            #expect(answer.contains("<connection-timeout xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\""), "\(answer)")
        }
    }

    /// Only so many connections from one address may be logging in at once; the next
    /// one is refused at once, and a slot frees when one of them goes.
    @Test func unauthenticatedConnectionsPerAddressAreCapped() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode({ $0.limits.maxUnauthenticatedConnectionsPerAddress = 3 }) { node in
            var holders: [RawConnection] = []
            for _ in 0..<3 {
                let raw = try await RawConnection.connect(port: node.ports.starttls)
                // The node answers the header, so the connection is surely counted.
                try await raw.channel.writeAndFlush(raw.channel.allocator.buffer(string: Self.header))
                holders.append(raw)
            }
            let refused = try await RawConnection.connect(port: node.ports.starttls)
            // The node answers at once, before the client says anything, and closes.
            let answer = try await refused.received.closed.futureResult.get()
            #expect(answer.contains("<policy-violation xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\""), "\(answer)")
            for holder in holders { try? await holder.channel.close() }
            // The places are given back as the node notices the closes.
            let loggedIn = try await Self.logInOnceAPlaceFrees(account, on: node)
            #expect(try await loggedIn.ping().type == "result")
            await loggedIn.close()
        }
    }

    /// A node at its session budget keeps serving its sessions, refuses a new stream with
    /// `<resource-constraint/>`, and tells `/readyz` it is full, until a place frees.
    @Test func aNodeAtItsConnectionBudgetRefusesNewStreamsAndSaysItIsFull() async throws {
        let (inside, other, later) = (
            try await TestDatabase.shared.makeAccount(), try await TestDatabase.shared.makeAccount(),
            try await TestDatabase.shared.makeAccount()
        )
        try await withNode({ $0.limits.maxConnections = 2 }) { node in
            let http = try #require(node.ports.http)
            let session = try await node.login(inside)
            // Logged in, so surely counted before the next connection arrives.
            let holder = try await node.login(other)
            let refused = try await RawConnection.connect(port: node.ports.starttls)
            let answer = try await refused.received.closed.futureResult.get()
            #expect(answer.contains("<resource-constraint xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\""), "\(answer)")
            let full = try await AdminHTTPTests.get("/readyz", port: http)
            #expect(full.status == 503 && full.body.contains("full"), "\(full)")
            #expect(try await session.ping().type == "result", "the sessions it has are served")

            await holder.close()
            // A place frees as the node notices the close.
            let admitted = try await Self.logInOnceAPlaceFrees(later, on: node)
            #expect(try await admitted.ping().type == "result")
            await admitted.close()
            await session.close()
            var ready = try await AdminHTTPTests.get("/readyz", port: http)
            let readyBy = ContinuousClock.now + .seconds(10)
            while ready.status != 200, ContinuousClock.now < readyBy {
                ready = try await AdminHTTPTests.get("/readyz", port: http)
            }
            #expect(ready.status == 200, "\(ready)")
        }
    }

    /// The throttle delays an attempt before its outcome is known: after failures on an
    /// account, even the right password waits (it used to be answered at once, so a
    /// guesser abandoning slow attempts never met the delay).
    @Test func theRightPasswordWaitsAfterFailures() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode({ $0.auth.failuresBeforeDelay = 1 }) { node in
            for _ in 0..<2 {
                let client = try await node.client()
                await #expect(throws: (any Error).self) {
                    try await client.authenticate(username: account.localpart!, password: "wrong", preferred: ["PLAIN"])
                }
                await client.disconnect()
            }
            let port = try #require(node.ports.http)
            let before = AdminHTTPTests.sample(
                "conclave_authentications_delayed_total", in: try await AdminHTTPTests.get("/metrics", port: port).body
            ) ?? 0
            let client = try await node.login(account, mechanism: "PLAIN")
            let after = AdminHTTPTests.sample(
                "conclave_authentications_delayed_total", in: try await AdminHTTPTests.get("/metrics", port: port).body
            ) ?? 0
            #expect(after == before + 1)
            await client.close()
        }
    }

    /// Authenticating again on an authenticated stream is refused.
    @Test func saslAfterSuccessIsRefused() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let client = try await node.client()
            try await client.authenticate(username: account.localpart!, password: "secret", preferred: ["PLAIN"])
            client.sendRaw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHgAeQ==</auth>")
            let failure = try await client.receive { $0.name == "failure" }
            #expect(failure.child("malformed-request") != nil, "\(failure)")
            _ = try await client.bind()
            #expect(try await client.ping().type == "result")
            await client.close()
        }
    }

    /// SCRAM's first answer for an account that does not exist used to carry a new salt
    /// on every connection, while a real account's never changes: a way to tell which
    /// accounts exist. Now the salt is derived from a deployment key and the name: the
    /// same on every connection and on every node.
    @Test func unknownAccountsAnswerTheSameSaltEverywhere() async throws {
        let real = try await TestDatabase.shared.makeAccount()
        func salt(_ name: String, port: Int) async throws -> String {
            let raw = try await RawConnection.connect(port: port)
            let first = Base64.encode(Array("n,,n=\(name),r=clientnonce".utf8))
            let answer = try await raw.exchange(
                Self.header + "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>\(first)</auth>"
                    + "</stream:stream>"
            )
            let start = try #require(answer.firstRange(of: "<challenge xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\">"))
            let end = try #require(answer.firstRange(of: "</challenge>"))
            let decoded = String(decoding: try #require(Base64.decode(String(answer[start.upperBound..<end.lowerBound]))), as: UTF8.self)
            // r=…,s=SALT,i=N: everything after the nonce.
            return String(decoded[try #require(decoded.firstRange(of: ",s="))!.lowerBound...])
        }
        let plaintext: (inout ServerConfiguration) -> Void = { $0.c2s.allowPlaintextOnLoopback = true }
        try await withNode(plaintext) { first in
            try await withNode(plaintext) { second in
                let ghost = try await salt("ghost-of-hamlet", port: first.ports.starttls)
                #expect(try await salt("ghost-of-hamlet", port: first.ports.starttls) == ghost)
                #expect(try await salt("ghost-of-hamlet", port: second.ports.starttls) == ghost)
                #expect(try await salt("another-ghost", port: first.ports.starttls) != ghost)
                let account = try await salt(real.localpart!, port: first.ports.starttls)
                #expect(try await salt(real.localpart!, port: second.ports.starttls) == account)
                #expect(ghost.hasSuffix(",i=4096") == account.hasSuffix(",i=4096"))
            }
        }
    }
}
