import NIOCore
import NIOPosix
import Testing

@testable import XMPPStream

/// The detector the load yield relies on, on a real event loop: a turn that runs long makes
/// the loop lagging; a connection waiting for it to catch up is resumed at a probe that runs
/// on time, and a waiter with nothing left to resume does not take a resumed connection's place.
struct LoopLagTests {
    /// A loop of its own for the test (kept for the process's life, as the detector is).
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    @Test func aLongTurnMakesTheLoopLagUntilAProbeRunsOnTime() async throws {
        let loop = Self.group.next()
        let lag = LoopLag.of(loop)
        #expect(lag === LoopLag.of(loop))
        // A turn of 300 ms (work the loop was given, not a wait for something): the probe
        // due 20 ms in runs about 280 ms late. The check is scheduled from the same turn, 1 ms
        // after it: it runs after the overdue probe and before the next one (due 20 ms after
        // that probe ran), whatever the machine's load.
        let lagging = try await loop.flatSubmit {
            usleep(300_000)
            return loop.scheduleTask(in: .milliseconds(1)) { lag.isLagging }.futureResult
        }.get()
        #expect(lagging, "a probe 280 ms late did not count as lagging")

        // Waiters run at a probe that runs on time, when the loop is not lagging any more.
        let (stale, resumed): (Bool, Bool) = try await withCheckedThrowingContinuation { continuation in
            loop.execute {
                var staleRan = false
                lag.whenCaughtUp {
                    staleRan = true
                    return false  // nothing to resume: does not count
                }
                lag.whenCaughtUp {
                    continuation.resume(returning: (staleRan, lag.isLagging))
                    return true
                }
            }
        }
        #expect(stale, "the waiter registered first did not run first")
        #expect(!resumed, "a waiter ran while the loop still lagged")
    }
}
