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

/// A backlog the store cannot write in one go within the write's deadline is written in
/// smaller pieces (and later writes stay that small), never retried whole forever; what
/// a timed-out write might have stored is not stored twice. Against the real database,
/// with the service's clock moved by the test.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(1)))
struct RoomWriterBatchTests {
    /// The real store, which hangs on any write of more than `largest` changes after
    /// committing it (the worst case: the writer gives up on a write that did commit, and
    /// writes it again) and, while `closed`, waits before every write.
    final class StallingStore: WrappedRoomStore, @unchecked Sendable {
        let largest: Int
        let closed = Mutex<[CheckedContinuation<Void, Never>]?>(nil)
        /// The size of every write, in order.
        let sizes = Mutex<[Int]>([])
        /// Told the size of each write that waits while the store is closed.
        let onWait = Mutex<(@Sendable (Int) -> Void)?>(nil)
        /// Told the size of each write that hangs.
        let onStall = Mutex<(@Sendable (Int) -> Void)?>(nil)

        init(_ store: PostgresRoomStore, largest: Int) {
            self.largest = largest
            super.init(store)
        }

        func close() { closed.withLock { $0 = $0 ?? [] } }

        func open() {
            let waiting = closed.withLock { closed in
                defer { closed = nil }
                return closed ?? []
            }
            for continuation in waiting { continuation.resume() }
        }

        override func apply(_ changes: [StoredRoomChange], to room: JID, fence: RoomFence) async throws {
            sizes.withLock { $0.append(changes.count) }
            await withCheckedContinuation { continuation in
                let wait = closed.withLock { closed -> Bool in
                    guard closed != nil else { return false }
                    closed!.append(continuation)
                    return true
                }
                if wait {
                    onWait.withLock { $0 }?(changes.count)
                } else {
                    continuation.resume()
                }
            }
            if changes.count > largest {
                try await store.apply(changes, to: room, fence: fence)
                onStall.withLock { $0 }?(changes.count)
                // Hangs until the writer gives up on it (which cancels it).
                let (never, _) = AsyncStream.makeStream(of: Int.self)
                for await _ in never {}
                throw CancellationError()
            }
            try await store.apply(changes, to: room, fence: fence)
        }
    }

    @Test func aBacklogTooBigForOneWriteIsWrittenInPiecesOnceEach() async throws {
        let clock = ManualClock()
        let stalling = Mutex<StallingStore?>(nil)
        let service = try await RoomStoreFailureTests.Service.start(prefix: "batch-", clock: .manual(clock)) { store in
            let wrapped = StallingStore(store, largest: 4)
            stalling.withLock { $0 = wrapped }
            return wrapped
        }
        let store = try #require(stalling.withLock { $0 })
        let client = try await TestDatabase.shared.connected()
        let owner = try JID("owner-\(service.node)@localhost/desk")
        let room = try JID("batch-\(service.node)@conference.localhost")
        try await service.create(room, by: owner)
        await service.muc.flushWrites(room)

        // Twenty messages while the store takes nothing: the first one's write waits, the
        // others queue behind it and make one backlog.
        try await sendWhileClosed(1...20, to: room, from: owner, service: service, store: store)
        _ = try await service.output.next(to: owner, "the last message's echo") {
            $0.name == "message" && $0.child("body")?.text == "20"
        }
        store.open()

        let stalled = await drain(room, service: service, store: store, clock: clock)
        #expect(stalled.first == 19, "the backlog behind the first message was one write: \(stalled)")
        #expect(stalled.dropFirst().allSatisfy { $0 <= 10 }, "only halves of it were tried again: \(stalled)")
        #expect(service.muc.counters.timedOutWrites == stalled.count)
        #expect(service.muc.writeBatchLimit < 19)

        let stored = try await bodies(of: room, client)
        #expect(stored == (1...20).map(String.init), "every message stored once, in order")

        // The next backlog starts at the size that was stored in time, not whole.
        let limit = service.muc.writeBatchLimit
        let before = store.sizes.withLock { $0.count }
        try await sendWhileClosed(21...40, to: room, from: owner, service: service, store: store)
        _ = try await service.output.next(to: owner, "the last message's echo") {
            $0.name == "message" && $0.child("body")?.text == "40"
        }
        store.open()
        _ = await drain(room, service: service, store: store, clock: clock)
        let later = store.sizes.withLock { Array($0[before...]) }
        #expect(later.first == 1, "the message whose write waited: \(later)")
        #expect(later.dropFirst().first ?? 0 <= limit, "\(later)")
        // The room keeps its newest 20: those of the second backlog, each once.
        let kept = try await bodies(of: room, client)
        #expect(kept == (21...40).map(String.init))
        await service.stop()
    }

    /// Waits until the room's queued writes are stored, giving up each write that hangs at
    /// its deadline by moving the service's clock; the sizes of the writes given up.
    func drain(_ room: JID, service: RoomStoreFailureTests.Service, store: StallingStore, clock: ManualClock) async -> [Int] {
        let (events, event) = AsyncStream.makeStream(of: Int.self)
        store.onStall.withLock { $0 = { event.yield($0) } }
        let flushed = Task {
            await service.muc.flushWrites(room)
            event.yield(0)
        }
        var stalled: [Int] = []
        for await size in events {
            guard size > 0 else { break }
            stalled.append(size)
            let due = clock.now.offset + .seconds(5)
            await clock.deadlines { $0.contains(due) }
            clock.advance(by: .seconds(5))
        }
        store.onStall.withLock { $0 = nil }
        await flushed.value
        return stalled
    }

    /// The bodies of the room's stored history, oldest first.
    func bodies(of room: JID, _ client: PostgresClient) async throws -> [String] {
        try await client.query(
            "SELECT stanza FROM room_history WHERE room = \(room.description) ORDER BY id", logger: TestEnvironment.logger
        ).decode(String.self).rows().map { stanza in
            String(stanza[stanza.range(of: "<body>")!.upperBound..<stanza.range(of: "</body>")!.lowerBound])
        }
    }

    /// Closes the store, sends the first message and waits until its write waits, then
    /// sends the others: they queue behind it.
    func sendWhileClosed(
        _ numbers: ClosedRange<Int>, to room: JID, from owner: JID, service: RoomStoreFailureTests.Service, store: StallingStore
    ) async throws {
        let (waits, wait) = AsyncStream.makeStream(of: Int.self)
        store.onWait.withLock { $0 = { wait.yield($0) } }
        store.close()
        service.send(RoomMoveOrderTests.message(numbers.lowerBound, to: room, from: owner), from: owner)
        var iterator = waits.makeAsyncIterator()
        #expect(await iterator.next() == 1, "the first message's write waits alone")
        store.onWait.withLock { $0 = nil }
        for n in numbers.dropFirst() { service.send(RoomMoveOrderTests.message(n, to: room, from: owner), from: owner) }
    }
}
