import Cluster
import Foundation
import MUC
import MUCService
import Storage
import StoragePostgres
import Synchronization
import Testing
import XMPPCore

/// Input a room holds back is answered within the service's `inputTimeout`: here while
/// the node's lease is unconfirmed (the database away). A real `MUCService` on the real
/// PostgreSQL store; the clock of the expiry is the test's, so nothing sleeps.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .serialized, .timeLimit(.minutes(1)))
struct RoomInputTimeoutTests {
    final class Placement: RoomPlacement {
        let nodeName: String
        let serving = Mutex(true)
        init(nodeName: String) { self.nodeName = nodeName }
        func owner(of room: JID) -> String? { nodeName }
        func isReachable(_ node: String) -> Bool { true }
        var canServe: Bool { serving.withLock { $0 } }
        var incarnation: Int64 { 1 }
        var isRejoining: Bool { false }
        func ringBarrier() async {}
    }

    /// Every stanza the room sends, and what the session's node is told.
    final class Output: RoomOutput {
        let sent = Mutex<[XMLElement]>([])
        /// Each delivery with the node it went to.
        let copies = Mutex<[(stanza: XMLElement, node: String?)]>([])
        /// The tokens of the sessions' ends the rooms handled.
        let left = Mutex<[UInt64]>([])
        /// What a link would keep until the node the copies go to acknowledges them.
        let kept = Mutex<[any AnyObject & Sendable]>([])
        /// Groupchat messages sent again after a failover (`StanzaCopies.replay`).
        let replays = Mutex<[XMLElement]>([])
        func deliver(_ copies: RoomCopies, node: String?, keeping keep: (any AnyObject & Sendable)?) {
            if copies.copies.replay {
                replays.withLock { $0.append(copies.stanza) }
                return
            }
            sent.withLock { $0.append(copies.stanza) }
            self.copies.withLock { $0.append((copies.stanza, node)) }
            if let keep { kept.withLock { $0.append(keep) } }
        }
        func left(token: UInt64, room: JID, node: String) { left.withLock { $0.append(token) } }
        /// What the sessions' nodes were told: "+node real" entered, "-node real" left.
        let memberships = Mutex<[String]>([])
        func membership(room: JID, real: JID, entered: Bool, node: String) {
            memberships.withLock { $0.append((entered ? "+" : "-") + node + " " + real.description) }
        }
        /// The nodes acknowledged every copy.
        func acknowledgeAll() { kept.withLock { $0 = [] } }
        func forward(_ input: RoomInput, to node: String) -> Bool { true }
        var errors: [XMLElement] { sent.withLock { $0.filter { $0.type == "error" } } }
    }

    /// A `MUCService` of a node registered in PostgreSQL (draining, so the other tests'
    /// nodes never send it rooms), with the test's placement and output, its writer running.
    static func service(prefix: String = "bound-") async throws
        -> (node: String, muc: MUCService, placement: Placement, output: Output, writer: Task<Void, Never>)
    {
        let client = try await TestDatabase.shared.connected()
        let logger = TestEnvironment.logger
        let node = try await TestDatabase.shared.drainingNode(prefix)
        let placement = Placement(nodeName: node)
        let output = Output()
        let muc = MUCService(
            domain: try JID("conference.localhost"), store: PostgresRoomStore(client: client, logger: logger),
            environment: RoomEnvironment(
                now: { Date().timeIntervalSince1970 }, makeID: { UUID().uuidString }, occupantID: { _, real in real.description }
            ),
            placement: placement, output: output, inputTimeout: .seconds(5), logger: logger
        )
        return (node, muc, placement, output, Task { await muc.runWriter() })
    }

    @Test func inputHeldWhileTheLeaseIsUnconfirmedIsRefusedAfterTheBound() async throws {
        let (node, muc, placement, output, writer) = try await Self.service()
        let romeo = try JID("romeo@localhost/desk")
        let room = try JID("\(node)@conference.localhost")
        var join = XMLElement("presence", namespace: Namespace.client, ["from": romeo.description, "to": "\(room)/Romeo"])
        join.append(XMLElement("x", namespace: Namespace.muc))
        muc.handle(RoomInput(stanza: join, real: romeo, home: node))
        try await eventually("Romeo in the room") {
            output.sent.withLock { $0.contains { $0.name == "presence" && $0.type == nil } } ? true : nil
        }

        // The lease cannot be confirmed: the room holds its input.
        placement.serving.withLock { $0 = false }
        var message = XMLElement(
            "message", namespace: Namespace.client, ["from": romeo.description, "to": room.description, "type": "groupchat", "id": "m1"]
        )
        message.append(XMLElement("body", namespace: Namespace.client, text: "hello"))
        muc.handle(RoomInput(stanza: message, real: romeo, home: node))
        muc.handle(RoomInput.sessionEnded(room: room, real: romeo, home: node, token: 9))
        // Within the bound nothing is refused.
        muc.expireWaitingInput(now: muc.clock.now() + .seconds(4))
        #expect(output.errors.isEmpty)
        // Past it, the message is refused and says why; the session's leave still waits.
        muc.expireWaitingInput(now: muc.clock.now() + .seconds(6))
        let errors = output.errors
        #expect(errors.count == 1, "\(errors)")
        let error = try #require(errors.first?.child("error"))
        #expect(errors.first?[attribute: "id"] == "m1")
        #expect(error[attribute: "type"] == "wait")
        #expect(error.child("resource-constraint") != nil)
        #expect(error.child("text")?.text.contains("lease") == true, "\(error)")
        #expect(muc.counters.inputsTimedOut == 1)
        #expect(!output.left.withLock { $0.contains(9) })

        // The lease is back: the leave is handled (the node is told), nothing else.
        placement.serving.withLock { $0 = true }
        muc.resumeHeld()
        try await eventually("the leave to be handled") {
            output.left.withLock { $0.contains(9) } ? true : nil
        }
        #expect(!output.sent.withLock { $0.contains { $0.child("body")?.text == "hello" && $0.type == "groupchat" } })
        muc.finishWrites()
        await writer.value
    }

    /// A room activated while the lease is unconfirmed (the database restarting) waits
    /// for it instead of refusing at once: the join is answered once the lease is back.
    @Test func aRoomActivatedWhileTheLeaseIsUnconfirmedWaitsForIt() async throws {
        let (node, muc, placement, output, writer) = try await Self.service()
        placement.serving.withLock { $0 = false }
        let romeo = try JID("romeo@localhost/desk")
        let room = try JID("\(node)@conference.localhost")
        var join = XMLElement("presence", namespace: Namespace.client, ["from": romeo.description, "to": "\(room)/Romeo"])
        join.append(XMLElement("x", namespace: Namespace.muc))
        muc.handle(RoomInput(stanza: join, real: romeo, home: node))
        muc.expireWaitingInput(now: muc.clock.now() + .seconds(4))
        #expect(output.sent.withLock { $0.isEmpty })
        placement.serving.withLock { $0 = true }
        try await eventually("Romeo in the room") {
            output.sent.withLock { $0.contains { $0.name == "presence" && $0.type == nil } } ? true : nil
        }
        #expect(output.errors.isEmpty, "\(output.errors)")
        muc.finishWrites()
        await writer.value
    }

    /// Polls `condition` (every 5 ms, for at most 10 s) until it holds.
    func eventually(_ what: String, _ condition: () -> Bool?) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while condition() == nil {
            guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
