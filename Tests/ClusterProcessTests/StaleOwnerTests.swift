import ClusterTestSupport
import Foundation
import NIOPosix
import PostgresNIO
import Testing
import XMPPCore

extension ClusterProcessTests {
    /// A paused owner (SIGSTOP past its lease) that wakes up after another node took its
    /// room must not change anything.
    @Suite(.timeLimit(.minutes(3)))
    struct StaleOwner {
        /// A room name the ring gives to `node` (tries name0, name1, …).
        static func room(named name: String, ownedBy node: String, in cluster: Cluster) async throws -> String {
            for index in 0..<64 {
                let room = "\(name)\(index)@conference.localhost"
                if try await cluster.roomWhere(room).ringOwner == node { return room }
            }
            throw TestFailure("no room name \(name)N that the ring gives to \(node)")
        }

        @Test func aPausedOwnerCannotWriteAfterItsRoomWasTaken() async throws {
            try await Cluster.run(test: "stale", nodes: 3) { cluster in
                for name in ["romeo", "juliet"] { try await cluster.addUser("\(name)@localhost") }
                // X owns both rooms; Romeo is on another node, Juliet on X itself.
                let x = "node1"
                let room = try await Self.room(named: "stale", ownedBy: x, in: cluster)
                // X's writer stores each room in its own lane, with at most 8 writes in flight:
                // eight other rooms of X whose writes we block take every slot.
                var others: [String] = []
                for index in 0..<8 { others.append(try await Self.room(named: "other\(index)x", ownedBy: x, in: cluster)) }
                let romeo = try await cluster.connect("romeo@localhost", to: "node2", resource: "r")
                let juliet = try await cluster.connect("juliet@localhost", to: x, resource: "j")
                try await romeo.join(room, nick: "Romeo")
                try await romeo.configure(room, [("muc#roomconfig_persistentroom", "1"), ("muc#roomconfig_changesubject", "1")])
                for other in others {
                    try await romeo.join(other, nick: "Romeo")
                    try await romeo.configure(other, [("muc#roomconfig_persistentroom", "1")])
                }
                try await juliet.join(room, nick: "Juliet")
                var mark = romeo.count
                romeo.setSubject(room, "before")
                try await romeo.waitFor("the subject 'before'", after: mark) { $0.child("subject")?.text == "before" }
                try await eventually("the subject 'before' and both occupants stored") {
                    let subject = try await cluster.sql.subject(of: room)
                    let occupants = try await cluster.sql.occupantCount(of: room)
                    return subject == "before" && occupants == 2 ? true : nil
                }
                let before = try await cluster.roomWhere(room)
                #expect(before.owner == x, "\(before)")
                let epoch = try #require(before.epoch)

                // Make X's writer wait: a transaction of ours holds the ownership rows of the
                // other rooms, so X's next writes (a message in each) block on them and take
                // every write slot, and the write of the message that follows in `room` stays
                // queued in X behind them.
                let lock = try await PostgresConnection.connect(
                    on: MultiThreadedEventLoopGroup.singleton.next(), configuration: cluster.sql.url.configuration, id: 9,
                    logger: ClusterTestEnvironment.logger
                )
                // A test that fails midway must still close its connection (an unclosed one traps).
                do {
                    try await lock.query("BEGIN", logger: ClusterTestEnvironment.logger)
                    for other in others {
                        try await lock.query("SELECT 1 FROM room_owners WHERE room = \(other) FOR UPDATE", logger: ClusterTestEnvironment.logger)
                    }
                    for other in others {
                        mark = romeo.count
                        romeo.say(other, "blocks the writer")
                        try await romeo.waitFor("the echo in \(other)", after: mark) { MUCStanza.isGroupchat($0, from: other) }
                    }
                    try await eventually("X's writes of the other rooms to wait for our lock") {
                        let waiting = try await cluster.sql.scalar(
                            "SELECT count(*)::int8 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                            as: Int64.self
                        )
                        return (waiting ?? 0) >= Int64(others.count) ? true : nil
                    }
                    mark = romeo.count
                    romeo.say(room, "queued before the pause")
                    try await romeo.waitFor("the echo of 'queued before the pause'", after: mark) { $0.child("body")?.text == "queued before the pause" }

                    try cluster.pause(x)
                    let paused = ContinuousClock.now
                    let after = try await eventually("another node to own \(room) while \(x) is paused", timeout: .seconds(cluster.leaseSeconds + 8)) {
                        () -> Cluster.RoomWhere? in
                        let now = try await cluster.roomWhere(room)
                        guard let owner = now.owner, owner != x, let newEpoch = now.epoch, newEpoch > epoch else { return nil }
                        return now
                    }
                    report("[stale] \(x) paused; \(after) after \(String(format: "%.0f", (ContinuousClock.now - paused).milliseconds)) ms")
                    let newOwner = after.owner!
                    let newEpoch = after.epoch!
                    // Juliet's session was on the paused node: Romeo sees her leave.
                    try await romeo.waitFor("Juliet leaving (her node is gone)", after: mark) {
                        $0.name == "presence" && $0.type == "unavailable" && $0[attribute: "from"] == "\(room)/Juliet"
                    }
                    // Juliet, still connected to the paused node, tries to change the room.
                    let julietMark = juliet.count
                    juliet.setSubject(room, "stale subject from X")
                    juliet.say(room, "stale message from X")
                    // The room changes through its new owner.
                    mark = romeo.count
                    romeo.setSubject(room, "after")
                    try await romeo.waitFor("the subject 'after'", after: mark) { $0.child("subject")?.text == "after" }
                    try await eventually("the subject 'after' stored") { try await cluster.sql.subject(of: room) == "after" ? true : nil }

                    // X wakes up: its queued write of `room` is refused, it notices its lease is gone.
                    let logStart = try cluster.node(x).logSize
                    try await lock.query("ROLLBACK", logger: ClusterTestEnvironment.logger)
                    try? await lock.close()
                    try cluster.resume(x)
                    let refused = try await cluster.node(x).waitForLog("stale owner", after: logStart, timeout: .seconds(15))
                    #expect(refused.contains(room), "the refused write should be of \(room): \(refused)")
                    let lost = try await cluster.node(x).waitForLog("lease lost", after: logStart, timeout: .seconds(15))
                    report("[stale] \(x) after SIGCONT: \(refused)\n[stale] \(lost)")
                    // Juliet's stream is reset (her occupancy was ended by the others).
                    let streamError = try await juliet.waitForEnd(timeout: .seconds(15))
                    let julietGot = juliet.elements(from: julietMark).map { String($0.element.description.prefix(300)) }
                    report("[stale] Juliet (on \(x)) received after her stale stanzas: \(julietGot)")
                    #expect(streamError?.child("reset", namespace: Namespace.streams) != nil, "Juliet's stream should end with <reset/>: \(julietGot)")

                    // Nothing of X's stale fence reached the database.
                    #expect(try await cluster.sql.subject(of: room) == "after")
                    let history = try await cluster.sql.history(of: room)
                    #expect(!history.contains { $0.contains("stale message from X") }, "history: \(history)")
                    #expect(!history.contains { $0.contains("queued before the pause") }, "X's refused write is in the history: \(history)")
                    // room_owners names the new owner, or X again under a still newer epoch (it rejoined
                    // as a new incarnation and the ring gives it the room back).
                    // (A hand-over in progress leaves it without a node for a moment.)
                    let owner = try await eventually("room_owners to name an owner of \(room)") { () -> (node: String?, epoch: Int64)? in
                        guard let owner = try await cluster.sql.owner(of: room), owner.node != nil else { return nil }
                        return owner
                    }
                    #expect(owner.node == newOwner && owner.epoch == newEpoch || owner.node == x && owner.epoch > newEpoch,
                            "room_owners after X woke up: \(owner); the new owner was \(newOwner) at epoch \(newEpoch)")
                    report("[stale] room_owners after X woke up: \(owner.node ?? "nil") epoch \(owner.epoch) (taken over by \(newOwner) at \(newEpoch))")
                    // Romeo never saw X's stale changes, and the room still works for him.
                    let seen = romeo.elements().map(\.element).filter { $0.description.contains("stale subject from X") || $0.description.contains("stale message from X") }
                    #expect(seen.isEmpty, "Romeo saw a stale change: \(seen)")
                    // The room still works for Romeo (wherever it lives now): ten messages, each
                    // echoed exactly once, in order.
                    mark = romeo.count
                    for number in 1...10 { romeo.say(room, "after-wake #\(number)") }
                    _ = try? await romeo.waitFor("the echo of after-wake #10", after: mark, timeout: .seconds(10)) {
                        MUCStanza.isNumbered($0, "after-wake", 10)
                    }
                    let echoes = DeliveryCheck(receiver: romeo, sender: "after-wake", room: room, expected: Array(1...10), from: mark)
                    #expect(echoes.ok, "after \(x) rejoined: \(echoes); received: \(romeo.elements(from: mark).map { String($0.element.description.prefix(160)) })")
                    #expect(try await cluster.sql.subject(of: room) == "after")
                } catch {
                    try? await lock.close()
                    throw error
                }
            }
        }
    }
}
