import NIOCore
public import XMPPCore
import Synchronization

/// Slows password guessing down on this node, per account and per client address.
///
/// Every authentication attempt is counted when it starts, and it waits before it is
/// processed — whatever its outcome will be — for a delay that grows with the recent
/// failures and the attempts still in flight of its account and of its address. A
/// guesser therefore cannot abandon slow attempts and keep the fast ones (the delay
/// comes before the answer, for right and wrong passwords alike), cannot run attempts
/// in parallel to escape it (attempts in flight count as failures until they end), and
/// an attempt abandoned halfway counts as a failure.
public final class AuthThrottle: Sendable {
    private struct Record {
        var failures = 0
        var inFlight = 0
        var windowStart: ContinuousClock.Instant
    }

    private struct State {
        var accounts: [JID: Record] = [:]
        var addresses: [String: Record] = [:]
    }

    /// One attempt in progress, handed back to `finish`.
    struct Attempt: Sendable {
        let account: JID?
        let address: String
    }

    private let state = Mutex(State())
    private let clock = ContinuousClock()

    public init() {}

    /// Starts an attempt for `account` (nil when the name is not a valid account) from
    /// `address`. Returns the attempt and the delay before it may be processed, or `nil`
    /// when the address already has too many attempts in flight.
    func begin(
        account: JID?,
        address: String,
        options: C2SConfiguration.Options
    ) -> (attempt: Attempt, delay: TimeAmount)? {
        let now = clock.now
        return state.withLock { state -> (Attempt, TimeAmount)? in
            var byAddress = Self.current(state.addresses[address], now: now, options: options)
            guard byAddress.inFlight < options.maxParallelAuthPerAddress else { return nil }
            byAddress.inFlight += 1
            state.addresses[address] = byAddress
            let addressExcess =
                byAddress.failures + byAddress.inFlight - options.authFailuresBeforeDelayPerAddress
            var accountExcess = 0
            if let account {
                var byAccount = Self.current(state.accounts[account], now: now, options: options)
                byAccount.inFlight += 1
                state.accounts[account] = byAccount
                accountExcess = byAccount.failures + byAccount.inFlight - options.authFailuresBeforeDelay
            }
            Self.prune(&state, now: now, options: options)
            let excess = max(addressExcess, accountExcess)
            guard excess > 0 else { return (Attempt(account: account, address: address), .zero) }
            let delay = min(options.authFailureDelayStep.nanoseconds * Int64(excess), options.authFailureMaxDelay.nanoseconds)
            return (Attempt(account: account, address: address), .nanoseconds(delay))
        }
    }

    /// Ends an attempt. A success clears its account's failures (not its address's: a
    /// guesser with one valid account of its own must not clear its address's record).
    func finish(_ attempt: Attempt, succeeded: Bool, options: C2SConfiguration.Options) {
        let now = clock.now
        state.withLock { state in
            if var record = state.addresses[attempt.address] {
                record.inFlight = max(0, record.inFlight - 1)
                if !succeeded { record.failures += 1 }
                state.addresses[attempt.address] = record
            }
            if let account = attempt.account, var record = state.accounts[account] {
                record.inFlight = max(0, record.inFlight - 1)
                if succeeded {
                    record.failures = 0
                } else {
                    if now - record.windowStart > options.authFailureWindow {
                        record = Record(failures: 0, inFlight: record.inFlight, windowStart: now)
                    }
                    record.failures += 1
                }
                state.accounts[account] = record
            }
        }
    }

    /// Ends an attempt that had no outcome (the account store did not answer): it no
    /// longer counts as in flight, and not as a failure either.
    func cancel(_ attempt: Attempt) {
        state.withLock { state in
            state.addresses[attempt.address]?.inFlight -= 1
            if let account = attempt.account { state.accounts[account]?.inFlight -= 1 }
        }
    }

    private static func current(
        _ record: Record?,
        now: ContinuousClock.Instant,
        options: C2SConfiguration.Options
    ) -> Record {
        guard var record else { return Record(windowStart: now) }
        if now - record.windowStart > options.authFailureWindow {
            record.failures = 0
            record.windowStart = now
        }
        return record
    }

    /// Keeps the tables bounded: old records with nothing in flight go.
    private static func prune(_ state: inout State, now: ContinuousClock.Instant, options: C2SConfiguration.Options) {
        let limit = 100_000
        func keep(_ record: Record) -> Bool {
            record.inFlight > 0 || now - record.windowStart <= options.authFailureWindow
        }
        if state.accounts.count > limit { state.accounts = state.accounts.filter { keep($0.value) } }
        if state.addresses.count > limit { state.addresses = state.addresses.filter { keep($0.value) } }
    }

    /// Recent failures of `account` within the window (for tests and metrics).
    public func failures(of account: JID) -> Int {
        state.withLock { $0.accounts[account]?.failures ?? 0 }
    }

    /// Recent failures from `address` within the window.
    public func failures(from address: String) -> Int {
        state.withLock { $0.addresses[address]?.failures ?? 0 }
    }
}
