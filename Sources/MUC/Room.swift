public import XMPPCore

/// What a room needs from outside: the time, identifiers, and who the service
/// administrators are.
public struct RoomEnvironment: Sendable {
    /// Seconds since 1970 (UTC).
    public var now: @Sendable () -> Double
    /// A fresh unique identifier (stanza-id).
    public var makeID: @Sendable () -> String
    /// The stable XEP-0421 occupant id of a real bare JID in a room.
    public var occupantID: @Sendable (_ room: JID, _ realBare: JID) -> String
    /// Service administrators have owner rights in every room.
    public var isServiceAdmin: @Sendable (JID) -> Bool
    /// What a room accepts (sizes, counts): nothing it accepts may be refused by the store.
    public var limits: RoomLimits

    public init(
        now: @escaping @Sendable () -> Double,
        makeID: @escaping @Sendable () -> String,
        occupantID: @escaping @Sendable (_ room: JID, _ realBare: JID) -> String,
        isServiceAdmin: @escaping @Sendable (JID) -> Bool = { _ in false },
        limits: RoomLimits = RoomLimits()
    ) {
        self.now = now
        self.makeID = makeID
        self.occupantID = occupantID
        self.isServiceAdmin = isServiceAdmin
        self.limits = limits
    }
}

/// Someone in the room.
public struct Occupant: Sendable, Hashable {
    public var nick: String {
        didSet { nickKey = Nickname.comparisonKey(of: nick) }
    }
    /// The nick's comparison form (RFC 8266), kept so that lookups by nick do not map
    /// every occupant's nick again.
    public private(set) var nickKey: String
    public var realJID: JID
    public var role: Role
    /// The last presence the occupant sent, without the MUC payloads the room adds
    /// itself (`<x/>`, `<occupant-id/>`): what every copy of it carries.
    public private(set) var presence: XMLElement
    /// The XEP-0421 occupant id, computed once on entry rather than for every copy of
    /// every presence.
    public var occupantID: String

    public init(nick: String, realJID: JID, role: Role, presence: XMLElement, occupantID: String) {
        self.nick = nick
        self.nickKey = Nickname.comparisonKey(of: nick)
        self.realJID = realJID
        self.role = role
        self.presence = presence
        self.occupantID = occupantID
        setPresence(presence)
    }

    /// Keeps `stanza` as the occupant's presence, stripped once here rather than for
    /// every recipient of every broadcast.
    public mutating func setPresence(_ stanza: XMLElement) {
        var stored = stanza
        stored.children.removeAll { child in
            guard case .element(let element) = child else { return false }
            return element.namespace == Namespace.muc || element.namespace == Namespace.mucUser
                || element.namespace == Namespace.occupantID
        }
        presence = stored
    }
}

public struct AffiliationEntry: Sendable, Hashable {
    public var affiliation: Affiliation
    public var reason: String?
    /// The nickname reserved by registering with the room (XEP-0045 §7.10).
    public var nick: String?

    public init(_ affiliation: Affiliation, reason: String? = nil, nick: String? = nil) {
        self.affiliation = affiliation
        self.reason = reason
        self.nick = nick
    }
}

/// A message kept for new occupants.
public struct HistoryEntry: Sendable, Hashable {
    /// The message as broadcast (from `room/nick`, no `to`).
    public var message: XMLElement
    /// Seconds since 1970.
    public var stamp: Double
    public var senderNick: String
    /// Bytes `message` holds (`contentBytes`): what it counts towards
    /// `RoomLimits.historyBytes`, measured once, without serializing it.
    public let bytes: Int

    public init(message: XMLElement, stamp: Double, senderNick: String) {
        self.message = message
        self.stamp = stamp
        self.senderNick = senderNick
        self.bytes = message.contentBytes
    }
}

/// A change that must be stored, in the order the room made it.
public enum RoomChange: Sendable, Hashable {
    case created(RoomConfiguration)
    case configured(RoomConfiguration)
    case affiliation(JID, AffiliationEntry)
    case subject(String, nick: String?, stamp: Double)
    case history(HistoryEntry)
    case destroyed
}

/// One piece of a room's output.
public enum RoomDelivery: Sendable, Hashable {
    /// A stanza for one recipient, its `to` set.
    case single(XMLElement)
    /// One stanza (no `to`) for each of `recipients`, in order: each copy is the stanza
    /// with the recipient as its `to`. The copies that differ for some recipients (their
    /// own presence with status 110, what moderators see) are singles or broadcasts of
    /// their own.
    case broadcast(XMLElement, to: [JID])
}

