import Cluster
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import XMPPCore

/// Node links over real loopback sockets: order, authentication, and nothing lost or
/// duplicated when a connection drops.
@Suite struct NodeLinksTests {
    /// What a receiving node handled, in order.
    final class Received: Sendable {
        let frames = Mutex<[(LinkFrame, String)]>([])
        let signal = Signal()
        func add(_ frame: LinkFrame, from node: String) {
            frames.withLock { $0.append((frame, node)) }
            signal.notify()
        }
        var count: Int { frames.withLock { $0.count } }
        /// Waits until `count` frames arrived.
        func wait(for count: Int) async {
            _ = await signal.wait(within: .seconds(3600)) { self.count >= count }
        }
        /// Waits until `count` frames arrived, at most `limit`; whether they did.
        func arrived(_ count: Int, within limit: Duration = .seconds(15)) async -> Bool {
            await signal.wait(within: limit) { self.count >= count }
        }
        var bodies: [String] {
            frames.withLock { frames in
                frames.compactMap { frame, _ in
                    if case .user(let stanza) = frame { return stanza.child("body")?.text }
                    return nil
                }
            }
        }
    }

    static func message(_ n: Int) -> LinkFrame {
        .user(
            XMLElement(
                "message", namespace: Namespace.client, ["to": "juliet@localhost/garden", "type": "chat"],
                children: [XMLElement("body", namespace: Namespace.client, text: String(n))]
            )
        )
    }

    func makeLinks(_ name: String, secret: String, tls: LinkTLS? = nil, received: Received, bounced: Received? = nil) -> NodeLinks {
        NodeLinks(
            name: name, incarnation: 1, secret: secret, tls: tls, group: MultiThreadedEventLoopGroup.singleton,
            logger: Logger(label: "test"),
            handler: { frame, from, _ in received.add(frame, from: from) },
            bounce: { frame in bounced?.add(frame, from: "bounce") }
        )
    }

    @Test func framesArriveOnceAndInOrderWithTheSendersName() async throws {
        let atB = Received()
        let a = makeLinks("a", secret: "s3cret", received: Received())
        let b = makeLinks("b", secret: "s3cret", received: atB)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        for n in 1...500 { a.send(Self.message(n), to: "b") }
        await atB.wait(for: 500)
        #expect(atB.bodies == (1...500).map(String.init))
        #expect(atB.frames.withLock { $0.allSatisfy { $0.1 == "a" } })
        await a.shutdown()
        await b.shutdown()
    }

    @Test func roomOutputCarriesItsRecipients() async throws {
        let atB = Received()
        let a = makeLinks("a", secret: "s", received: Received())
        let b = makeLinks("b", secret: "s", received: atB)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        let recipients = [try JID("romeo@localhost/a b"), try JID("juliet@localhost/garden")]
        var stanza = XMLElement(
            "message", namespace: Namespace.client, ["from": "room@conference.localhost/x", "type": "groupchat", "id": "m&1"])
        stanza.append(XMLElement("body", namespace: Namespace.client, text: "<b> & 'quoted' ✓"))
        let room = try JID("room@conference.localhost")
        let copies = StanzaCopies(
            stanza: PreparedStanza(stanza), recipients: recipients, message: .init(room: room.description, id: "m&1"), replay: true)
        let sent: [LinkFrame] = [
            .deliver(copies),
            .room(stanza, real: recipients[0], home: "a", hops: 1),
            .sessionEnded(room: room, real: recipients[1], home: "a", hops: 2, token: 7),
            .sessionLeft(token: 7),
            .membership(room: room, real: recipients[0], entered: true),
            .membership(room: room, real: recipients[1], entered: false),
        ]
        for frame in sent { a.send(frame, to: "b") }
        await atB.wait(for: sent.count)
        let frames = atB.frames.withLock { $0.map(\.0) }
        #expect(frames == sent)
        // The copies arrive as the bytes the room's node serialized, written as they are.
        guard case .deliver(let received) = frames.first else {
            Issue.record("no deliver frame")
            return
        }
        var expected = stanza
        expected[attribute: "to"] = nil
        #expect(String(decoding: received.stanza.bytes, as: UTF8.self) == expected.serialized(parentNamespace: Namespace.client))
        await a.shutdown()
        await b.shutdown()
    }

