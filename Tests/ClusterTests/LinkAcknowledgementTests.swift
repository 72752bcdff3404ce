@testable import Cluster
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import XMPPCore

/// What a node link acknowledges, and whom it still listens to, over real loopback
/// sockets. Room input is its sender's until the room has handled it, so that when the
/// receiving node is declared gone first (paused, killed) the sender still holds it and
/// routes it to the room's next owner; and a run of a node declared gone is not heard
/// any more, so that what it sends after it resumes cannot arrive late or twice.
@Suite struct LinkAcknowledgementTests {
    typealias Received = NodeLinksTests.Received

    /// The receipts of the room input a node took, held as a room holds its input.
    final class Receipts: Sendable {
        let held = Mutex<[LinkReceipt]>([])
    }

    func node(
        _ name: String, incarnation: Int64 = 1, received: Received = Received(), receipts: Receipts? = nil
    ) -> NodeLinks {
        NodeLinks(
            name: name, incarnation: incarnation, secret: "s", group: MultiThreadedEventLoopGroup.singleton,
            logger: Logger(label: "test"),
            handler: { frame, from, receipt in
                if case .room = frame { receipts?.held.withLock { $0.append(receipt) } }
                received.add(frame, from: from)
            },
            bounce: { _ in }
        )
    }

    /// `a` linked to `b`, whose rooms hold their input's receipts in `receipts`.
    func linked(_ from: String = "a", to: String = "b") async throws
        -> (a: NodeLinks, b: NodeLinks, atB: Received, receipts: Receipts, port: Int)
    {
        let atB = Received()
        let receipts = Receipts()
        let a = node(from)
        let b = node(to, received: atB, receipts: receipts)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.update(peers: [(name: to, address: "127.0.0.1:\(port)", incarnation: 1)])
        return (a, b, atB, receipts, port)
    }

    static func roomInput(_ n: Int) throws -> LinkFrame {
        let stanza = XMLElement(
            "message", namespace: Namespace.client, ["to": "room@conference.localhost", "type": "groupchat", "id": "m\(n)"],
            children: [XMLElement("body", namespace: Namespace.client, text: String(n))]
        )
        return .room(stanza, real: try JID("romeo@localhost/phone"), home: "a", hops: 1)
    }

