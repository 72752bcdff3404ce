import Synchronization

/// Wakes the tests waiting for a condition whenever something it depends on changed: a
/// test waits for what it expects, bounded by a limit only so that a failing test ends.
final class Signal: Sendable {
    private let waiters = Mutex<[Int: AsyncStream<Void>.Continuation]>([:])
    private let nextID = Atomic<Int>(0)

    init() {}

    /// Something changed: every waiter checks its condition again.
    func notify() {
        for continuation in waiters.withLock({ Array($0.values) }) { continuation.yield() }
    }

    /// Waits until `condition` holds (checked now and after each `notify`); `false` if it
    /// still does not after `limit`.
    func wait(within limit: Duration = .seconds(15), until condition: @escaping @Sendable () -> Bool) async -> Bool {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let id = nextID.add(1, ordering: .relaxed).newValue
        waiters.withLock { $0[id] = continuation }
        defer { waiters.withLock { $0[id] = nil } }
        if condition() { return true }
        let timer = Task {
            try? await Task.sleep(for: limit)
            continuation.finish()
        }
        defer { timer.cancel() }
        for await _ in stream where condition() { return true }
        return condition()
    }
}
