import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing
import XMPPCore

@testable import Cluster

/// Node links against hostile or broken peers, over real loopback sockets: both sides
/// must prove the secret, nothing unauthenticated lasts or costs much, and a frame the
/// peer cannot parse does not stall the link (issue 13).
@Suite struct NodeLinkHardeningTests {
    typealias Received = NodeLinksTests.Received

    /// A node's links with `options`, logging into `log`.
    func node(
        _ name: String, secret: String = "s", tls: LinkTLS? = nil, options: NodeLinks.Options = NodeLinks.Options(),
        received: Received = Received(), bounced: Received? = nil, log: LogRecorder = LogRecorder()
    ) -> NodeLinks {
        NodeLinks(
            name: name, incarnation: 1, secret: secret, tls: tls, options: options,
            group: MultiThreadedEventLoopGroup.singleton, logger: log.logger,
            handler: { frame, from, _ in received.add(frame, from: from) },
            bounce: { frame in bounced?.add(frame, from: "bounce") }
        )
    }

    static func message(_ n: Int, body: String? = nil) -> LinkFrame {
        .user(
            XMLElement(
                "message", namespace: Namespace.client, ["to": "juliet@localhost/garden", "type": "chat"],
                children: [XMLElement("body", namespace: Namespace.client, text: body ?? String(n))]
            )
        )
    }

    /// The value of `name='…'` in `text`.
    static func attribute(_ name: String, in text: String) -> String? {
        guard let start = text.range(of: " \(name)='") else { return nil }
        let rest = text[start.upperBound...]
        return rest.firstIndex(of: "'").map { String(rest[..<$0]) }
    }

    /// A link from `a` to `b` carrying frame 1 (so "the other links keep working" is checked
    /// on a link that was up before the attack, not one that came up after it).
    func linked(_ options: NodeLinks.Options = NodeLinks.Options()) async throws -> (
        NodeLinks, NodeLinks, Received, Int
    ) {
        let atB = Received()
        let a = node("a")
        let b = node("b", options: options, received: atB)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        a.send(Self.message(1), to: "b")
        #expect(await atB.arrived(1))
        return (a, b, atB, port)
    }

    // MARK: - Before authentication

