public import XMPPCore

/// A room as stored: enough to bring it back after a restart.
public struct StoredRoom: Sendable, Hashable {
    public var jid: JID
    /// The configuration, JSON-encoded by the MUC service.
    public var configuration: String
    public var persistent: Bool
    public var subject: String
    public var subjectNick: String?
    public var subjectStamp: Double?
    public var affiliations: [StoredAffiliation]
    /// Oldest first.
    public var history: [StoredHistoryEntry]
    /// In join order.
    public var occupants: [StoredOccupant] = []
    /// Waiting for its first configuration.
    public var locked = false

    public init(
        jid: JID, configuration: String, persistent: Bool, subject: String = "", subjectNick: String? = nil,
        subjectStamp: Double? = nil, affiliations: [StoredAffiliation] = [], history: [StoredHistoryEntry] = []
    ) {
        self.jid = jid
        self.configuration = configuration
        self.persistent = persistent
        self.subject = subject
        self.subjectNick = subjectNick
        self.subjectStamp = subjectStamp
        self.affiliations = affiliations
        self.history = history
    }
}

public struct StoredAffiliation: Sendable, Hashable {
    public var jid: JID
    public var affiliation: String
    public var reason: String?
    /// A reserved nickname.
    public var nick: String?

    public init(jid: JID, affiliation: String, reason: String?, nick: String? = nil) {
        self.jid = jid
        self.affiliation = affiliation
        self.reason = reason
        self.nick = nick
    }
}

public struct StoredHistoryEntry: Sendable, Hashable {
    public var stanza: String
    public var stamp: Double
    public var nick: String
    /// The stanza-id the room gave the message: an entry stored twice under one id is
    /// kept once (a write retried after it had committed).
    public var id: String?

    public init(stanza: String, stamp: Double, nick: String, id: String? = nil) {
        self.stanza = stanza
        self.stamp = stamp
        self.nick = nick
        self.id = id
    }
}

/// An occupant as stored, so that another node can continue the room.
public struct StoredOccupant: Sendable, Hashable {
    public var realJID: JID
    public var nick: String
    public var role: String
    /// The occupant's last presence, serialized.
    public var presence: String
    /// The node holding the occupant's session.
    public var homeNode: String
    /// Join order.
    public var position: Int64

    public init(realJID: JID, nick: String, role: String, presence: String, homeNode: String, position: Int64) {
        self.realJID = realJID
        self.nick = nick
        self.role = role
        self.presence = presence
        self.homeNode = homeNode
        self.position = position
    }
}

/// Who may write a room: its owner node and the epoch it claimed the room with.
public struct RoomFence: Sendable, Hashable, CustomStringConvertible {
    public var node: String
    public var epoch: Int64
    public init(node: String, epoch: Int64) {
        self.node = node
        self.epoch = epoch
    }
    public var description: String { "\(node):\(epoch)" }
}

/// A room's row in `room_owners`.
public struct RoomOwnerRecord: Sendable, Hashable, CustomStringConvertible {
    /// `nil`: released.
    public var node: String?
    /// The incarnation of `node` that claimed it (`nil` in rows older than incarnations).
    public var incarnation: Int64?
    public var epoch: Int64
    /// `node`'s incarnation `incarnation` is alive and in the cluster: it may serve the room.
    public var live: Bool
    public init(node: String?, incarnation: Int64?, epoch: Int64, live: Bool) {
        self.node = node
        self.incarnation = incarnation
        self.epoch = epoch
        self.live = live
    }
    public var description: String {
        guard let node else { return "released (epoch \(epoch))" }
        return "\(node) incarnation \(incarnation.map(String.init) ?? "?") epoch \(epoch) (\(live ? "live" : "not live"))"
    }
}

/// A write refused because the room has a newer owner (or none): the writer is stale.
public struct StaleOwnerError: Error, Sendable, CustomStringConvertible {
    public var room: JID
    public var fence: RoomFence
    public init(room: JID, fence: RoomFence) {
        self.room = room
        self.fence = fence
    }
    public var description: String { "\(fence) no longer owns \(room)" }
}

/// The store refused something for good: the same request would be refused again (a
/// value too large for an index, a violated constraint, a malformed value). Retrying
/// cannot help, and must not hold up anything else; whatever else a store throws (the
/// database away, a timeout, a deadlock) may pass on a later try.
public struct PermanentStoreError: Error, Sendable, CustomStringConvertible {
    /// What the store said (for PostgreSQL: the SQLSTATE and message).
    public var detail: String
    public init(_ detail: String) {
        self.detail = detail
    }
    public var description: String { "refused for good: \(detail)" }
}

/// One durable change of a room, applied in the order the room made them.
public enum StoredRoomChange: Sendable, Hashable {
    /// Creates the room or replaces its configuration.
    case configuration(json: String, persistent: Bool, locked: Bool)
    /// Someone entered, or changed nick, role or presence.
    case occupant(StoredOccupant)
    case occupantLeft(JID)
    case subject(String, nick: String?, stamp: Double)
    /// `affiliation == "none"` removes the row.
    case affiliation(JID, affiliation: String, reason: String?, nick: String?)
    /// Appends to the history and keeps only the newest `keep` entries.
    case history(StoredHistoryEntry, keep: Int)
    case deleted
}

public protocol RoomStore: Sendable {
    /// One room with affiliations, history and occupants; `nil` if it does not exist.
    func loadRoom(_ room: JID) async throws -> StoredRoom?
    /// Takes ownership of `room` for the live `incarnation` of `node` if no other live
    /// incarnation holds it: returns the new epoch, or `nil` when one does (or when
    /// `incarnation` is not live itself).
    func claim(_ room: JID, node: String, incarnation: Int64) async throws -> Int64?
    /// The room's owner row: who holds it and whether that incarnation is live.
    func owner(of room: JID) async throws -> RoomOwnerRecord?
    /// The rooms `node`'s `incarnation` holds, with the epochs it holds them under.
    func heldRooms(node: String, incarnation: Int64) async throws -> [(room: JID, epoch: Int64)]
    /// Asks `holder` to release `room` if it does not serve it (a control-bus event).
    func askToRelease(_ room: JID, holder: String) async throws
    /// Gives up ownership (hand-over): the next owner may claim at once.
    func release(_ room: JID, fence: RoomFence) async throws
    /// Applies changes in one transaction if `fence` still owns the room; throws
    /// `StaleOwnerError` (and applies nothing) otherwise, and `PermanentStoreError`
    /// (applying nothing) when a change can never be stored.
    func apply(_ changes: [StoredRoomChange], to room: JID, fence: RoomFence) async throws
    /// Public, unlocked rooms and their names (disco#items on the service), ordered by
    /// JID: at most `limit` of them, those after the room JID `after` if given (XEP-0059
    /// paging), and how many public rooms there are in all.
    func publicRooms(after: String?, limit: Int) async throws -> (rooms: [(jid: JID, name: String)], count: Int)
    /// How many rooms `owner` (a bare JID) is an owner of, in the whole cluster: what
    /// `muc_limits.rooms_per_user` bounds when a join would create one more.
    func ownedRoomCount(_ owner: JID) async throws -> Int
}