    /// `a` links to `b`, which must refuse it: nothing `a` sent is handled at `b`, and
    /// once `b` is declared gone, what it never accepted is bounced, not lost.
    func expectRefused(a secretA: String, _ tlsA: LinkTLS?, b secretB: String, _ tlsB: LinkTLS?) async throws {
        let atB = Received()
        let bounced = Received()
        let a = makeLinks("a", secret: secretA, tls: tlsA, received: Received(), bounced: bounced)
        let b = makeLinks("b", secret: secretB, tls: tlsB, received: atB)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        a.send(Self.message(1), to: "b")
        try await Task.sleep(for: .milliseconds(300))  // give the refused handshake a chance to (wrongly) pass
        a.update(peers: [])
        await bounced.wait(for: 1)
        #expect(atB.frames.withLock { $0.isEmpty })
        #expect(bounced.bodies == ["1"])
        await a.shutdown()
        await b.shutdown()
    }

    @Test func aWrongSecretIsRefusedAndItsFramesAreNotHandled() async throws {
        try await expectRefused(a: "wrong", nil, b: "right", nil)
    }

    @Test func framesQueuedWhileThePeerIsDownArriveWhenItIsBack() async throws {
        let atB = Received()
        let a = makeLinks("a", secret: "s", received: Received())
        // Find a free port, then leave it closed for a while.
        let probe = makeLinks("probe", secret: "s", received: Received())
        let port = try await probe.listen(host: "127.0.0.1", port: 0)
        await probe.shutdown()
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        for n in 1...20 { a.send(Self.message(n), to: "b") }
        #expect(a.queueDepths["b"] == 20)
        let b = makeLinks("b", secret: "s", received: atB)
        _ = try await b.listen(host: "127.0.0.1", port: port)
        for n in 21...40 { a.send(Self.message(n), to: "b") }
        await atB.wait(for: 40)
        #expect(atB.bodies == (1...40).map(String.init))
        await a.shutdown()
        await b.shutdown()
    }

    // MARK: - Mutual TLS

    /// Certificates made by `make certs` (deploy/local/certs.sh) into a fresh directory:
    /// a CA and `count` node certificates.
    static func makeCertificates(count: Int) throws -> URL {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("conclave-link-tls-\(UUID().uuidString)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [root.appendingPathComponent("deploy/local/certs.sh").path, String(count)]
        process.environment = ProcessInfo.processInfo.environment.merging(["CONCLAVE_TLS_DIR": directory.path]) { $1 }
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return directory
    }

    static func tls(_ directory: URL, node: Int, verifyNames: Bool = true) throws -> LinkTLS {
        try LinkTLS(
            certificatePath: directory.appendingPathComponent("node\(node).crt").path,
            keyPath: directory.appendingPathComponent("node\(node).key").path,
            caPath: directory.appendingPathComponent("ca.crt").path,
            verifyNames: verifyNames
        )
    }

    @Test func nodesWithCertificatesOfTheClusterCALinkOverMutualTLS() async throws {
        let certificates = try Self.makeCertificates(count: 2)
        defer { try? FileManager.default.removeItem(at: certificates) }
        let atB = Received()
        // Named as their certificates name them (certs.sh: CN nodeI.localhost).
        let a = makeLinks("node1", secret: "s", tls: try Self.tls(certificates, node: 1), received: Received())
        let b = makeLinks("node2", secret: "s", tls: try Self.tls(certificates, node: 2), received: atB)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.update(peers: [(name: "node2", address: "127.0.0.1:\(port)", incarnation: 1)])
        for n in 1...200 { a.send(Self.message(n), to: "node2") }
        await atB.wait(for: 200)
        #expect(atB.bodies == (1...200).map(String.init))
        await a.shutdown()
        await b.shutdown()
    }

    @Test(arguments: ["another CA", "no TLS"])
    func aNodeWithoutACertificateOfTheClusterCAIsRefused(_ intruder: String) async throws {
        let cluster = try Self.makeCertificates(count: 1)
        let other = try Self.makeCertificates(count: 1)
        defer {
            try? FileManager.default.removeItem(at: cluster)
            try? FileManager.default.removeItem(at: other)
        }
        // The right secret, but a certificate of another CA, or none at all.
        try await expectRefused(
            a: "s", intruder == "no TLS" ? nil : try Self.tls(other, node: 1), b: "s", try Self.tls(cluster, node: 1)
        )
    }
}
