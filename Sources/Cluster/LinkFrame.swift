public import XMPPCore

/// What travels on a node link.
public enum LinkFrame: Sendable, Hashable {
    /// A stanza for a room, to its owner: sent by the session `real` held by `home`.
    /// `hops` counts forwards between nodes (a hand-over, or ring views that differ
    /// for a moment).
    case room(XMLElement, real: JID, home: String, hops: Int)
    /// The end of the session `real` (held by `home`) for `room`'s owner: it removes the
    /// occupant and answers `sessionLeft(token)` to `home`.
    case sessionEnded(room: JID, real: JID, home: String, hops: Int, token: UInt64)
    /// A room handled the end of a session the receiving node holds.
    case sessionLeft(token: UInt64)
    /// `real`, a session the receiving node holds, entered `room` or left it.
    case membership(room: JID, real: JID, entered: Bool)
    /// Room output for sessions on the receiving node: one copy per recipient, each
    /// with its own `to`. The stanza travels as the bytes the room's node serialized
    /// (not XML the receiving node parses), and is written to the sessions as
    /// they are.
    case deliver(StanzaCopies)
    /// A stanza for a user whose session(s) the receiving node holds (full or bare `to`).
    case user(XMLElement)
    /// Room output for a user who is not an occupant (an invitation, an answer to an owner
    /// outside the room), full or bare `to`: every node gets it, in the room's order with
    /// the room's other output, and delivers it to its own sessions of that user only
    /// (none keeps it offline: the room's node decides that).
    case addressed(XMLElement)
    /// "Answer once your ring is `ring`": a node about to hand rooms over learns that
    /// everything the receiver sent it under the old ring has arrived.
    case barrier(id: UInt64, ring: String)
    case barrierAck(id: UInt64)

    /// The frame's kind, for logs.
    var kind: String {
        switch self {
        case .room: "room"
        case .sessionEnded: "session-ended"
        case .sessionLeft: "session-left"
        case .membership: "membership"
        case .deliver: "deliver"
        case .user: "user"
        case .addressed: "addressed"
        case .barrier: "barrier"
        case .barrierAck: "barrier-ack"
        }
    }
}
