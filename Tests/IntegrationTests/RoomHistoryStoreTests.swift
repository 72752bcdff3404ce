import Cluster
import Foundation
import PostgresNIO
import Storage
import StoragePostgres
import Testing
import XMPPCore

/// The room history as the store keeps it: messages written in groups (one statement for
/// a group of history entries, or inside a transaction with other changes) come back in
/// their order, trimmed to the room's limit, and a deposed owner's history is refused
/// whole. Against the real database.
@Suite(.enabled(if: TestEnvironment.hasDatabase))
struct RoomHistoryStoreTests {
    func unique(_ prefix: String) -> String { prefix + String(UInt64.random(in: 0...UInt64.max), radix: 36) }

    func entry(_ text: String, stamp: Double) -> StoredHistoryEntry {
        StoredHistoryEntry(stanza: "<message type='groupchat'><body>\(text)</body></message>", stamp: stamp, nick: "nick-\(text)")
    }

    /// A room claimed by a fresh (draining) node, with its configuration stored.
    func claimedRoom() async throws -> (PostgresRoomStore, JID, RoomFence) {
        let (store, room, fence, _) = try await claimedRoomWithNode()
        return (store, room, fence)
    }

    func claimedRoomWithNode() async throws -> (PostgresRoomStore, JID, RoomFence, PostgresClient) {
        let client = try await TestDatabase.shared.connected()
        let store = PostgresRoomStore(client: client, logger: TestEnvironment.logger)
        let node = try await TestDatabase.shared.drainingNode("history-node-")
        let room = try JID(unique("history") + "@conference.localhost")
        let epoch = try #require(try await store.claim(room, node: node, incarnation: 1))
        let fence = RoomFence(node: node, epoch: epoch)
        try await store.apply([.configuration(json: "{}", persistent: true, locked: false)], to: room, fence: fence)
        return (store, room, fence, client)
    }

    func bodies(_ store: PostgresRoomStore, _ room: JID) async throws -> [String] {
        let stored = try #require(try await store.loadRoom(room))
        return stored.history.map { entry in
            let start = entry.stanza.range(of: "<body>")!.upperBound
            let end = entry.stanza.range(of: "</body>")!.lowerBound
            return String(entry.stanza[start..<end])
        }
    }

    @Test func aGroupOfMessagesIsKeptInOrderAndTrimmedToTheLimit() async throws {
        let (store, room, fence) = try await claimedRoom()
        try await store.apply((1...3).map { .history(entry("m\($0)", stamp: Double($0)), keep: 4) }, to: room, fence: fence)
        #expect(try await bodies(store, room) == ["m1", "m2", "m3"])
        // Two more: the oldest goes.
        try await store.apply((4...5).map { .history(entry("m\($0)", stamp: Double($0)), keep: 4) }, to: room, fence: fence)
        #expect(try await bodies(store, room) == ["m2", "m3", "m4", "m5"])
        // A group larger than the limit keeps only its own newest.
        try await store.apply((6...11).map { .history(entry("m\($0)", stamp: Double($0)), keep: 4) }, to: room, fence: fence)
        #expect(try await bodies(store, room) == ["m8", "m9", "m10", "m11"])
        let stored = try #require(try await store.loadRoom(room))
        #expect(stored.history.map(\.stamp) == [8, 9, 10, 11])
        #expect(stored.history.map(\.nick) == ["nick-m8", "nick-m9", "nick-m10", "nick-m11"])
        // A limit of zero (history off) empties it.
        try await store.apply([.history(entry("m12", stamp: 12), keep: 0)], to: room, fence: fence)
        #expect(try await bodies(store, room).isEmpty)
    }

    @Test func messagesAmongOtherChangesKeepTheirPlace() async throws {
        let (store, room, fence, client) = try await claimedRoomWithNode()
        try await store.apply(
            [
                .history(entry("before", stamp: 1), keep: 3),
                .subject("topic", nick: "n", stamp: 2),
                .history(entry("after1", stamp: 3), keep: 3),
                .history(entry("after2", stamp: 4), keep: 3),
                .affiliation(try JID("member@localhost"), affiliation: "member", reason: nil, nick: nil),
                .history(entry("last", stamp: 5), keep: 3),
            ],
            to: room, fence: fence
        )
        let stored = try #require(try await store.loadRoom(room))
        #expect(stored.subject == "topic")
        #expect(stored.affiliations.map(\.jid.description) == ["member@localhost"])
        #expect(try await bodies(store, room) == ["after1", "after2", "last"])
        // The affiliation's notification names the writer as its origin (set in the same
        // query that checked the fence), so that the writing node does not apply it twice.
        var origins: [String?] = []
        for try await origin in try await client.query(
            "SELECT origin FROM events WHERE kind = 'affiliation' AND room = \(room.description)", logger: TestEnvironment.logger
        ).decode(String?.self) {
            origins.append(origin)
        }
        #expect(origins == [fence.description])
    }