    /// Waits until `condition` holds, checking every few milliseconds; whether it did
    /// within `limit`.
    func until(within limit: Duration = .seconds(15), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    @Test func roomInputIsAcknowledgedOnlyOnceTheRoomHandledIt() async throws {
        let (a, b, atB, receipts, _) = try await linked()
        for n in 1...3 { a.send(try Self.roomInput(n), to: "b") }
        a.send(NodeLinksTests.message(4), to: "b")
        #expect(await atB.arrived(4))
        // Rooms handled inputs 1 and 2 (in either order); input 3 is still in its room.
        let held = receipts.held.withLock { receipts -> LinkReceipt in
            defer { receipts = [] }
            return receipts[2]
        }
        // Everything but input 3 is acknowledged: a room that holds its input does not
        // hold back the frames after it.
        #expect(await until { a.queueDepths["b"] == 1 }, "acknowledged: all but the input still in its room")
        // b is declared gone: the input its room never handled is still a's to route again.
        let unsent = a.replace(peers: [])
        #expect(unsent == [try Self.roomInput(3)])
        withExtendedLifetime(held) {}
        await a.shutdown()
        await b.shutdown()
    }

    /// The connection drops while a room holds input taken on it: the next connection's
    /// handshake (`<ok last>`) must not acknowledge that input.
    @Test func aReconnectDoesNotAcknowledgeInputARoomStillHolds() async throws {
        let (a, b, atB, receipts, _) = try await linked()
        a.send(try Self.roomInput(1), to: "b")
        a.send(NodeLinksTests.message(2), to: "b")
        #expect(await atB.arrived(2))
        a.dropConnection(to: "b")
        a.send(NodeLinksTests.message(3), to: "b")
        #expect(await atB.arrived(3))
        #expect(await until { a.queueDepths["b"] == 1 })
        let unsent = a.replace(peers: [])
        #expect(unsent == [try Self.roomInput(1)], "the input its room still holds stays a's")
        withExtendedLifetime(receipts) {}
        await a.shutdown()
        await b.shutdown()
    }

    /// What a node keeps alive with a frame it forwards (the receipt of the input it
    /// passes on) lives until the next node's room has handled the frame, or comes back
    /// with the frame when the link closes.
    @Test func whatIsKeptWithAForwardedFrameLivesUntilItIsHandled() async throws {
        final class Token: Sendable {
            private let flag = Atomic<Bool>(false)
            var gone: Bool { flag.load(ordering: .acquiring) }
            func set() { flag.store(true, ordering: .releasing) }
        }
        final class Keep: Sendable {
            let token: Token
            init(_ token: Token) { self.token = token }
            deinit { token.set() }
        }
        let (b, c, atC, receipts, _) = try await linked("b", to: "c")
        let first = Token()
        let second = Token()
        #expect(b.enqueue(try Self.roomInput(1), to: "c", keeping: Keep(first)))
        #expect(b.enqueue(try Self.roomInput(2), to: "c", keeping: Keep(second)))
        #expect(await atC.arrived(2))
        // c's rooms handle input 1 and hold input 2.
        let held = receipts.held.withLock { receipts -> LinkReceipt in
            defer { receipts = [] }
            return receipts[1]
        }
        #expect(await until { first.gone }, "released once c handled it")
        #expect(!second.gone)
        let unsent = b.replaceKeeping(peers: [])
        #expect(unsent.map(\.frame) == [try Self.roomInput(2)])
        #expect(unsent.first?.keep is Keep, "returned with its frame, for the input routed again")
        withExtendedLifetime(held) {}
        await b.shutdown()
        await c.shutdown()
    }

    /// Between a lost lease and its next run a node takes nothing from its links (make
    /// chaos seed 11078600, step 180: a node that resumed took input queued for it while
    /// it was paused, forwarded it to the room's new owner, and its next run sent that
    /// forward: the room's new owner, which had the input from its sender already,
    /// handled it twice).
    @Test func aNodeThatLostItsLeaseTakesAndAcknowledgesNothingMore() async throws {
        let (a, b, atB, receipts, _) = try await linked()
        a.send(try Self.roomInput(1), to: "b")
        #expect(await atB.arrived(1))
        // b's rooms drop what they hold (its lease is lost): dropped is not handled.
        b.stopAcknowledging()
        receipts.held.withLock { $0 = [] }
        a.send(NodeLinksTests.message(2), to: "b")
        #expect(await until { b.eventCounts[LinkEvent.refusedWhileRejoining, default: 0] >= 1 })
        #expect(atB.frames.withLock { $0.count } == 1, "message 2 was not taken")
        let unsent = a.replace(peers: [])
        #expect(unsent == [try Self.roomInput(1), NodeLinksTests.message(2)])
        await a.shutdown()
        await b.shutdown()
    }

    /// A node that lost its lease drops what its links queued: its next run must not send
    /// the gone run's frames as its own (a receiver would take room input twice).
    @Test func aNodeThatLostItsLeaseDropsWhatItsLinksHeld() async throws {
        let (a, b, atB, receipts, port) = try await linked()
        a.send(try Self.roomInput(1), to: "b")
        #expect(await atB.arrived(1))
        #expect(a.dropAllLinks() == 1, "the input b's room still holds")
        #expect(a.queueDepths.isEmpty)
        a.setIncarnation(2)
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        a.send(NodeLinksTests.message(2), to: "b")
        #expect(await atB.arrived(2))
        #expect(atB.frames.withLock { $0.map(\.0) } == [try Self.roomInput(1), NodeLinksTests.message(2)])
        withExtendedLifetime(receipts) {}
        await a.shutdown()
        await b.shutdown()
    }

    @Test func aRunOfAPeerDeclaredGoneIsNotHeardButItsNextRunIs() async throws {
        let atB = Received()
        let a = node("a")
        let b = node("b", received: atB)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        let aPort = try await a.listen(host: "127.0.0.1", port: 0)
        b.update(peers: [(name: "a", address: "127.0.0.1:\(aPort)", incarnation: 1)])
        a.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        a.send(NodeLinksTests.message(1), to: "b")
        #expect(await atB.arrived(1))

        // a was paused past its lease: b reads a membership without it. When a resumes,
        // it flushes what it had queued.
        b.update(peers: [])
        a.send(NodeLinksTests.message(2), to: "b")
        #expect(await until { b.eventCounts[LinkEvent.departedPeerRefused, default: 0] >= 1 })
        #expect(atB.bodies == ["1"])

        // a rejoins as run 2: heard again.
        let a2 = node("a", incarnation: 2)
        let a2Port = try await a2.listen(host: "127.0.0.1", port: 0)
        b.update(peers: [(name: "a", address: "127.0.0.1:\(a2Port)", incarnation: 2)])
        a2.update(peers: [(name: "b", address: "127.0.0.1:\(port)", incarnation: 1)])
        a2.send(NodeLinksTests.message(3), to: "b")
        #expect(await atB.arrived(2))
        #expect(atB.bodies == ["1", "3"])
        await a.shutdown()
        await a2.shutdown()
        await b.shutdown()
    }
}
