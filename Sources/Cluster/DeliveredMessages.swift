public import Synchronization
public import XMPPCore

/// The groupchat messages (room, id, recipient) rooms on other nodes delivered to this
/// node's sessions lately. A room's owner that handled a sender's message, and sent it
/// back, but died or paused before acknowledging the input frame, gets the frame again
/// from here after the failover — to the next owner, which would broadcast it a second
/// time. The sender's own copy arrived here already: such input is dropped instead.
/// Bounded (the newest 8,192 copies); consulted only when input is routed again.
public final class DeliveredMessages: Sendable {
    private struct Key: Hashable {
        var room: String
        var id: String
        var recipient: JID
    }
    private struct State {
        var keys: Set<Key> = []
        var order: [Key] = []
        var next = 0
    }
    private static let capacity = 8192
    private let state = Mutex(State())
    /// Input routed again that was dropped for this reason (a metric).
    public let dropped = Atomic<Int>(0)

    public init() {}

    /// What of `copies` this node delivers: all of them, noted as delivered when they
    /// came from another node's room (a groupchat message's: that room's node may die);
    /// of a replay only the recipients it did not deliver the message to before (`nil`:
    /// none).
    public func toDeliver(_ copies: StanzaCopies, noting: Bool = true) -> StanzaCopies? {
        guard let message = copies.message, noting || copies.replay else { return copies }
        var copies = copies
        state.withLock { state in
            if copies.replay {
                copies.recipients.removeAll { state.keys.contains(Key(room: message.room, id: message.id, recipient: $0)) }
            }
            for recipient in copies.recipients {
                let key = Key(room: message.room, id: message.id, recipient: recipient)
                guard state.keys.insert(key).inserted else { continue }
                if state.order.count < Self.capacity {
                    state.order.append(key)
                } else {
                    state.keys.remove(state.order[state.next])
                    state.order[state.next] = key
                    state.next = (state.next + 1) % Self.capacity
                }
            }
        }
        return copies.recipients.isEmpty ? nil : copies
    }

    /// The room sent `stanza` (input from `sender`) back to its sender already.
    public func reached(_ stanza: XMLElement, sender: JID) -> Bool {
        guard stanza.name == "message", stanza.type == "groupchat", let id = stanza.id, !id.isEmpty,
            let to = stanza[attribute: "to"]
        else { return false }
        guard let room = (try? JID(to))?.bare.description else { return false }
        let seen = state.withLock { $0.keys.contains(Key(room: room, id: id, recipient: sender)) }
        if seen { dropped.add(1, ordering: .relaxed) }
        return seen
    }
}
