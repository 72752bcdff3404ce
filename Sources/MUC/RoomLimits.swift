public import XMPPCore

/// Bounds on what a room accepts, so that everything it accepts can be stored and kept.
///
/// PostgreSQL refuses an index entry above about 2,700 bytes, and the room tables are
/// keyed by (room JID, member JID): a value the room accepted but the store refuses
/// would have to be thrown away after everyone was told about it. So a room checks
/// sizes before it changes anything, and answers the sender with an error. Every limit
/// is a configuration key (`muc_limits.*`, docs/configuration.md); the byte counts are
/// of the UTF-8 text.
public struct RoomLimits: Sendable, Hashable {
    /// Bytes of a new room's name (the localpart of its JID); longer: the creating join
    /// is refused with `not-acceptable`. Rooms that already exist are not affected.
    /// `muc_limits.room_name_bytes`.
    public var roomNameBytes = 256
    /// Bytes of a JID the room stores: an affiliation's JID, an occupant's real JID.
    /// Longer: `not-acceptable`. `muc_limits.jid_bytes`.
    public var jidBytes = 1024
    /// Bytes of a nickname (joining, changing nick, registering one). Longer:
    /// `not-acceptable`. `muc_limits.nick_bytes`.
    public var nickBytes = 256
    /// Bytes of a `<reason/>` in an affiliation or role change (stored with the
    /// affiliation, shown to occupants). Longer: `not-acceptable`. `muc_limits.reason_bytes`.
    public var reasonBytes = 1024
    /// Affiliations (owners, admins, members, outcasts) one room keeps. A change that
    /// would add one more: `resource-constraint`. `muc_limits.affiliations`.
    public var affiliations = 10_000
    /// Bytes of a room's subject. Longer: `not-acceptable`. `muc_limits.subject_bytes`.
    public var subjectBytes = 4096
    /// Bytes of each text field of the room configuration (name, description,
    /// language, password). Longer: `not-acceptable`. `muc_limits.configuration_field_bytes`.
    public var configurationFieldBytes = 2048
    /// Presence updates (status or show, nick changes; not joins or leaves) one occupant
    /// may send a second, each broadcast to everyone in the room. Beyond it (after a burst
    /// of `presenceUpdateBurst`): `policy-violation` (wait), nothing broadcast.
    /// `muc_limits.presence_updates_per_second`.
    public var presenceUpdatesPerSecond = 10
    /// Presence updates an occupant may send at once before the rate applies.
    /// `muc_limits.presence_update_burst`.
    public var presenceUpdateBurst = 20
    /// Bytes of the history a room keeps (the bytes of each message's names, attributes and text), besides its
    /// count (`muc#roomconfig_historylength`): the oldest messages are dropped first.
    /// `muc_limits.history_bytes`.
    public var historyBytes = 1 << 20
    /// Rooms one user may own, counted by the service (in PostgreSQL) when a join would
    /// create one; service administrators are not counted. Beyond it: `policy-violation`.
    /// 0: no limit. `muc_limits.rooms_per_user`.
    public var roomsPerUser = 100
    /// Items the service's disco#items (its list of rooms) answers at most at once; a
    /// client pages through the rest with XEP-0059. `muc_limits.disco_items_max`.
    public var discoItemsMax = 500

    /// The most bytes the two text columns of one index entry (room JID and member or
    /// real JID) may have together, whatever is configured: PostgreSQL's B-tree limit
    /// (2,704 bytes with an 8 KiB page) less the entry's own overhead and a margin.
    public static let storableKeyBytes = 2600

    public init() {}

    /// Why a join may not create `room`, or `nil`.
    public func refusal(creating room: JID) -> StanzaError? {
        let bytes = room.localpart?.utf8.count ?? 0
        guard bytes <= roomNameBytes else {
            return StanzaError(.notAcceptable, text: "the room name is longer than \(roomNameBytes) bytes")
        }
        return nil
    }

    /// Why `room` may not store `jid` (an affiliation, an occupant's real JID), or `nil`.
    public func refusal(storing jid: JID, in room: JID) -> StanzaError? {
        let bytes = jid.description.utf8.count
        guard bytes <= jidBytes, bytes + room.description.utf8.count <= Self.storableKeyBytes else {
            return StanzaError(.notAcceptable, text: "the address is too long for this room")
        }
        return nil
    }

    /// Why `nick` is too long, or `nil`.
    public func refusal(nick: String) -> StanzaError? {
        guard nick.utf8.count <= nickBytes else {
            return StanzaError(.notAcceptable, text: "the nickname is longer than \(nickBytes) bytes")
        }
        return nil
    }

    /// Why `reason` is too long, or `nil`.
    public func refusal(reason: String?) -> StanzaError? {
        guard let reason, reason.utf8.count > reasonBytes else { return nil }
        return StanzaError(.notAcceptable, text: "the reason is longer than \(reasonBytes) bytes")
    }

    /// Why `subject` is too long, or `nil`.
    public func refusal(subject: String) -> StanzaError? {
        guard subject.utf8.count <= subjectBytes else {
            return StanzaError(.notAcceptable, text: "the subject is longer than \(subjectBytes) bytes")
        }
        return nil
    }

    /// Why the configuration text field `field` may not hold `value`, or `nil`.
    public func refusal(configurationField field: String, value: String) -> StanzaError? {
        guard value.utf8.count <= configurationFieldBytes else {
            return StanzaError(.notAcceptable, text: "\(field) is longer than \(configurationFieldBytes) bytes")
        }
        return nil
    }
}
