import NIOCore
public import XMPPCore
import Synchronization

/// Remembers recent failed authentications per account on this node, and answers
/// how long the next failure's reply should wait: nothing for the first few, then a
/// growing delay, so guessing a password over many connections stays slow.
public final class AuthThrottle: Sendable {
    private struct Record {
        var failures: Int
        var windowStart: ContinuousClock.Instant
    }

    private let records = Mutex<[JID: Record]>([:])
    private let clock = ContinuousClock()

    public init() {}

    /// Records a failure and returns the delay before answering it.
    func recordFailure(_ account: JID?, options: C2SConfiguration.Options) -> TimeAmount {
        guard let account else { return .zero }
        let now = clock.now
        let failures = records.withLock { records -> Int in
            var record = records[account] ?? Record(failures: 0, windowStart: now)
            if now - record.windowStart > options.authFailureWindow {
                record = Record(failures: 0, windowStart: now)
            }
            record.failures += 1
            records[account] = record
            if records.count > 100_000 {
                records = records.filter { now - $0.value.windowStart <= options.authFailureWindow }
            }
            return record.failures
        }
        let excess = failures - options.authFailuresBeforeDelay
        guard excess > 0 else { return .zero }
        let delay = options.authFailureDelayStep.nanoseconds * Int64(excess)
        return .nanoseconds(min(delay, options.authFailureMaxDelay.nanoseconds))
    }

    func recordSuccess(_ account: JID?) {
        guard let account else { return }
        _ = records.withLock { $0.removeValue(forKey: account) }
    }

    /// Recent failures of `account` within the window (for tests and metrics).
    public func failures(of account: JID) -> Int {
        records.withLock { $0[account]?.failures ?? 0 }
    }
}
