import Cluster
import ClusterTestSupport
import Foundation
import MUC
import MUCService
import Storage
import StoragePostgres
import Synchronization
import Testing
import XMPPCore

/// A sender's messages keep their order while their room moves to another node: what
/// waited in the room while it was being handed over goes to the new owner ahead of
/// what the sender sends after the hand-over. A real `MUCService` on the real
/// PostgreSQL store, with the ring and the links replaced by a placement the test
/// switches and an output that records what is delivered and forwarded.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .serialized, .timeLimit(.minutes(2)))
struct RoomMoveOrderTests {
    /// The owner of every room is whatever the test says; the barrier passes at once.
    final class Placement: RoomPlacement {
        let nodeName: String
        let currentOwner: Mutex<String>
        init(nodeName: String) {
            self.nodeName = nodeName
            currentOwner = Mutex(nodeName)
        }
        func owner(of room: JID) -> String? { currentOwner.withLock { $0 } }
        func isReachable(_ node: String) -> Bool { true }
        var canServe: Bool { true }
        var incarnation: Int64 { 1 }
        var isRejoining: Bool { false }
        func ringBarrier() async {}
    }

    /// What the sender sees of its messages (the room's echo, "d:N") and what is
    /// forwarded to the new owner ("f:N"), in the order it happens.
    final class Output: RoomOutput {
        let events = Mutex<[String]>([])
        let unlocked = Mutex(false)
        func left(token: UInt64, room: JID, node: String) {}
        func membership(room: JID, real: JID, entered: Bool, node: String) {}
        func deliver(_ copies: RoomCopies, node: String?, keeping keep: (any AnyObject & Sendable)?) {
            let stanza = copies.stanza
            if stanza.name == "message", let body = stanza.child("body")?.text {
                events.withLock { $0.append("d:" + body) }
            }
            if stanza.name == "iq", stanza.type == "result" { unlocked.withLock { $0 = true } }
        }
        func forward(_ input: RoomInput, to node: String) -> Bool {
            if input.stanza.name == "message", let body = input.stanza.child("body")?.text {
                events.withLock { $0.append("f:" + body) }
            }
            return true
        }
    }

    /// A `MUCService` of a node registered in PostgreSQL (draining, so the other
    /// tests' nodes never send it rooms), with the test's placement and output, and
    /// its writer running.
    struct Service {
        static let sender = try! JID("sender@localhost/desk")
        let node: String
        let muc: MUCService
        let placement: Placement
        let output: Output
        let writer: Task<Void, Never>

        static func start(prefix: String) async throws -> Service {
            let client = try await TestDatabase.shared.connected()
            let logger = TestEnvironment.logger
            let node = try await TestDatabase.shared.drainingNode(prefix)
            let placement = Placement(nodeName: node)
            let output = Output()
            let muc = MUCService(
                domain: try JID("conference.localhost"),
                store: PostgresRoomStore(client: client, logger: logger),
                environment: RoomEnvironment(
                    now: { Date().timeIntervalSince1970 }, makeID: { UUID().uuidString }, occupantID: { _, real in real.description }
                ),
                placement: placement, output: output, logger: logger
            )
            return Service(node: node, muc: muc, placement: placement, output: output, writer: Task { await muc.runWriter() })
        }

        /// The sender joins `room`, which creates it, and configures it as an instant room.
        func createInstantRoom(_ room: JID) {
            var join = XMLElement("presence", namespace: Namespace.client, ["from": Self.sender.description, "to": "\(room)/sender"])
            join.append(XMLElement("x", namespace: Namespace.muc))
            muc.handle(RoomInput(stanza: join, real: Self.sender, home: node))
            var configure = XMLElement(
                "iq", namespace: Namespace.client, ["from": Self.sender.description, "to": room.description, "type": "set", "id": "c1"]
            )
            var query = XMLElement("query", namespace: Namespace.mucOwner)
            query.append(XMLElement("x", namespace: Namespace.dataForms, ["type": "submit"]))
            configure.append(query)
            muc.handle(RoomInput(stanza: configure, real: Self.sender, home: node))
        }

        func stop() async {
            muc.finishWrites()
            await writer.value
        }
    }

    static func message(_ number: Int, to room: JID, from sender: JID) -> XMLElement {
        var message = XMLElement(
            "message", namespace: Namespace.client, ["from": sender.description, "to": room.description, "type": "groupchat"]
        )
        message.append(XMLElement("body", namespace: Namespace.client, text: "\(number)"))
        return message
    }

    @Test(arguments: 1...3)
    func messagesSentWhileARoomIsHandedOverKeepTheirOrder(run: Int) async throws {
        let service = try await Service.start(prefix: "order-")
        let (muc, placement, output, node) = (service.muc, service.placement, service.output, service.node)
        let room = try JID("\(node)@conference.localhost")
        let sender = Service.sender

        // The sender creates the room (an instant room) and is its only occupant: the
        // room sends each of its messages back to it.
        service.createInstantRoom(room)
        try await eventually("the room to be unlocked") { output.unlocked.withLock { $0 } ? true : nil }

        // The sender sends on its own thread, as a connection's event loop does, while
        // the room moves to another node after its 200th message has come back, and
        // goes on for 500 more once the hand-over is done.
        // A thread of its own: a loop that never waits must not take one of the few
        // threads Swift's tasks (the writer, the hand-over) run on.
        let moved = Atomic(false)
        // However the test ends, the thread stops (within 500 messages).
        defer { moved.store(true, ordering: .relaxed) }
        let (sentCounts, sentContinuation) = AsyncStream.makeStream(of: Int.self)
        let thread = Thread {
            var number = 0
            var after = 0
            while after < 500, number < 1_000_000 {
                number += 1
                muc.handle(RoomInput(stanza: Self.message(number, to: room, from: sender), real: sender, home: node))
                if moved.load(ordering: .relaxed) { after += 1 }
            }
            sentContinuation.yield(number)
            sentContinuation.finish()
        }
        thread.start()
        try await eventually("200 messages to come back") { output.events.withLock { $0.count >= 200 } ? true : nil }
        placement.currentOwner.withLock { $0 = "elsewhere" }
        await muc.rebalance()
        moved.store(true, ordering: .relaxed)
        var total = 0
        for await count in sentCounts { total = count }
        await service.stop()

        let events = output.events.withLock { $0 }
        let delivered = events.filter { $0.hasPrefix("d:") }.compactMap { Int($0.dropFirst(2)) }
        let forwarded = events.filter { $0.hasPrefix("f:") }.compactMap { Int($0.dropFirst(2)) }
        #expect(!forwarded.isEmpty, "nothing was forwarded: the room did not move")
        // Everything the room handled before it left, then everything after, each once
        // and in the order sent.
        let inOrder = delivered + forwarded == Array(1...total)
        #expect(inOrder, "delivered \(Self.runs(delivered)), forwarded \(Self.runs(forwarded))")
        #expect(muc.roomCount == 0)
    }

    /// Polls `condition` (every 5 ms, for at most 20 s) until it holds.
    func eventually(_ what: String, _ condition: () -> Bool?) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while condition() == nil {
            guard ContinuousClock.now < deadline else { throw WaitFailed(what: what) }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    struct WaitFailed: Error, CustomStringConvertible {
        let what: String
        var description: String { "timed out waiting for \(what)" }
    }

    /// `[1, 2, 3, 7, 5]` as "1-3, 7, 5": where an order went wrong.
    static func runs(_ numbers: [Int]) -> String {
        numberRuns(numbers).joined(separator: ", ")
    }
}
