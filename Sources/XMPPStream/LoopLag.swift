import NIOCore
import Synchronization

/// How late an event loop runs what it is given: a probe every 20 ms (on the loop's own
/// clock) notes how late it ran. While the last probe was more than 50 ms late the loop
/// is *lagging*: it is given more than it can do, and client connections that read a lot
/// yield to the others (`C2SConnection`), so that a session that sends little — a user
/// typing, a client logging in — is served at once while floods wait in their senders.
final class LoopLag: @unchecked Sendable {
    /// The probe's period.
    static let period: TimeAmount = .milliseconds(20)
    /// How late a probe must run for the loop to count as lagging: more than the hiccups of
    /// a machine whose cores are shared (a thread descheduled for a few ms).
    static let lagging: TimeAmount = .milliseconds(50)
    /// Connections that yielded and go on reading at each probe that runs on time.
    static let resumedPerProbe = 4

    /// Each loop's detector, with the loop itself: kept, its identity cannot be taken by
    /// another loop later (a test's loops come and go).
    private static let registry = Mutex<[ObjectIdentifier: (loop: any EventLoop, lag: LoopLag)]>([:])

    /// The loop's detector, started on first use (one per loop, for the process's life).
    static func of(_ loop: any EventLoop) -> LoopLag {
        let (lag, isNew) = registry.withLock { registry -> (LoopLag, Bool) in
            if let known = registry[ObjectIdentifier(loop)] { return (known.lag, false) }
            let lag = LoopLag()
            registry[ObjectIdentifier(loop)] = (loop, lag)
            return (lag, true)
        }
        if isNew { lag.start(on: loop) }
        return lag
    }

    /// Read and written on the loop only (set by its probe, read by its connections);
    /// atomics so that a test or a metric may look from elsewhere.
    private let lateness = Atomic<Int64>(0)
    /// What waits for the loop to catch up (touched on the loop only).
    private var waiters: [() -> Bool] = []

    /// Runs `body` (on the loop) at a probe that runs on time. `body` says whether it
    /// resumed a connection (`false`: nothing was waiting any more: it does not count
    /// among the few resumed per probe). Call on the loop.
    func whenCaughtUp(_ body: @escaping () -> Bool) { waiters.append(body) }

    /// Whether the last probe ran more than `lagging` late.
    var isLagging: Bool { lateness.load(ordering: .relaxed) > LoopLag.lagging.nanoseconds }

    private func start(on loop: any EventLoop) {
        loop.execute { [self] in
            var expected = loop.now + LoopLag.period
            loop.scheduleRepeatedTask(initialDelay: LoopLag.period, delay: LoopLag.period) { [self] _ in
                let now = loop.now
                let late = max(0, (now - expected).nanoseconds)
                lateness.store(late, ordering: .relaxed)
                expected = now + LoopLag.period
                if late <= LoopLag.lagging.nanoseconds, !waiters.isEmpty {
                    // A few at a time, one probe apart: all at once, they would make the
                    // next turn as long as the one they yielded from.
                    var resumed = 0
                    var taken = 0
                    while taken < waiters.count, resumed < LoopLag.resumedPerProbe {
                        if waiters[taken]() { resumed += 1 }
                        taken += 1
                    }
                    waiters.removeFirst(taken)
                }
            }
        }
    }
}
