/// Time as a node's services see it: how long since the clock started (monotonic), and
/// sleeping for a while. `ContinuousClock` in the product; a `ManualClock` in tests, so
/// that timeouts and backoffs are driven by the test instead of waited for.
public struct ServiceClock: Sendable {
    /// Time since the clock started.
    public let now: @Sendable () -> Duration
    /// Returns after `duration` of this clock (throws when the task is cancelled).
    public let sleep: @Sendable (Duration) async throws -> Void

    public init(now: @escaping @Sendable () -> Duration, sleep: @escaping @Sendable (Duration) async throws -> Void) {
        self.now = now
        self.sleep = sleep
    }

    /// Real time, since the process first asked for it: one start for every component, so
    /// that their times may be compared.
    public static let continuous: ServiceClock = {
        let clock = ContinuousClock()
        let start = clock.now
        return ServiceClock(now: { start.duration(to: clock.now) }, sleep: { try await clock.sleep(for: $0) })
    }()

    /// The time of `clock`, which the test moves.
    public static func manual(_ clock: ManualClock) -> ServiceClock {
        ServiceClock(now: { clock.now.offset }, sleep: { try await clock.sleep(for: $0) })
    }
}
