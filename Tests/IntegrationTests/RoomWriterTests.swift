import Cluster
import Foundation
import MUC
import MUCService
import PostgresNIO
import Storage
import StoragePostgres
import Synchronization
import Testing
import XMPPCore

/// The rooms' writer against the real PostgreSQL: a room whose write is refused (another
/// node took it) stops only that room's writes, not those of other rooms that happen to
/// have the same fence (every room's first epoch on a node is 1).
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(2)))
struct RoomWriterTests {
    @Test func aRefusedRoomDoesNotStopAnotherRoomWithTheSameFence() async throws {
        let client = try await TestDatabase.shared.connected()
        let logger = TestEnvironment.logger
        let service = try await RoomMoveOrderTests.Service.start(prefix: "writer-")
        let (muc, output, node, sender) = (service.muc, service.output, service.node, RoomMoveOrderTests.Service.sender)
        let (taken, kept) = (try JID("\(node)-a@conference.localhost"), try JID("\(node)-b@conference.localhost"))
        for room in [taken, kept] { service.createInstantRoom(room) }
        await eventuallyTrue("both rooms to be stored") {
            let rows = try? await client.query(
                "SELECT count(*) FROM rooms WHERE jid IN (\(taken.description), \(kept.description)) AND NOT locked", logger: logger
            )
                .decode(Int.self).rows()
            return rows?.first == 2
        }
        let fences = try await client.query(
            "SELECT epoch FROM room_owners WHERE room IN (\(taken.description), \(kept.description)) AND node = \(node)", logger: logger
        ).decode(Int64.self).rows()
        #expect(fences == [1, 1], "both rooms hold this node's first epoch")

        // Another node takes the first room (its epoch moves on): this node's next write
        // there is refused and it steps down from that room.
        _ = try await client.query("UPDATE room_owners SET epoch = epoch + 1 WHERE room = \(taken.description)", logger: logger).collect()
        muc.handle(RoomInput(stanza: RoomMoveOrderTests.message(1, to: taken, from: sender), real: sender, home: node))
        await eventuallyTrue("the taken room to be given up") { muc.roomCount == 1 }

        // The other room, same fence, still writes its history.
        muc.handle(RoomInput(stanza: RoomMoveOrderTests.message(2, to: kept, from: sender), real: sender, home: node))
        await muc.flushWrites()
        let history = try await client.query("SELECT stanza, stanza_id FROM room_history WHERE room = \(kept.description)", logger: logger)
            .decode((String, String?).self).rows()
        let stored = history.first { $0.0.contains("<body>2</body>") }
        #expect(stored != nil, "the kept room's message was not stored: \(history)")
        // Stored with the stanza-id the room gave it, which makes storing it again a no-op.
        if let (stanza, id) = stored {
            let id = try #require(id)
            #expect(stanza.contains("<stanza-id xmlns=\"urn:xmpp:sid:0\" id=\"\(id)\""), "\(stanza)")
        }
        #expect(output.events.withLock { $0 }.contains("d:2"))
        await service.stop()
    }

    func eventuallyTrue(_ what: String, _ condition: () async -> Bool) async {
        let deadline = ContinuousClock.now + .seconds(20)
        while !(await condition()) {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting for \(what)")
                return
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}

extension AsyncSequence where Self: Sendable {
    /// Every element, in order.
    func rows() async throws -> [Element] {
        var all: [Element] = []
        for try await element in self { all.append(element) }
        return all
    }
}
