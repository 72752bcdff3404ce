import Cluster
import Foundation
import Logging
import PostgresNIO
import ServerRuntime
import Storage
import StoragePostgres
import Synchronization
import Testing
import XMPPCore

/// The PostgreSQL side of the cluster's invariants: fenced ownership and the control
/// bus, against the real database.
@Suite(.enabled(if: TestEnvironment.hasDatabase))
struct ClusterStoreTests {
    func unique(_ prefix: String) -> String { prefix + String(UInt64.random(in: 0...UInt64.max), radix: 36) }

    func room() throws -> JID { try JID(unique("fence") + "@conference.localhost") }

    /// A registered node that is never in the ring (draining): the other integration
    /// tests' nodes share this database and must not send it rooms.
    func register(_ database: ClusterDatabase, _ name: String, port: Int) async throws {
        _ = try await database.register(name: name, linkAddress: "127.0.0.1:\(port)", leaseSeconds: 30)
        _ = try await database.setState(name: name, "draining")
    }

    @Test func aStaleEpochCannotWriteAndChangesNothing() async throws {
        let client = try await TestDatabase.shared.connected()
        let logger = TestEnvironment.logger
        let database = ClusterDatabase(client: client, logger: logger)
        let store = PostgresRoomStore(client: client, logger: logger)
        let (first, second) = (unique("nodeA-"), unique("nodeB-"))
        try await register(database, first, port: 1)
        try await register(database, second, port: 2)
        let room = try room()

        let epoch = try #require(try await store.claim(room, node: first, incarnation: 1))
        let old = RoomFence(node: first, epoch: epoch)
        try await store.apply([.configuration(json: "{}", persistent: true, locked: false)], to: room, fence: old)
        try await store.apply([.subject("first", nick: "a", stamp: 1)], to: room, fence: old)

        // The second node cannot claim a room a live node holds…
        #expect(try await store.claim(room, node: second, incarnation: 1) == nil)
        // …until it is released; then the epoch moves on.
        try await store.release(room, fence: old)
        let newEpoch = try #require(try await store.claim(room, node: second, incarnation: 1))
        #expect(newEpoch == epoch + 1)

        // The deposed owner's write fails as a whole and leaves nothing behind.
        await #expect(throws: StaleOwnerError.self) {
            try await store.apply(
                [.subject("stale", nick: "a", stamp: 2), .affiliation(try JID("x@localhost"), affiliation: "member", reason: nil, nick: nil)],
                to: room, fence: old
            )
        }
        let stored = try #require(try await store.loadRoom(room))
        #expect(stored.subject == "first")
        #expect(stored.affiliations.isEmpty)
        // The new owner writes.
        try await store.apply([.subject("second", nick: "b", stamp: 3)], to: room, fence: RoomFence(node: second, epoch: newEpoch))
        #expect(try await store.loadRoom(room)?.subject == "second")
    }

    /// The reproduction of a stranded room: node A held the room, A restarted under the
    /// same name (a new incarnation, alive): the row names A's earlier run, so node B —
    /// the ring's owner now — claims at once; the earlier run can claim nothing, and the
    /// new run of A claims only from no live holder.
    @Test func aRowLeftByAnEarlierRunOfALiveNodeIsClaimableAtOnce() async throws {
        let client = try await TestDatabase.shared.connected()
        let logger = TestEnvironment.logger
        let database = ClusterDatabase(client: client, logger: logger)
        let store = PostgresRoomStore(client: client, logger: logger)
        let (a, b) = (unique("restarted-"), unique("ringowner-"))
        try await register(database, a, port: 1)
        try await register(database, b, port: 2)
        let room = try room()
        let first = try #require(try await store.claim(room, node: a, incarnation: 1))
        #expect(try await store.owner(of: room) == RoomOwnerRecord(node: a, incarnation: 1, epoch: first, live: true))
        #expect(try await store.claim(room, node: b, incarnation: 1) == nil)
        #expect(try await store.heldRooms(node: a, incarnation: 1).map(\.room) == [room])

        // A restarts: incarnation 2, alive. The row is no one's any more.
        let second = try await database.register(name: a, linkAddress: "127.0.0.1:1", leaseSeconds: 30)
        #expect(second == 2)
        _ = try await database.setState(name: a, "draining")
        #expect(try await store.owner(of: room)?.live == false)
        #expect(try await store.heldRooms(node: a, incarnation: 2).isEmpty)
        // The earlier run cannot claim (nor take it back).
        #expect(try await store.claim(room, node: a, incarnation: 1) == nil)
        let taken = try #require(try await store.claim(room, node: b, incarnation: 1))
        #expect(taken == first + 1)
        // Now B holds it live: A's new run waits for a release like anyone.
        #expect(try await store.claim(room, node: a, incarnation: 2) == nil)
        try await store.release(room, fence: RoomFence(node: b, epoch: taken))
        #expect(try await store.owner(of: room) == RoomOwnerRecord(node: nil, incarnation: 1, epoch: taken, live: false))
        #expect(try await store.claim(room, node: a, incarnation: 2) == taken + 1)
    }

    /// A row written before owner rows named incarnations has none: nobody live holds it.
    @Test func aRowWithoutIncarnationIsClaimable() async throws {
        let client = try await TestDatabase.shared.connected()
        let logger = TestEnvironment.logger
        let database = ClusterDatabase(client: client, logger: logger)
        let store = PostgresRoomStore(client: client, logger: logger)
        let (old, new) = (unique("old-"), unique("new-"))
        try await register(database, old, port: 1)
        try await register(database, new, port: 2)
        let room = try room()
        _ = try await client.query(
            "INSERT INTO room_owners (room, node, epoch) VALUES (\(room.description), \(old), 7)", logger: logger
        ).collect()
        #expect(try await store.owner(of: room)?.live == false)
        #expect(try await store.claim(room, node: new, incarnation: 1) == 8)
    }

    /// Asking a holder to release a room is an event for that node only.
    @Test func askingAHolderToReleaseIsAnEventNamingIt() async throws {
        let client = try await TestDatabase.shared.connected()
        let logger = TestEnvironment.logger
        let database = ClusterDatabase(client: client, logger: logger)
        let store = PostgresRoomStore(client: client, logger: logger)
        let room = try room()
        let before = try await database.lastEventID()
        try await store.askToRelease(room, holder: "node-x")
        let events = try await database.events(after: before).filter { $0.room == room.description }
        #expect(events.map(\.kind) == ["release-wanted"])
        #expect(events.first?.node == "node-x")
    }

    @Test func aDeadOwnersRoomCanBeClaimedAndADeadNodeCannotClaim() async throws {
        let client = try await TestDatabase.shared.connected()
        let logger = TestEnvironment.logger
        let database = ClusterDatabase(client: client, logger: logger)
        let store = PostgresRoomStore(client: client, logger: logger)
        let (dead, live) = (unique("dead-"), unique("live-"))
        try await register(database, dead, port: 1)
        try await register(database, live, port: 2)
        let room = try room()
        _ = try #require(try await store.claim(room, node: dead, incarnation: 1))
        // The lease runs out (as if the node was killed long ago, beyond the grace after a restart).
        _ = try await client.query(
            "UPDATE cluster_nodes SET lease_until = now() - interval '1 hour' WHERE name = \(dead)", logger: logger
        ).collect()
        // Right after PostgreSQL started every node counts as alive for 10 s: wait that out.
        let deadline = ContinuousClock.now + .seconds(15)
        while try await database.members().first(where: { $0.name == dead })?.alive != false {
            guard ContinuousClock.now < deadline else { throw TestFailure("the dead node stays alive") }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try await store.claim(room, node: live, incarnation: 1) != nil)
        #expect(try await store.claim(room, node: dead, incarnation: 1) == nil)
        #expect(try await database.heartbeat(name: dead, incarnation: 1, leaseSeconds: 30) == false)
    }

    /// One node's heartbeat whose commit is slow (here: a transaction left open) must not
    /// hold back another node's: several leases would run out together.
    @Test func aHeartbeatDoesNotWaitForAnotherNodesUnfinishedHeartbeat() async throws {
        let client = try await TestDatabase.shared.connected()
        let logger = TestEnvironment.logger
        let database = ClusterDatabase(client: client, logger: logger)
        let (slow, other) = (unique("slow-"), unique("other-"))
        try await register(database, slow, port: 1)
        try await register(database, other, port: 2)
        let slowIncarnation = try #require(try await database.members().first { $0.name == slow }?.incarnation)
        let otherIncarnation = try #require(try await database.members().first { $0.name == other }?.incarnation)

        try await client.withConnection { slowConnection in
            _ = try await slowConnection.query("BEGIN", logger: logger).collect()
            let renewed = try await slowConnection.query(
                ClusterDatabase.heartbeatStatement(name: slow, incarnation: slowIncarnation, leaseSeconds: 30), logger: logger
            ).collect()
            #expect(renewed.count == 1)
            // While that heartbeat has not committed, the other node renews its lease. A
            // lock it had to wait for would fail this after 5 s instead of hanging.
            try await client.withConnection { otherConnection in
                _ = try await otherConnection.query("SET lock_timeout = '5s'", logger: logger).collect()
                let rows = try await otherConnection.query(
                    ClusterDatabase.heartbeatStatement(name: other, incarnation: otherIncarnation, leaseSeconds: 30),
                    logger: logger
                ).collect()
                #expect(rows.count == 1)
                _ = try await otherConnection.query("RESET lock_timeout", logger: logger).collect()
            }
            _ = try await slowConnection.query("ROLLBACK", logger: logger).collect()
        }
    }

    @Test func anAffiliationChangedWithPlainSQLReachesTheBusEvenIfCommittedBeforeListening() async throws {
        let client = try await TestDatabase.shared.connected()
        let logger = TestEnvironment.logger
        let database = ClusterDatabase(client: client, logger: logger)
        let store = PostgresRoomStore(client: client, logger: logger)
        let node = unique("bus-")
        try await register(database, node, port: 1)
        let room = try room()
        let epoch = try #require(try await store.claim(room, node: node, incarnation: 1))
        try await store.apply(
            [.configuration(json: "{}", persistent: true, locked: false),
             .affiliation(try JID("juliet@localhost"), affiliation: "member", reason: nil, nick: nil)],
            to: room, fence: RoomFence(node: node, epoch: epoch)
        )
        let start = try await database.lastEventID()
        // Committed before the bus listens: found by the catch-up.
        _ = try await client.query(
            "DELETE FROM room_affiliations WHERE room = \(room.description) AND jid = 'juliet@localhost'", logger: logger
        ).collect()
        let seen = AsyncStream.makeStream(of: ClusterEvent.self)
        let bus = ControlBus(
            configuration: try DatabaseURL.connectionConfiguration(try #require(TestEnvironment.databaseURL)),
            database: database, logger: logger
        ) { event in
            if event.room == room.description { seen.continuation.yield(event) }
        }
        let task = Task { await bus.run(after: start) }
        defer { task.cancel() }
        var iterator = seen.stream.makeAsyncIterator()
        let first = try #require(await iterator.next())
        #expect(first.kind == "affiliation")
        #expect(first.origin == nil)
        // And one committed while listening arrives by NOTIFY, with the writer's fence.
        try await store.apply(
            [.affiliation(try JID("romeo@localhost"), affiliation: "admin", reason: nil, nick: nil)],
            to: room, fence: RoomFence(node: node, epoch: epoch)
        )
        let second = try #require(await iterator.next())
        #expect(second.kind == "affiliation")
        #expect(second.origin == "\(node):\(epoch)")
    }
}