/// What handling a stanza produced.
public struct RoomEffects: Sendable {
    /// What to deliver, in order.
    public var output: [RoomDelivery] = []
    public var changes: [RoomChange] = []
    /// The room is gone (destroyed, or temporary and empty).
    public var roomEnded = false

    public init() {}

    /// Adds a stanza for its `to`.
    public mutating func send(_ stanza: XMLElement) { output.append(.single(stanza)) }

    /// Adds one stanza for each of `recipients` (nothing if there are none).
    public mutating func broadcast(_ stanza: XMLElement, to recipients: [JID]) {
        guard !recipients.isEmpty else { return }
        output.append(.broadcast(stanza, to: recipients))
    }

    /// Every copy, each with its `to`, in order: what the recipients get, for tests and
    /// checks (delivery never expands broadcasts like this).
    public var stanzas: [XMLElement] {
        output.flatMap { delivery -> [XMLElement] in
            switch delivery {
            case .single(let stanza):
                return [stanza]
            case .broadcast(let stanza, let recipients):
                return recipients.map { recipient in
                    var copy = stanza
                    copy[attribute: "to"] = recipient.description
                    return copy
                }
            }
        }
    }
}

/// One XEP-0045 room.
public struct Room: Sendable {
    public let jid: JID
    public var configuration: RoomConfiguration
    public var affiliations: [JID: AffiliationEntry]
    /// In join order.
    public var occupants: [Occupant]
    public var subject: String
    public var subjectNick: String?
    /// When the subject was set (seconds since 1970); `nil` for the initial empty one.
    public var subjectStamp: Double?
    public var history: [HistoryEntry]
    /// A new room waits for its owner to configure it (XEP-0045 §10.1).
    public var locked: Bool
    /// How many more presence updates each occupant (by real JID) may send now
    /// (`RoomLimits.presenceUpdatesPerSecond`): full on entry. Kept apart from `Occupant`,
    /// which is stored when it changes, so a refused update writes nothing.
    var presenceBudgets: [JID: TokenBucket] = [:]

    public init(
        jid: JID, configuration: RoomConfiguration = RoomConfiguration(),
        affiliations: [JID: AffiliationEntry] = [:], subject: String = "", subjectNick: String? = nil,
        subjectStamp: Double? = nil, history: [HistoryEntry] = [], locked: Bool = false
    ) {
        self.subjectStamp = subjectStamp
        self.jid = jid
        self.configuration = configuration
        self.affiliations = affiliations
        self.occupants = []
        self.subject = subject
        self.subjectNick = subjectNick
        self.history = history
        self.locked = locked
    }

    public func affiliation(of real: JID, environment: RoomEnvironment) -> Affiliation {
        if environment.isServiceAdmin(real.bare) { return .owner }
        return affiliations[real.bare]?.affiliation ?? .none
    }

    /// Who reserved `nick`, or a nick the same as it for RFC 8266, if anyone.
    public func reservation(of nick: String) -> JID? {
        let key = Nickname.comparisonKey(of: nick)
        return affiliations.first { entry in
            entry.value.nick.map { Nickname.comparisonKey(of: $0) == key } ?? false
        }?.key
    }

    /// The occupant whose nick is `nick`, or the same as it for RFC 8266.
    public func occupant(nick: String) -> Occupant? {
        let key = Nickname.comparisonKey(of: nick)
        return occupants.first { $0.nickKey == key }
    }

    public func occupant(real: JID) -> Occupant? {
        occupants.first { $0.realJID == real }
    }

    func index(real: JID) -> Int? {
        occupants.firstIndex { $0.realJID == real }
    }

    func occupantJID(_ nick: String) -> JID {
        (try? jid.with(resource: nick)) ?? jid
    }

    /// The role an affiliation gives on entering (XEP-0045 §5.1.2).
    func defaultRole(for affiliation: Affiliation) -> Role {
        switch affiliation {
        case .owner, .admin: .moderator
        case .member: .participant
        case .none: configuration.membersOnly ? .none : configuration.moderated ? .visitor : .participant
        case .outcast: .none
        }
    }

    public var isEmpty: Bool { occupants.isEmpty }
}
