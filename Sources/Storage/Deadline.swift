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

/// Runs `body`, but gives up waiting after `seconds` (the body keeps running detached:
/// a query stuck on a connection that PostgreSQL dropped must not stop its caller — the
/// rooms' writer, the churn harness's SQL).
public func withDeadline<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let once = Once()
    return try await withCheckedThrowingContinuation { continuation in
        let timer = DeadlineTimer()
        let work = Task {
            do {
                let value = try await body()
                if once.claim() { continuation.resume(returning: value) }
            } catch {
                if once.claim() { continuation.resume(throwing: error) }
            }
            // Answered: the deadline's timer has nothing left to do.
            timer.answered()
        }
        let deadline = Task {
            guard (try? await Task.sleep(for: .seconds(seconds))) != nil else { return }
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
