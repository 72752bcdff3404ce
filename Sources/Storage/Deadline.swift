public import XMPPCore
import Synchronization

/// True exactly once.
final class Once: Sendable {
    private let done = Mutex(false)
    func claim() -> Bool {
        done.withLock { done in
            defer { done = true }
            return !done
        }
    }
}

/// The store did not answer in time.
public struct StoreTimeout: Error, CustomStringConvertible {
    public var seconds: Double
    public var description: String { "no answer from the store within \(seconds) s" }
}

/// Runs `body`, but gives up waiting after `seconds` of `clock` (the body is cancelled
/// and keeps running detached until it notices: a query stuck on a connection that
/// PostgreSQL dropped must not stop its caller — the rooms' writer, the churn harness's
/// SQL).
public func withDeadline<T: Sendable>(
    _ seconds: Double, clock: ServiceClock = .continuous, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let once = Once()
    return try await withCheckedThrowingContinuation { continuation in
        let timer = DeadlineTimer()
        let work = Task {
            let result: Result<T, any Error>
            do {
                result = .success(try await body())
            } catch {
                result = .failure(error)
            }
            guard once.claim() else { return }
            // The timer goes before the caller goes on: nothing of this call is left waiting.
            timer.answered()
            continuation.resume(with: result)
        }
        let deadline = Task {
            guard (try? await clock.sleep(.seconds(seconds))) != nil else { return }
            if once.claim() {
                work.cancel()
                continuation.resume(throwing: StoreTimeout(seconds: seconds))
            }
        }
        timer.started(deadline)
    }
}

/// The timer of one `withDeadline`: cancelled once the body has answered, so that no task
/// sleeps on for a deadline that no longer matters.
private final class DeadlineTimer: Sendable {
    private let state = Mutex<(task: Task<Void, Never>?, answered: Bool)>((nil, false))

    func started(_ task: Task<Void, Never>) {
        let cancel = state.withLock { state -> Bool in
            if state.answered { return true }
            state.task = task
            return false
        }
        if cancel { task.cancel() }
    }

    func answered() {
        state.withLock { state in
            state.answered = true
            return state.task.take()
        }?.cancel()
    }
}
