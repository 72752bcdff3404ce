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

        let epoch = try #require(try await store.claim(room, node: first))
        let old = RoomFence(node: first, epoch: epoch)
        try await store.apply([.configuration(json: "{}", persistent: true, locked: false)], to: room, fence: old)
        try await store.apply([.subject("first", nick: "a", stamp: 1)], to: room, fence: old)

        // The second node cannot claim a room a live node holds…
        #expect(try await store.claim(room, node: second) == nil)
        // …until it is released; then the epoch moves on.
        try await store.release(room, fence: old)
        let newEpoch = try #require(try await store.claim(room, node: second))
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

    @Test func aDeadOwnersRoomCanBeClaimedAndADeadNodeCannotClaim() async throws {
        let client = try await TestDatabase.shared.connected()
        let logger = TestEnvironment.logger
        let database = ClusterDatabase(client: client, logger: logger)
        let store = PostgresRoomStore(client: client, logger: logger)
        let (dead, live) = (unique("dead-"), unique("live-"))
        try await register(database, dead, port: 1)
        try await register(database, live, port: 2)
        let room = try room()
        _ = try #require(try await store.claim(room, node: dead))
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
        #expect(try await store.claim(room, node: live) != nil)
        #expect(try await store.claim(room, node: dead) == nil)
        #expect(try await database.heartbeat(name: dead, incarnation: 1, leaseSeconds: 30) == false)
    }

    @Test func anAffiliationChangedWithPlainSQLReachesTheBusEvenIfCommittedBeforeListening() async throws {
        let client = try await TestDatabase.shared.connected()
        let logger = TestEnvironment.logger
        let database = ClusterDatabase(client: client, logger: logger)
        let store = PostgresRoomStore(client: client, logger: logger)
        let node = unique("bus-")
        try await register(database, node, port: 1)
        let room = try room()
        let epoch = try #require(try await store.claim(room, node: node))
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
