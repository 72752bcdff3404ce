import Cluster
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
        let stream = AsyncStream.makeStream(of: Int.self)
        func add(_ frame: LinkFrame, from node: String) {
            let count = frames.withLock {
                $0.append((frame, node))
                return $0.count
            }
            stream.continuation.yield(count)
        }
        /// Waits until `count` frames arrived.
        func wait(for count: Int) async {
            if frames.withLock({ $0.count }) >= count { return }
            for await seen in stream.stream where seen >= count { return }
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

    func makeLinks(_ name: String, secret: String, received: Received, bounced: Received? = nil) -> NodeLinks {
        NodeLinks(
            name: name, incarnation: 1, secret: secret, group: MultiThreadedEventLoopGroup.singleton,
            logger: Logger(label: "test"),
            handler: { frame, from in received.add(frame, from: from) },
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
        let stanza = XMLElement("message", namespace: Namespace.client, ["from": "room@conference.localhost/x", "type": "groupchat"])
        a.send(.deliver(stanza, recipients: recipients), to: "b")
        a.send(.room(stanza, real: recipients[0], home: "a", hops: 1), to: "b")
        await atB.wait(for: 2)
        let frames = atB.frames.withLock { $0.map(\.0) }
        #expect(frames == [.deliver(stanza, recipients: recipients), .room(stanza, real: recipients[0], home: "a", hops: 1)])
        await a.shutdown()
        await b.shutdown()
    }

    @Test func aWrongSecretIsRefusedAndItsFramesAreNotHandled() async throws {
        let atB = Received()
        let bounced = Received()
        let a = makeLinks("a", secret: "wrong", received: Received(), bounced: bounced)
        let b = makeLinks("b", secret: "right", received: atB)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        a.send(Self.message(1), to: "b")
        // The peer is then declared gone: what it never accepted is bounced, not lost.
        try await Task.sleep(for: .milliseconds(300))  // give the refused handshake a chance to (wrongly) pass
        a.update(peers: [])
        await bounced.wait(for: 1)
        #expect(atB.frames.withLock { $0.isEmpty })
        #expect(bounced.bodies == ["1"])
        await a.shutdown()
        await b.shutdown()
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
}
