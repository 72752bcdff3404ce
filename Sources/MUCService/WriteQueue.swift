import Synchronization

/// An unbounded FIFO handed to one consumer in batches: `take` returns everything
/// queued so far, or waits for the next item.
final class WriteQueue<Item: Sendable>: Sendable {
    private struct State {
        var items: [Item] = []
        var waiter: CheckedContinuation<[Item]?, Never>?
        var finished = false
    }

    private let state = Mutex(State())

    func push(_ item: Item) {
        let waiter = state.withLock { state -> CheckedContinuation<[Item]?, Never>? in
            guard !state.finished else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.items.append(item)
            return nil
        }
        waiter?.resume(returning: [item])
    }

    /// Everything queued, in order; `nil` once finished and drained.
    func take() async -> [Item]? {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> [Item]?? in
                if !state.items.isEmpty {
                    defer { state.items = [] }
                    return .some(state.items)
                }
                if state.finished { return .some(nil) }
                state.waiter = continuation
                return .none
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<[Item]?, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.items.isEmpty ? state.waiter : nil
        }
        waiter?.resume(returning: nil)
    }
}

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
struct StoreTimeout: Error, CustomStringConvertible {
    var seconds: Double
    var description: String { "no answer from the store within \(seconds) s" }
}

/// Runs `body`, but gives up waiting after `seconds` (the body keeps running detached:
/// a query stuck on a connection that PostgreSQL dropped must not stop the writer).
func withDeadline<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
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
