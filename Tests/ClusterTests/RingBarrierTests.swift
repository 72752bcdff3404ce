import Cluster
import Logging
import Synchronization
import Testing
import XMPPCore

/// The ring barrier with its timeout on a manual clock: what it sends, when it passes,
/// and when it answers other nodes' barriers — without waiting for real time.
@Suite(.timeLimit(.minutes(1)))
struct RingBarrierTests {
    /// The frames a barrier sent, and this node's ring, which the test sets.
    final class Peers: Sendable {
        let sent = Mutex<[(frame: LinkFrame, to: String)]>([])
        let ring = Mutex("a,b,c")
        /// Each acknowledgement as it is sent ("id->peer").
        let acks: AsyncStream<String>
        private let ackContinuation: AsyncStream<String>.Continuation

        init() {
            (acks, ackContinuation) = AsyncStream.makeStream(of: String.self)
        }

        func barrier(clock: ManualClock) -> RingBarrier {
            RingBarrier(
                clock: .manual(clock), logger: Logger(label: "ring-barrier-test"), currentRing: { self.ring.withLock { $0 } },
                send: { frame, peer in
                    self.sent.withLock { $0.append((frame, peer)) }
                    if case .barrierAck(let id) = frame { self.ackContinuation.yield("\(id)->\(peer)") }
                }
            )
        }

        var barriersSent: [(id: UInt64, ring: String, to: String)] {
            sent.withLock { sent in
                sent.compactMap { entry in
                    guard case .barrier(let id, let ring) = entry.frame else { return nil }
                    return (id, ring, entry.to)
                }
            }
        }

        var acksSent: [String] {
            sent.withLock { sent in
                sent.compactMap { entry in
                    guard case .barrierAck(let id) = entry.frame else { return nil }
                    return "\(id)->\(entry.to)"
                }
            }
        }
    }

    /// Whether `task` has finished, without waiting for it.
    final class Finished: Sendable {
        private let flag = Atomic(false)
        var done: Bool { flag.load(ordering: .relaxed) }
        func set() { flag.store(true, ordering: .relaxed) }
    }

    /// The barrier passing for `peers` in a task; `passed` says when it has.
    static func passing(_ barrier: RingBarrier, peers: Set<String>) -> (task: Task<Void, Never>, passed: Finished) {
        let passed = Finished()
        let task = Task {
            await barrier.pass(peers: peers)
            passed.set()
        }
        return (task, passed)
    }

    @Test func itPassesOnceEveryPeerAnswers() async throws {
        let clock = ManualClock()
        let peers = Peers()
        let barrier = peers.barrier(clock: clock)
        let (task, passed) = Self.passing(barrier, peers: ["b", "c"])
        await clock.sleepers(atLeast: 1)  // the barrier's timeout is running
        let sent = peers.barriersSent
        #expect(sent.map(\.to) == ["b", "c"])
        #expect(Set(sent.map(\.ring)) == ["a,b,c"])
        let id = try #require(sent.first?.id)
        barrier.acknowledged(id, from: "b")
        #expect(!passed.done, "c has not answered")
        barrier.acknowledged(id, from: "c")
        await task.value
        #expect(passed.done)
        #expect(clock.now.offset == .zero, "no time passed")
    }

    @Test func itPassesAfterTheTimeoutWhenAPeerNeverAnswers() async throws {
        let clock = ManualClock()
        let peers = Peers()
        let barrier = peers.barrier(clock: clock)
        let (task, passed) = Self.passing(barrier, peers: ["b", "c"])
        await clock.sleepers(atLeast: 1)
        #expect(clock.deadlines == [.seconds(2)], "the timeout is 2 s")
        barrier.acknowledged(try #require(peers.barriersSent.first?.id), from: "b")
        clock.advance(by: .milliseconds(1999))
        #expect(clock.deadlines == [.seconds(2)], "the timeout ended early")
        #expect(!passed.done)
        clock.advance(by: .milliseconds(1))
        await task.value
        #expect(passed.done)
        #expect(clock.now.offset == .seconds(2))
    }

    @Test func withoutPeersItPassesAtOnce() async {
        let clock = ManualClock()
        let peers = Peers()
        await peers.barrier(clock: clock).pass(peers: [])
        #expect(peers.sent.withLock { $0.isEmpty })
    }

    @Test func aBarrierForThisNodesRingIsAnsweredAtOnce() {
        let peers = Peers()
        peers.barrier(clock: ManualClock()).received(7, ring: "a,b,c", from: "b")
        #expect(peers.acksSent == ["7->b"])
    }

    @Test func aBarrierForAnotherRingIsAnsweredWhenThisNodeReachesIt() async {
        let clock = ManualClock()
        let peers = Peers()
        let barrier = peers.barrier(clock: clock)
        barrier.received(3, ring: "a,b", from: "b")
        barrier.received(4, ring: "a,b,c,d", from: "d")
        #expect(peers.acksSent.isEmpty)
        barrier.settle()
        #expect(peers.acksSent.isEmpty, "the ring did not change")
        peers.ring.withLock { $0 = "a,b" }
        barrier.settle()
        #expect(peers.acksSent == ["3->b"])
        // The other ring is never reached: answered after the timeout anyway.
        await clock.sleepers(atLeast: 2)
        clock.advance(by: .seconds(2))
        var acks = peers.acks.makeAsyncIterator()
        #expect(await acks.next() == "3->b")
        #expect(await acks.next() == "4->d")
    }
}
