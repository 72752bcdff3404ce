import Synchronization

/// Room input a node took from one sending link (a peer's run and the run of this node it
/// addressed) and whose rooms have not handled it yet. Shared by that link's connections:
/// a reconnect must not acknowledge, in its `<ok last>`, input a room still holds.
struct HeldRoomInput {
    /// Sequence numbers handed to rooms, in arrival order, from `head` on.
    private var order: [UInt64] = []
    private var head = 0
    /// Handed to rooms and handled since, not yet past `head`.
    private var done: Set<UInt64> = []

    mutating func hold(_ seq: UInt64) { order.append(seq) }

    mutating func release(_ seq: UInt64) {
        done.insert(seq)
        while head < order.count, done.remove(order[head]) != nil { head += 1 }
        if head == order.count {
            order.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 {
            order.removeFirst(head)
            head = 0
        }
    }

    /// Given the last frame taken (`handled`): every frame up to `upTo` is handled; beyond
    /// it, every frame up to `handled` except `pending` (`nil` when more than `limit` are
    /// pending: only `upTo` can then be said).
    func acknowledgement(handled: UInt64, limit: Int = 256) -> (upTo: UInt64, pending: [UInt64]?) {
        guard head < order.count else { return (handled, []) }
        let upTo = order[head] - 1
        var pending: [UInt64] = []
        for seq in order[head...] where !done.contains(seq) {
            if pending.count == limit { return (upTo, nil) }
            pending.append(seq)
        }
        return (upTo, pending)
    }
}

/// `HeldRoomInput` per sending link, with the connection currently serving each one (told
/// when a room handles input, to acknowledge it).
final class HeldRoomInputs: Sendable {
    private struct Entry {
        var held = HeldRoomInput()
        var connection: UInt64 = 0
        var notify: (@Sendable () -> Void)?
    }
    private let entries = Mutex<[String: Entry]>([:])
    private static let connections = Atomic<UInt64>(0)

    /// An id for a new connection.
    static func nextConnectionID() -> UInt64 { connections.add(1, ordering: .relaxed).newValue }

    /// The peer runs anew (its frames are numbered from 1 again): what the link held is moot.
    func reset(key: String) { entries.withLock { $0[key] = nil } }

    func hold(_ seq: UInt64, key: String) {
        entries.withLock { $0[key, default: Entry()].held.hold(seq) }
    }

    func release(_ seq: UInt64, key: String) {
        let notify = entries.withLock { entries -> (@Sendable () -> Void)? in
            guard entries[key] != nil else { return nil }
            entries[key]!.held.release(seq)
            return entries[key]!.notify
        }
        notify?()
    }

    func acknowledgement(key: String, handled: UInt64) -> (upTo: UInt64, pending: [UInt64]?) {
        entries.withLock { $0[key]?.held.acknowledgement(handled: handled) ?? (handled, []) }
    }

    /// `connection` (an id) serves `key` from now on: it is the one told of releases.
    func attach(key: String, connection: UInt64, notify: @escaping @Sendable () -> Void) {
        entries.withLock { entries in
            entries[key, default: Entry()].connection = connection
            entries[key]!.notify = notify
        }
    }

    func detach(key: String, connection: UInt64) {
        entries.withLock { entries in
            guard entries[key]?.connection == connection else { return }
            entries[key]!.notify = nil
        }
    }

    /// This node runs as a new incarnation: what links to the old one held is moot.
    func removeAll() { entries.withLock { $0 = [:] } }
}