    @Test func aLimitThatGrowsWithinABatchCountsAsItsLastEntrySays() async throws {
        let (store, room, fence) = try await claimedRoom()
        try await store.apply((1...2).map { .history(entry("old\($0)", stamp: Double($0)), keep: 2) }, to: room, fence: fence)
        // The limit grows within the batch (as a room's history fills): the last entry's counts.
        try await store.apply(
            [.history(entry("a", stamp: 3), keep: 3), .history(entry("b", stamp: 4), keep: 4), .history(entry("c", stamp: 5), keep: 4)],
            to: room, fence: fence)
        #expect(try await bodies(store, room) == ["old2", "a", "b", "c"])
    }

    @Test func aDeposedOwnersMessagesAreRefusedWhole() async throws {
        let (store, room, stale) = try await claimedRoom()
        try await store.apply([.history(entry("kept", stamp: 1), keep: 10)], to: room, fence: stale)
        // The room is released and claimed again: the first epoch is deposed.
        try await store.release(room, fence: stale)
        let epoch = try #require(try await store.claim(room, node: stale.node, incarnation: 1))
        #expect(epoch == stale.epoch + 1)
        await #expect(throws: StaleOwnerError.self) {
            try await store.apply((1...3).map { .history(entry("stale\($0)", stamp: Double($0)), keep: 10) }, to: room, fence: stale)
        }
        await #expect(throws: StaleOwnerError.self) {
            try await store.apply(
                [.history(entry("stale4", stamp: 4), keep: 10), .subject("stale", nick: "n", stamp: 5)], to: room, fence: stale)
        }
        #expect(try await bodies(store, room) == ["kept"])
    }

    @Test func textThatLooksLikeSQLOrHasNULLikeBytesIsStoredAsItCame() async throws {
        let (store, room, fence) = try await claimedRoom()
        let texts = ["it's", "a\"b", "{1,2}", "\\N", "NULL", "x'); DROP TABLE room_history; --", "ünïcödé 🎉"]
        try await store.apply(
            texts.enumerated().map { .history(entry($1, stamp: Double($0)), keep: 20) }, to: room, fence: fence)
        #expect(try await bodies(store, room) == texts)
    }

    /// A write retried after a timeout may have committed the first time: storing the
    /// same messages again (by their stanza-ids) adds nothing, alone or among other changes.
    @Test func messagesStoredAgainUnderTheirStanzaIDsAreKeptOnce() async throws {
        let (store, room, fence) = try await claimedRoom()
        func identified(_ n: Int) -> StoredRoomChange {
            var message = entry("m\(n)", stamp: Double(n))
            message.id = "sid-\(n)"
            return .history(message, keep: 10)
        }
        let batch = (1...3).map(identified)
        try await store.apply(batch, to: room, fence: fence)
        try await store.apply(batch, to: room, fence: fence)
        #expect(try await bodies(store, room) == ["m1", "m2", "m3"])
        // Again inside a transaction with another change, and with a new message after.
        let mixed = [identified(3), .subject("s", nick: "n", stamp: 4), identified(4)]
        try await store.apply(mixed, to: room, fence: fence)
        try await store.apply(mixed, to: room, fence: fence)
        #expect(try await bodies(store, room) == ["m1", "m2", "m3", "m4"])
        let stored = try #require(try await store.loadRoom(room))
        #expect(stored.history.map(\.id) == ["sid-1", "sid-2", "sid-3", "sid-4"])
        // The same id in another room is another message.
        let (other, otherRoom, otherFence) = try await claimedRoom()
        try await other.apply([identified(1)], to: otherRoom, fence: otherFence)
        #expect(try await bodies(other, otherRoom) == ["m1"])
        // A group as long as the room's limit, stored again: nothing is added, and nothing
        // of what is kept is trimmed away for the entries that were not added.
        let full = (5...14).map(identified)
        try await store.apply(full, to: room, fence: fence)
        try await store.apply(full, to: room, fence: fence)
        #expect(try await bodies(store, room) == (5...14).map { "m\($0)" })
        try await store.apply(Array(full.suffix(3)), to: room, fence: fence)
        #expect(try await bodies(store, room) == (5...14).map { "m\($0)" })
        // Messages without an id (stored before ids were kept) are never taken for each other.
        try await store.apply([.history(entry("plain", stamp: 5), keep: 10)], to: room, fence: fence)
        try await store.apply([.history(entry("plain", stamp: 5), keep: 10)], to: room, fence: fence)
        #expect(try await bodies(store, room).suffix(2) == ["plain", "plain"])
        #expect(try await bodies(store, room).count == 10)
    }
}
