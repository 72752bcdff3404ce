import XMPPCore

/// A room's output that waits, per node it goes to, so that the sender of an input hears
/// the room handled it only once every other node with recipients has the answer.
///
/// Without it an owner could echo a message to its sender (on the sender's node) and die,
/// or be paused past its lease, before the copies for the other nodes left: the sender
/// saw its message accepted, occupants elsewhere never got it, and the sender's node, if
/// it was not the owner, dropped the input it would otherwise have routed to the room's
/// next owner (it had been answered). So the copies for the sender's node wait until the
/// other nodes' links acknowledged theirs; later output for that node queues behind them,
/// so that every node still receives the room's output in the room's order.
struct HeldRoomOutput {
    struct Entry {
        var item: RoomOutgoing
        var node: String? { item.node }
        /// Kept alive until the copies are delivered (a receipt, a ticket).
        var keep: (any AnyObject & Sendable)?
        /// The ticket that must be opened first; `nil`: waits only for what is before it.
        var waitsFor: UInt64?
    }

    /// Per node (`""` for output routed by address): what waits, in the room's order.
    private var queues: [String: [Entry]] = [:]
    private var opened: Set<UInt64> = []
    private var lastTicket: UInt64 = 0

    var isEmpty: Bool { queues.isEmpty }

    func isHolding(_ node: String?) -> Bool { queues[node ?? ""] != nil }

    mutating func newTicket() -> UInt64 {
        lastTicket += 1
        return lastTicket
    }

    mutating func append(_ entry: Entry) {
        queues[entry.node ?? "", default: []].append(entry)
    }

    /// `ticket` is open (what it kept alive was acknowledged): the entries that may go
    /// now, in order per node.
    mutating func open(_ ticket: UInt64) -> [Entry] {
        opened.insert(ticket)
        var ready: [Entry] = []
        for (node, queue) in queues {
            let count = queue.prefix { entry in entry.waitsFor.map { opened.contains($0) } ?? true }.count
            guard count > 0 else { continue }
            ready += queue[..<count]
            queues[node] = count == queue.count ? nil : Array(queue[count...])
        }
        // A ticket no entry waits for any more is forgotten.
        let waited = Set(queues.values.joined().compactMap(\.waitsFor))
        opened.formIntersection(waited)
        return ready
    }

    /// The room ended (destroyed, emptied): it answers nothing more, and what it held
    /// goes now, in order per node, rather than after the input that follows (a query
    /// to the room's address, which the service then answers at once).
    mutating func takeAll() -> [Entry] {
        let all = queues.values.flatMap { $0 }
        queues = [:]
        opened = []
        return all
    }

    /// The node lost its lease: nothing held may go out any more.
    mutating func discard() {
        queues = [:]
        opened = []
    }
}

/// Kept alive by the links that carry an answer's copies to the nodes other than its
/// sender's; when the last lets it go (each acknowledged its copy), the copies for the
/// sender's node may leave.
final class HeldOutputTicket: Sendable {
    let id: UInt64
    /// The receipt of the input answered, kept until the whole answer has left.
    private let receipt: (any AnyObject & Sendable)?
    private let opened: @Sendable (UInt64) -> Void

    init(id: UInt64, receipt: (any AnyObject & Sendable)?, opened: @escaping @Sendable (UInt64) -> Void) {
        self.id = id
        self.receipt = receipt
        self.opened = opened
    }

    deinit { opened(id) }
}
