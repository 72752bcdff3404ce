public import Logging
public import XMPPCore
import Synchronization

/// The ring barrier: after the ring changed, a node waits until every peer it can reach
/// has the same ring before it serves rooms by it, so that no two nodes serve one room
/// by different rings. It sends each peer a `barrier` frame naming its ring; a peer that
/// has that ring answers at once, one that has not yet answers when it gets there (or
/// after the timeout, for rings that never meet: a node died meanwhile). A barrier that
/// is not answered by every peer within the timeout passes anyway.
public final class RingBarrier: Sendable {
    private struct State {
        var next: UInt64 = 1
        /// Barrier id → peers that have not answered yet.
        var waiting: [UInt64: Set<String>] = [:]
        var continuations: [UInt64: CheckedContinuation<Void, Never>] = [:]
        /// Barriers others sent for a ring this node has not reached yet.
        var owed: [(node: String, id: UInt64, ring: String)] = []
    }

    private let state = Mutex(State())
    private let timeout: Duration
    private let clock: ServiceClock
    private let logger: Logger
    private let currentRing: @Sendable () -> String
    private let send: @Sendable (LinkFrame, String) -> Void

    /// `currentRing`: this node's ring now (its nodes, joined); `send`: a frame to a peer.
    public init(
        timeout: Duration = .seconds(2), clock: ServiceClock = .continuous, logger: Logger,
        currentRing: @escaping @Sendable () -> String, send: @escaping @Sendable (LinkFrame, String) -> Void
    ) {
        self.timeout = timeout
        self.clock = clock
        self.logger = logger
        self.currentRing = currentRing
        self.send = send
    }

    /// Returns once every one of `peers` has this node's current ring (or the timeout passed).
    public func pass(peers: Set<String>) async {
        guard !peers.isEmpty else { return }
        let ring = currentRing()
        let id = state.withLock { state -> UInt64 in
            defer { state.next += 1 }
            state.waiting[state.next] = peers
            return state.next
        }
        let started = clock.now()
        await withCheckedContinuation { continuation in
            state.withLock { $0.continuations[id] = continuation }
            for peer in peers.sorted() { send(.barrier(id: id, ring: ring), peer) }
            Task {
                try? await clock.sleep(timeout)
                self.finish(id, timedOut: true)
            }
        }
        logger.debug("ring barrier passed", metadata: ["took": "\(clock.now() - started)"])
    }

    /// `node` answered barrier `id`.
    public func acknowledged(_ id: UInt64, from node: String) {
        let done = state.withLock { state -> Bool in
            state.waiting[id]?.remove(node)
            return state.waiting[id]?.isEmpty == true
        }
        if done { finish(id, timedOut: false) }
    }

    private func finish(_ id: UInt64, timedOut: Bool) {
        let (continuation, missing) = state.withLock { state in
            (state.continuations.removeValue(forKey: id), state.waiting.removeValue(forKey: id))
        }
        guard let continuation else { return }
        if timedOut, let missing, !missing.isEmpty {
            logger.warning("ring barrier timed out", metadata: ["waiting_for": "\(missing.sorted())"])
        }
        continuation.resume()
    }

    /// `node` sent barrier `id` for `ring`: answered now if this node has that ring, else
    /// once it has (`settle`) or after the timeout.
    public func received(_ id: UInt64, ring: String, from node: String) {
        if ring == currentRing() { return send(.barrierAck(id: id), node) }
        state.withLock { $0.owed.append((node, id, ring)) }
        Task {
            try? await clock.sleep(timeout)
            self.settle(force: (node, id))
        }
    }

    /// This node's ring changed: answers the barriers that waited for it.
    public func settle() { settle(force: nil) }

    private func settle(force: (node: String, id: UInt64)?) {
        let current = currentRing()
        let due = state.withLock { state -> [(node: String, id: UInt64, ring: String)] in
            func isDue(_ entry: (node: String, id: UInt64, ring: String)) -> Bool {
                entry.ring == current || (entry.node == force?.node && entry.id == force?.id)
            }
            let due = state.owed.filter(isDue)
            state.owed.removeAll(where: isDue)
            return due
        }
        for entry in due { send(.barrierAck(id: entry.id), entry.node) }
    }
}
