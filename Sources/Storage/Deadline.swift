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
        let work = Task {
            do {
                let value = try await body()
                if once.claim() { continuation.resume(returning: value) }
            } catch {
                if once.claim() { continuation.resume(throwing: error) }
            }
        }
        Task {
            try? await Task.sleep(for: .seconds(seconds))
            if once.claim() {
                work.cancel()
                continuation.resume(throwing: StoreTimeout(seconds: seconds))
            }
        }
    }
}
