import Synchronization

/// A clock whose time moves only when told to (`advance(by:)`): for tests of code that
/// waits on a clock (timeouts, backoffs), which then neither sleep nor race real time.
/// Code that takes an `any Clock<Duration>` runs on `ContinuousClock` in the product.
public final class ManualClock: Clock, Sendable {
    public struct Instant: InstantProtocol, Sendable, CustomStringConvertible {
        /// Time since the clock was made.
        public var offset: Duration

        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
        public var description: String { "\(offset)" }
    }

    private struct Sleeper {
        var id: UInt64
        var deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [Sleeper] = []
        var lastID: UInt64 = 0
        /// Sleeps cancelled before they were registered.
        var cancelled: Set<UInt64> = []
        /// Waiting for the sleeps' deadlines to be as they want (`sleepers(atLeast:)`,
        /// `deadlines(where:)`).
        var watchers: [(ready: @Sendable ([Duration]) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []

        var deadlines: [Duration] { sleepers.map(\.deadline.offset).sorted() }

        /// The watchers whose wait is over (removed).
        mutating func readyWatchers() -> [CheckedContinuation<Void, Never>] {
            guard !watchers.isEmpty else { return [] }
            let deadlines = self.deadlines
            var ready: [CheckedContinuation<Void, Never>] = []
            var waiting: [(ready: @Sendable ([Duration]) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []
            for watcher in watchers {
                if watcher.ready(deadlines) { ready.append(watcher.continuation) } else { waiting.append(watcher) }
            }
            watchers = waiting
            return ready
        }
    }

    private let state = Mutex(State())

    public init() {}

    public var now: Instant { state.withLock { $0.now } }
    public var minimumResolution: Duration { .zero }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        let id = state.withLock { state -> UInt64 in
            state.lastID += 1
            return state.lastID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Now { case sleep, wake, cancel }
                let (now, watchers) = state.withLock { state -> (Now, [CheckedContinuation<Void, Never>]) in
                    if state.cancelled.remove(id) != nil { return (.cancel, []) }
                    if deadline <= state.now { return (.wake, []) }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    return (.sleep, state.readyWatchers())
                }
                for watcher in watchers { watcher.resume() }
                switch now {
                case .sleep: break
                case .wake: continuation.resume()
                case .cancel: continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let (sleeper, watchers) = state.withLock { state -> (Sleeper?, [CheckedContinuation<Void, Never>]) in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else {
                    state.cancelled.insert(id)
                    return (nil, [])
                }
                let sleeper = state.sleepers.remove(at: index)
                return (sleeper, state.readyWatchers())
            }
            sleeper?.continuation.resume(throwing: CancellationError())
            for watcher in watchers { watcher.resume() }
        }
    }

    /// When the sleeps waiting on the clock end, soonest first (time since the clock was made).
    public var deadlines: [Duration] {
        state.withLock { $0.deadlines }
    }

    /// Moves time on by `duration`; the sleeps whose deadline it reaches end.
    public func advance(by duration: Duration) {
        let (woken, watchers) = state.withLock { state -> ([Sleeper], [CheckedContinuation<Void, Never>]) in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let woken = state.sleepers.filter { $0.deadline <= now }
            state.sleepers.removeAll { $0.deadline <= now }
            return (woken, woken.isEmpty ? [] : state.readyWatchers())
        }
        for sleeper in woken.sorted(by: { $0.deadline < $1.deadline }) { sleeper.continuation.resume() }
        for watcher in watchers { watcher.resume() }
    }

    /// Returns once at least `count` sleeps are waiting on the clock (so that time moved
    /// afterwards reaches them).
    public func sleepers(atLeast count: Int) async {
        await deadlines { $0.count >= count }
    }

    /// Returns once the sleeps' deadlines (soonest first, as `deadlines`) are as `ready`
    /// wants them: a test waits for the very sleep it expects, not for any.
    public func deadlines(where ready: @escaping @Sendable ([Duration]) -> Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                guard !ready(state.deadlines) else { return true }
                state.watchers.append((ready, continuation))
                return false
            }
            if now { continuation.resume() }
        }
    }
}
