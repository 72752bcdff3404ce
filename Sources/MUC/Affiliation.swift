/// `MUC` is XEP-0045 as pure state machines: a `Room` takes a stanza and returns its
/// new state and the effects (stanzas to send, changes to store). No I/O, no clock
/// but the one in `RoomEnvironment`.

/// A long-lived relation of a bare JID to a room (XEP-0045 §5.2).
public enum Affiliation: String, Sendable, Hashable, CaseIterable, Codable {
    case owner, admin, member, none, outcast

    /// Higher is more privileged; outcast lowest.
    public var rank: Int {
        switch self {
        case .owner: 4
        case .admin: 3
        case .member: 2
        case .none: 1
        case .outcast: 0
        }
    }
}

/// A session-long relation of an occupant to a room (XEP-0045 §5.1).
public enum Role: String, Sendable, Hashable, CaseIterable, Codable {
    case moderator, participant, visitor, none

    public var rank: Int {
        switch self {
        case .moderator: 3
        case .participant: 2
        case .visitor: 1
        case .none: 0
        }
    }
}
