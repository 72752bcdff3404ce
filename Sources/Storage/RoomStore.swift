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

    public init(stanza: String, stamp: Double, nick: String) {
        self.stanza = stanza
        self.stamp = stamp
        self.nick = nick
    }
}

/// One durable change of a room, applied in the order the room made them.
public enum StoredRoomChange: Sendable, Hashable {
    /// Creates the room or replaces its configuration.
    case configuration(json: String, persistent: Bool)
    case subject(String, nick: String?, stamp: Double)
    /// `affiliation == "none"` removes the row.
    case affiliation(JID, affiliation: String, reason: String?, nick: String?)
    /// Appends to the history and keeps only the newest `keep` entries.
    case history(StoredHistoryEntry, keep: Int)
    case deleted
}

public protocol RoomStore: Sendable {
    /// Every persistent room, with affiliations and history; temporary leftovers are removed.
    func loadRooms() async throws -> [StoredRoom]
    func apply(_ change: StoredRoomChange, to room: JID) async throws
}
