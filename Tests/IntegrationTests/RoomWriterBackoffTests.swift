import Cluster
import Foundation
import MUC
import MUCService
import Storage
import StoragePostgres
import Synchronization
import Testing
import XMPPCore

/// The rooms' writer retries a write the store could not take (PostgreSQL away, a
/// timeout) after a backoff that doubles, on the service's clock: here a manual one, so
/// the test moves time instead of waiting, and sees that nothing is retried before the
/// backoff is over and that the room's answer waits for its write.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(1)))
struct RoomWriterBackoffTests {
    struct Unreachable: Error {}

    /// The real store, whose next `failures` writes fail as if PostgreSQL were away.
    final class FlakyStore: WrappedRoomStore, @unchecked Sendable {
        let failures = Mutex(0)
        let attempts = Mutex(0)

        override func apply(_ changes: [StoredRoomChange], to room: JID, fence: RoomFence) async throws {
            attempts.withLock { $0 += 1 }
            let fail = failures.withLock { failures -> Bool in
                guard failures > 0 else { return false }
                failures -= 1
                return true
            }
            if fail { throw Unreachable() }
            try await store.apply(changes, to: room, fence: fence)
        }
    }

    @Test func aWriteThatFailedIsRetriedAfterABackoffThatDoubles() async throws {
        let clock = ManualClock()
        let flaky = Mutex<FlakyStore?>(nil)
        let service = try await RoomStoreFailureTests.Service.start(prefix: "backoff-", clock: .manual(clock)) { store in
            let wrapped = FlakyStore(store)
            flaky.withLock { $0 = wrapped }
            return wrapped
        }
        let store = try #require(flaky.withLock { $0 })
        let (muc, output, node) = (service.muc, service.output, service.node)
        let room = try JID("backoff-\(node)@conference.localhost")
        let owner = try JID("owner-\(node)@localhost/desk")

        // The room's creation is a durable change: its answer waits for the write, which
        // fails twice.
        store.failures.withLock { $0 = 2 }
        var join = XMLElement("presence", namespace: Namespace.client, ["to": "\(room)/owner", "from": owner.description])
        join.append(XMLElement("x", namespace: Namespace.muc))
        muc.handle(RoomInput(stanza: join, real: owner, home: node))

        // The first backoff (the write's own deadline, also on this clock, is gone by then).
        await clock.deadlines { $0 == [.milliseconds(50)] }
        #expect(store.attempts.withLock { $0 } == 1)
        #expect(output.all(to: owner).isEmpty, "answered before the room was stored")
        #expect(clock.deadlines == [.milliseconds(50)], "the first backoff is 50 ms")
        clock.advance(by: .milliseconds(49))
        #expect(clock.deadlines == [.milliseconds(50)], "woken before the backoff was over")
        #expect(store.attempts.withLock { $0 } == 1, "retried before the backoff was over")
        clock.advance(by: .milliseconds(1))
        await clock.deadlines { $0 == [.milliseconds(150)] }  // the second failure, a longer backoff
        #expect(store.attempts.withLock { $0 } == 2)
        #expect(clock.now.offset == .milliseconds(50))
        #expect(clock.deadlines == [.milliseconds(150)], "the backoff doubles")
        clock.advance(by: .milliseconds(99))
        #expect(clock.deadlines == [.milliseconds(150)], "woken before the second backoff was over")
        #expect(store.attempts.withLock { $0 } == 2)
        clock.advance(by: .milliseconds(1))

        let answer = try await output.next(to: owner, "the room's creation") { $0.name == "presence" }
        #expect(answer.type != "error", "\(answer)")
        // The third attempt stored it (the occupant's row may have followed in a batch of its own).
        #expect(store.attempts.withLock { $0 } >= 3)
        #expect(try await store.loadRoom(room) != nil, "the room is stored")
        await service.stop()
    }
}