    @Test(arguments: ["a 6 KiB header", "junk"])
    func tooMuchOrMalformedInputBeforeAuthenticationClosesTheConnection(_ input: String) async throws {
        var options = NodeLinks.Options()
        options.authenticationTimeout = .seconds(60)  // so that only the input can be what closes it
        let (a, b, atB, port) = try await linked(options)
        let hostile = try await RawConnection.connect(port: port)
        #expect(await hostile.wait(for: "nonce=") != nil)
        if input == "junk" {
            try await hostile.send(String(repeating: "\u{1}\u{2}junk&&<<", count: 64))
        } else {
            // Well-formed so far and under the parser's header limit: only the pre-authentication
            // budget (4 KiB) stops it.
            try await hostile.send(
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                    + "xmlns:stream='http://etherx.jabber.org/streams' node='" + String(repeating: "x", count: 6 * 1024)
            )
        }
        #expect(await hostile.closedByPeer(within: .seconds(10)))
        #expect(!hostile.text.contains("<ok"))
        if input != "junk" { #expect(b.eventCounts[.preAuthenticationBytesExceeded] == 1) }
        a.send(Self.message(2), to: "b")
        #expect(await atB.arrived(2))
        #expect(atB.bodies == ["1", "2"])
        await a.shutdown()
        await b.shutdown()
    }

    @Test func aConnectionThatNeverAuthenticatesIsClosedAtTheDeadline() async throws {
        var options = NodeLinks.Options()
        options.authenticationTimeout = .milliseconds(300)
        let (a, b, atB, port) = try await linked(options)
        let idle = try await RawConnection.connect(port: port)
        #expect(await idle.wait(for: "nonce=") != nil)
        try await idle.send("<?xml version='1.0'?><stream:stream")  // a start, then nothing more
        #expect(await idle.closedByPeer(within: .seconds(10)))
        #expect(b.eventCounts[.authenticationTimeout] == 1)
        // The authenticated link is not subject to the deadline.
        a.send(Self.message(2), to: "b")
        #expect(await atB.arrived(2))
        await a.shutdown()
        await b.shutdown()
    }

    @Test func aPeerThatNeverAnswersTheConnectingNodeIsLeftAtTheDeadline() async throws {
        let fake = try await RawConnection.Server()
        let log = LogRecorder()
        var options = NodeLinks.Options()
        options.authenticationTimeout = .milliseconds(300)
        let a = node("a", options: options, log: log)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(fake.port)", incarnation: 1)])
        a.send(Self.message(1), to: "b")
        let connection = try #require(await fake.next())
        #expect(await connection.closedByPeer(within: .seconds(10)))
        #expect(a.eventCounts[.authenticationTimeout, default: 0] >= 1)
        #expect(a.queueDepths["b"] == 1, "the frame waits for a real peer")
        await a.shutdown()
        await fake.close()
    }

    @Test func unauthenticatedConnectionsFromOneAddressAreCapped() async throws {
        var options = NodeLinks.Options()
        options.maxUnauthenticatedPerAddress = 2
        options.authenticationTimeout = .seconds(60)
        let (a, b, atB, port) = try await linked(options)
        // The authenticated link from `a` (same address) does not count against the cap.
        let first = try await RawConnection.connect(port: port)
        let second = try await RawConnection.connect(port: port)
        #expect(await first.wait(for: "nonce=") != nil)
        #expect(await second.wait(for: "nonce=") != nil)
        let third = try await RawConnection.connect(port: port)
        #expect(await third.closedByPeer(within: .seconds(10)))
        #expect(!third.text.contains("nonce="), "refused before the handshake starts")
        #expect(b.eventCounts[.refusedUnauthenticatedLimit] == 1)
        a.send(Self.message(2), to: "b")
        #expect(await atB.arrived(2))
        try await first.channel.close()
        try await second.channel.close()
        await a.shutdown()
        await b.shutdown()
    }

    @Test func theUnauthenticatedAreCountedInTotalAndPerAddress() {
        var pending = UnauthenticatedLinks(maxTotal: 3, maxPerAddress: 2)
        let admitted = ["10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3"].map { pending.admit($0) }
        #expect(admitted == [true, true, false, true, false], "two per address, three in total")
        pending.release("10.0.0.1")
        let again = pending.admit("10.0.0.3")
        #expect(again)
        pending.release("10.0.0.9")  // never admitted: changes nothing
        #expect(pending.total == 3)
        #expect(pending.count(from: "10.0.0.1") == 1)
    }

    // MARK: - Mutual proof of the secret

    /// A fake node at `b`'s address that does not know the secret but answers `<ok/>` with
    /// a made-up proof: the connecting node must not send it a single frame.
    @Test func theConnectingNodeRefusesAPeerThatCannotProveTheSecret() async throws {
        let fake = try await RawConnection.Server()
        let log = LogRecorder()
        let a = node("a", log: log)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(fake.port)", incarnation: 1)])
        a.send(Self.message(1), to: "b")
        let connection = try #require(await fake.next())
        try await connection.send(NodeLinks.streamHeader([("node", "b"), ("nonce", LinkHandshake.makeNonce())]))
        let header = try #require(await connection.wait(for: "mac="))
        #expect(Self.attribute("nonce", in: header).map(LinkHandshake.isNonce) == true, "the connector sends a nonce")
        try await connection.send("<ok last='0' mac='\(String(repeating: "0", count: 64))'/>")
        #expect(await connection.closedByPeer(within: .seconds(10)))
        #expect(!connection.text.contains("<user"), "no frame reached the impostor")
        #expect(a.eventCounts[.refusedAcceptor, default: 0] >= 1)
        #expect(a.queueDepths["b"] == 1, "the frame is kept for the real peer")
        await a.shutdown()
        await fake.close()
    }

    @Test func theAcceptingNodeRefusesAWrongSecretAndProvesItselfToTheRightOne() async throws {
        let log = LogRecorder()
        // Under a loaded test run the two handshakes can take longer than the default 5 s
        // deadline; only the secret may be what closes a connection here.
        var options = NodeLinks.Options()
        options.authenticationTimeout = .seconds(60)
        let b = node("b", options: options, log: log)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        for secret in ["wrong", "s"] {
            let connection = try await RawConnection.connect(port: port)
            let header = try #require(await connection.wait(for: "incarnation='1'>"))
            let nonce = try #require(Self.attribute("nonce", in: header))
            let transcript = LinkHandshake.Transcript(
                connector: "a", acceptor: "b", connectorNonce: LinkHandshake.makeNonce(), acceptorNonce: nonce,
                connectorIncarnation: 1, acceptorIncarnation: 1, binding: ""
            )
            try await connection.send(Self.connectorHeader(transcript, secret: secret))
            if secret == "wrong" {
                #expect(await connection.closedByPeer(within: .seconds(10)))
                #expect(!connection.text.contains("<ok"))
                #expect(b.eventCounts[.refusedConnector] == 1)
            } else {
                let ok = try #require(await connection.wait(for: "'/>"))
                let proof = try #require(Self.attribute("mac", in: ok))
                #expect(LinkHandshake(secret: "s").verify(proof, .acceptor, transcript))
                #expect(!LinkHandshake(secret: "s").verify(proof, .connector, transcript), "roles differ")
                try? await connection.channel.close()
            }
        }
        await b.shutdown()
    }

    static func connectorHeader(_ transcript: LinkHandshake.Transcript, secret: String) -> String {
        NodeLinks.streamHeader([
            ("node", transcript.connector), ("incarnation", String(transcript.connectorIncarnation)),
            ("to-incarnation", String(transcript.acceptorIncarnation)), ("nonce", transcript.connectorNonce),
            ("mac", LinkHandshake(secret: secret).proof(.connector, transcript)),
        ])
    }

    /// A raw connection to `port` that authenticates as node `name` with the right secret,
    /// sending `following` in the same write as its header; without `following` it waits
    /// for the accepting node's `<ok/>`.
    static func authenticated(as name: String, port: Int, following: [UInt8] = []) async throws -> RawConnection {
        let connection = try await RawConnection.connect(port: port)
        let header = try #require(await connection.wait(for: "incarnation='1'>"))
        let transcript = LinkHandshake.Transcript(
            connector: name, acceptor: "b", connectorNonce: LinkHandshake.makeNonce(),
            acceptorNonce: try #require(attribute("nonce", in: header)),
            connectorIncarnation: 1, acceptorIncarnation: 1, binding: ""
        )
        try await connection.send(bytes: Array(connectorHeader(transcript, secret: "s").utf8) + following)
        if following.isEmpty { _ = try #require(await connection.wait(for: "<ok ")) }
        return connection
    }

    /// A proof recorded from one connection (made with the right secret) is worthless on
    /// the next: the accepting node's nonce differs.
    @Test func aReplayedProofIsRefused() async throws {
        var options = NodeLinks.Options()
        options.authenticationTimeout = .seconds(60)  // only the replay may close the second connection
        let b = node("b", options: options)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        let first = try await RawConnection.connect(port: port)
        let header = try #require(await first.wait(for: "incarnation='1'>"))
        let transcript = LinkHandshake.Transcript(
            connector: "a", acceptor: "b", connectorNonce: LinkHandshake.makeNonce(),
            acceptorNonce: try #require(Self.attribute("nonce", in: header)),
            connectorIncarnation: 1, acceptorIncarnation: 1, binding: ""
        )
        let recorded = Self.connectorHeader(transcript, secret: "s")
        try await first.send(recorded)
        #expect(await first.wait(for: "<ok ") != nil, "the original is accepted")
        try? await first.channel.close()

        let replay = try await RawConnection.connect(port: port)
        #expect(await replay.wait(for: "incarnation='1'>") != nil)
        try await replay.send(recorded)
        #expect(await replay.closedByPeer(within: .seconds(10)))
        #expect(!replay.text.contains("<ok"))
        #expect(b.eventCounts[.refusedConnector] == 1)
        await b.shutdown()
    }

    @Test func proofsCoverEveryPartOfTheTranscript() {
        let handshake = LinkHandshake(secret: "s")
        let transcript = LinkHandshake.Transcript(
            connector: "a", acceptor: "b", connectorNonce: LinkHandshake.makeNonce(),
            acceptorNonce: LinkHandshake.makeNonce(), connectorIncarnation: 1, acceptorIncarnation: 2,
            binding: LinkHandshake.binding(acceptorCertificate: [1], connectorCertificate: [2])
        )
        let proof = handshake.proof(.connector, transcript)
        #expect(handshake.verify(proof, .connector, transcript))
        #expect(handshake.verify(proof.uppercased(), .connector, transcript), "hex in either case")
        #expect(!LinkHandshake(secret: "t").verify(proof, .connector, transcript))
        #expect(!handshake.verify(proof, .acceptor, transcript))
        #expect(!handshake.verify(String(proof.dropLast(2)), .connector, transcript))
        #expect(!handshake.verify("not hex", .connector, transcript))
        let changes: [(inout LinkHandshake.Transcript) -> Void] = [
            { $0.connector = "c" }, { $0.acceptor = "c" }, { $0.connectorNonce = LinkHandshake.makeNonce() },
            { $0.acceptorNonce = LinkHandshake.makeNonce() }, { $0.connectorIncarnation = 3 },
            { $0.acceptorIncarnation = 3 }, { $0.binding = "" },
            // no field may spill into the next
            {
                $0.connector = "a|1:b"; $0.acceptor = ""
            },
        ]
        for change in changes {
            var other = transcript
            change(&other)
            #expect(!handshake.verify(proof, .connector, other))
        }
        #expect(LinkHandshake.makeNonce() != LinkHandshake.makeNonce())
        #expect(LinkHandshake.isNonce(LinkHandshake.makeNonce()))
        #expect(!LinkHandshake.isNonce("short"))
    }

    // MARK: - Frames

    /// `b` accepts smaller frames than `a` sends (as after a change of limits, or any frame
    /// its parser refuses): the frame is dropped and counted, the ones after it arrive.
    @Test func aFrameThePeerCannotParseIsDroppedAndTheFramesAfterItArrive() async throws {
        var large = NodeLinks.Options()
        large.maxFrameBytes = 1024 * 1024
        var small = NodeLinks.Options()
        small.maxFrameBytes = 16 * 1024
        let atB = Received()
        let a = node("a", options: large)
        let b = node("b", options: small, received: atB)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        a.send(Self.message(1), to: "b")
        a.send(Self.message(2, body: String(repeating: "x", count: 64 * 1024)), to: "b")
        for n in 3...20 { a.send(Self.message(n), to: "b") }
        #expect(await atB.arrived(19))
        #expect(atB.bodies == ["1"] + (3...20).map(String.init))
        #expect(a.eventCounts[.poisonFrameDropped] == 1)
        #expect(b.eventCounts[.badFrameReceived, default: 0] >= 1)
        await a.shutdown()
        await b.shutdown()
    }

    /// A peer that authenticated, played by the test: frames that follow its header in the
    /// same packet, a frame that arrives a byte at a time, the same frame again (taken
    /// once), then one that does not read.
    @Test func framesArriveInAnyPiecesAndOneThatDoesNotReadEndsTheConnectionWithItsPlace() async throws {
        var options = NodeLinks.Options()
        options.authenticationTimeout = .seconds(60)
        let atB = Received()
        let b = node("b", options: options, received: atB)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        let connection = try await Self.authenticated(as: "a", port: port, following: LinkFrameCodec.encode(Self.message(1), seq: 1))
        #expect(await atB.arrived(1))
        let second = LinkFrameCodec.encode(Self.message(2), seq: 2)
        for byte in second { try await connection.send(bytes: [byte]) }
        #expect(await atB.arrived(2))
        // Frame 2 again (a resend after a reconnect looks the same), then frame 3.
        try await connection.send(bytes: second + LinkFrameCodec.encode(Self.message(3), seq: 3))
        #expect(await atB.arrived(3))
        #expect(atB.bodies == ["1", "2", "3"])
        // A frame whose kind says "membership" but whose fields do not read.
        var malformed = LinkFrameCodec.encode(.sessionLeft(token: 1), seq: 4)
        malformed[4] = LinkFrameCodec.Kind.membership.rawValue
        try await connection.send(bytes: malformed)
        #expect(await connection.closedByPeer(within: .seconds(10)))
        #expect(connection.text.contains("<bad-frame after='3'/>"))
        #expect(b.eventCounts[.badFrameReceived] == 1)
        #expect(atB.count == 3)
        await b.shutdown()
    }

    /// A length prefix beyond the largest frame is refused as soon as it arrives: the node
    /// does not wait for (or keep) 4 GiB.
    @Test func aLengthBeyondTheLargestFrameIsRefusedAtOnce() async throws {
        var options = NodeLinks.Options()
        options.authenticationTimeout = .seconds(60)
        let b = node("b", options: options)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        let connection = try await Self.authenticated(as: "a", port: port)
        try await connection.send(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 1])
        #expect(await connection.closedByPeer(within: .seconds(10)))
        #expect(connection.text.contains("<bad-frame after='0'/>"))
        #expect(b.eventCounts[.badFrameReceived] == 1)
        await b.shutdown()
    }

    /// A frame of exactly the largest size (its length prefix included) is taken; an empty
    /// one, too short to have a kind and a number, is not.
    @Test func aFrameOfTheLargestSizeArrivesAndAnEmptyOneIsRefused() async throws {
        var options = NodeLinks.Options()
        options.maxFrameBytes = 4096
        options.authenticationTimeout = .seconds(60)
        let atB = Received()
        let a = node("a", options: options)
        let b = node("b", options: options, received: atB)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        // The body's length takes two bytes once it is over 127: measured, then trimmed.
        var body = String(repeating: "x", count: 4096 - LinkFrameCodec.encode(Self.message(0, body: ""), seq: 1).count)
        body.removeLast(LinkFrameCodec.encode(Self.message(0, body: body), seq: 1).count - 4096)
        let largest = Self.message(0, body: body)
        #expect(LinkFrameCodec.encode(largest, seq: 1).count == 4096)
        a.send(largest, to: "b")
        #expect(await atB.arrived(1))
        #expect(a.eventCounts[.frameTooLarge, default: 0] == 0 && b.eventCounts[.badFrameReceived, default: 0] == 0)
        await a.shutdown()

        let connection = try await Self.authenticated(as: "c", port: port)
        try await connection.send(bytes: [0, 0, 0, 0])
        #expect(await connection.closedByPeer(within: .seconds(10)))
        #expect(connection.text.contains("<bad-frame after='0'/>"))
        await b.shutdown()
    }

    @Test func theQueueForAnUnreachablePeerIsBoundedInBytes() async throws {
        // A port nobody listens on (bound once, then closed).
        let probe = node("probe")
        let port = try await probe.listen(host: "127.0.0.1", port: 0)
        await probe.shutdown()
        var options = NodeLinks.Options()
        options.maxQueueBytes = 16 * 1024
        options.maxFrameBytes = 4 * 1024
        let bounced = Received()
        let a = node("a", options: options, bounced: bounced)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        let body = String(repeating: "y", count: 1000)
        for n in 1...40 { a.send(Self.message(n, body: body), to: "b") }
        let queued = try #require(a.queueDepths["b"])
        #expect(queued > 0 && queued < 40)
        #expect(try #require(a.queueBytes["b"]) <= 16 * 1024)
        #expect(bounced.count == 40 - queued, "what does not fit is bounced, not lost")
        #expect(a.eventCounts[.queueFull] == 40 - queued)
        await a.shutdown()
    }

    @Test func aFrameLargerThanTheLargestFrameIsBouncedWhenSent() async throws {
        var options = NodeLinks.Options()
        options.maxFrameBytes = 4 * 1024
        let bounced = Received()
        let atB = Received()
        let a = node("a", options: options, bounced: bounced)
        let b = node("b", received: atB)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        a.send(Self.message(1, body: String(repeating: "z", count: 8 * 1024)), to: "b")
        a.send(Self.message(2), to: "b")
        #expect(bounced.count == 1)
        #expect(a.eventCounts[.frameTooLarge] == 1)
        #expect(await atB.arrived(1))
        #expect(atB.bodies == ["2"])
        await a.shutdown()
        await b.shutdown()
    }

    // MARK: - Certificate names

    /// Two certificates of the cluster's CA (node1, node2). The liar presents node2's
    /// certificate while claiming to be (or being dialled as) another node.
    @Test(arguments: ["connector", "acceptor"])
    func aPeerWhoseCertificateDoesNotNameItIsRefused(_ liar: String) async throws {
        let certificates = try NodeLinksTests.makeCertificates(count: 2)
        defer { try? FileManager.default.removeItem(at: certificates) }
        let logA = LogRecorder()
        let logB = LogRecorder()
        let atB = Received()
        let a: NodeLinks
        let b: NodeLinks
        let peer: String
        if liar == "connector" {
            // node2's certificate, claiming to be node1.
            a = node("node1", tls: try NodeLinksTests.tls(certificates, node: 2), log: logA)
            b = node("node2", tls: try NodeLinksTests.tls(certificates, node: 2), received: atB, log: logB)
            peer = "node2"
        } else {
            // Dialled as node3, answering as node3, with node2's certificate.
            a = node("node1", tls: try NodeLinksTests.tls(certificates, node: 1), log: logA)
            b = node("node3", tls: try NodeLinksTests.tls(certificates, node: 2), received: atB, log: logB)
            peer = "node3"
        }
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.update(peers: [(name: peer, address: "127.0.0.1:\(port)", incarnation: 1)])
        a.send(Self.message(1), to: peer)
        let refuser = liar == "connector" ? logB : logA
        #expect(await refuser.wait(for: "does not name node"))
        #expect((liar == "connector" ? b : a).eventCounts[.refusedCertificateName, default: 0] >= 1)
        #expect(atB.count == 0)
        #expect(a.queueDepths[peer] == 1)
        await a.shutdown()
        await b.shutdown()
    }

    @Test func withNameChecksOffAnyCertificateOfTheCAWill() async throws {
        let certificates = try NodeLinksTests.makeCertificates(count: 2)
        defer { try? FileManager.default.removeItem(at: certificates) }
        let atB = Received()
        let a = node("a", tls: try NodeLinksTests.tls(certificates, node: 2, verifyNames: false))
        let b = node("b", tls: try NodeLinksTests.tls(certificates, node: 1, verifyNames: false), received: atB)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        a.send(Self.message(1), to: "b")
        #expect(await atB.arrived(1))
        await a.shutdown()
        await b.shutdown()
    }

    @Test func certificateNamesAreReadFromTheCertificate() throws {
        let certificates = try NodeLinksTests.makeCertificates(count: 2)
        defer { try? FileManager.default.removeItem(at: certificates) }
        let pem = try String(contentsOf: certificates.appendingPathComponent("node2.crt"), encoding: .utf8)
        let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        let der = [UInt8](try #require(Data(base64Encoded: body)))
        let names = LinkCertificateNames(der: der)
        #expect(names.commonName == "node2.localhost")
        #expect(names.dnsNames == ["localhost", "conference.localhost", "node2.localhost"])
        #expect(names.name("node2"))
        #expect(names.name("NODE2"))
        #expect(!names.name("node1"))
        #expect(!names.name("node"))
        #expect(!names.name(""))
        // docs/deploy.md: CN=node1, a DNS name of the host only.
        let deployed = LinkCertificateNames(dnsNames: ["xmpp1.example.org"], commonName: "node1")
        #expect(deployed.name("node1"))
        #expect(!deployed.name("node2"))
        // Anything that is not a certificate names nothing.
        #expect(!LinkCertificateNames(der: Array(der.prefix(40))).name("node2"))
        #expect(!LinkCertificateNames(der: [0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]).name("node2"))
    }
}
