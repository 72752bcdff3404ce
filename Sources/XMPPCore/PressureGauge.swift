import Synchronization

/// The depth of one queue (in bytes, or any unit) with a high-water and a low-water mark:
/// it is *high* from when the depth reaches `high` until it falls to `low` or below.
/// Producers that must slow down while it is high ask `whenRelieved`; nothing polls.
public final class PressureGauge: Sendable {
    public let high: Int
    public let low: Int

    private struct State {
        var level = 0
        var isHigh = false
        var peak = 0
        var highs = 0
        var waiters: [UInt64: @Sendable () -> Void] = [:]
        var nextWaiter: UInt64 = 0
    }
    private let state = Mutex(State())
    /// Gauges of the process that are high now: while none is, a producer need not find
    /// which queue it fills (one atomic load on the hot path).
    private static let highNow = Atomic<Int>(0)
    public static var anyHigh: Bool { highNow.load(ordering: .relaxed) > 0 }

    /// `high`: the depth from which the queue is high; `low` (at most `high`): the depth
    /// it must fall to before it is not.
    public init(high: Int, low: Int) {
        precondition(high > 0 && low >= 0 && low <= high)
        self.high = high
        self.low = low
    }

    deinit {
        if state.withLock({ $0.isHigh }) { Self.highNow.subtract(1, ordering: .relaxed) }
    }

    /// Adds `delta` (negative: taken out) to the depth.
    public func add(_ delta: Int) {
        guard delta != 0 else { return }
        let relieved = state.withLock { state -> [UInt64: @Sendable () -> Void] in
            state.level += delta
            state.peak = max(state.peak, state.level)
            if !state.isHigh, state.level >= high {
                state.isHigh = true
                state.highs += 1
                Self.highNow.add(1, ordering: .relaxed)
            } else if state.isHigh, state.level <= low {
                state.isHigh = false
                Self.highNow.subtract(1, ordering: .relaxed)
                defer { state.waiters = [:] }
                return state.waiters
            }
            return [:]
        }
        for waiter in relieved.sorted(by: { $0.key < $1.key }) { waiter.value() }
    }

    public var level: Int { state.withLock { $0.level } }
    public var isHigh: Bool { state.withLock { $0.isHigh } }
    /// The deepest the queue has been.
    public var peak: Int { state.withLock { $0.peak } }
    /// Times the queue became high.
    public var timesHigh: Int { state.withLock { $0.highs } }

    /// Calls `body` once the queue is not high: at once if it is not now, otherwise where
    /// the depth fell to the low mark. Returns a token for `cancel` while it waits.
    @discardableResult
    public func whenRelieved(_ body: @escaping @Sendable () -> Void) -> UInt64? {
        let token = state.withLock { state -> UInt64? in
            guard state.isHigh else { return nil }
            state.nextWaiter += 1
            state.waiters[state.nextWaiter] = body
            return state.nextWaiter
        }
        if token == nil { body() }
        return token
    }

    /// Forgets a waiter that gave up (its `body` is not called).
    public func cancel(_ token: UInt64) {
        _ = state.withLock { $0.waiters.removeValue(forKey: token) }
    }

    /// Waiters now (a waiter that gave up and was cancelled is not one).
    public var waiting: Int { state.withLock { $0.waiters.count } }
}
