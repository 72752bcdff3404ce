public import XMPPCore

/// A room's configuration: every `muc#roomconfig_*` field clients expect.
public struct RoomConfiguration: Sendable, Hashable, Codable {
    public enum Whois: String, Sendable, Hashable, Codable { case moderators, anyone }
    public enum Audience: String, Sendable, Hashable, Codable { case anyone, participants, moderators, none }

    public var name = ""
    public var description = ""
    public var language = ""
    public var persistent = false
    /// Prosody's default: rooms are hidden until made public.
    public var isPublic = false
    public var membersOnly = false
    public var moderated = false
    public var password = ""
    public var whois = Whois.moderators
    public var changeSubject = false
    public var allowInvites = false
    public var allowPM = Audience.anyone
    /// `nil`: no limit.
    public var maxUsers: Int?
    public var presenceBroadcast: Set<Role> = [.moderator, .participant, .visitor]
    public var getMemberList: Set<Role> = [.moderator, .participant, .visitor]
    public var historyLength = 20
    /// How many history messages a joiner gets when its join asks for no particular
    /// amount (`muc#roomconfig_defaulthistorymessages`, as in Prosody); `nil`: 20.
    public var defaultHistoryMessages: Int?
    public var logging = false

    public init() {}

    public var passwordProtected: Bool { !password.isEmpty }

    /// The configuration form (`muc#owner` get).
    public func form(room: JID) -> DataForm {
        func bool(_ value: Bool) -> [String] { [value ? "1" : "0"] }
        let roles: [(label: String?, value: String)] = [("Moderator", "moderator"), ("Participant", "participant"), ("Visitor", "visitor")]
        return DataForm(
            type: "form",
            title: "Configuration for \(room)",
            instructions: "Complete and submit this form to configure the room.",
            fields: [
                .init("FORM_TYPE", type: "hidden", values: [Namespace.mucRoomConfig]),
                .init("muc#roomconfig_roomname", type: "text-single", label: "Title", values: [name]),
                .init("muc#roomconfig_roomdesc", type: "text-single", label: "Description", values: [description]),
                .init("muc#roomconfig_lang", type: "text-single", label: "Language tag for room (e.g. 'en', 'de', 'fr' etc.)", values: [language]),
                .init("muc#roomconfig_persistentroom", type: "boolean", label: "Persistent (room should remain even when it is not occupied)", values: bool(persistent)),
                .init("muc#roomconfig_publicroom", type: "boolean", label: "Include room information in public lists", values: bool(isPublic)),
                .init("muc#roomconfig_membersonly", type: "boolean", label: "Only allow members to join", values: bool(membersOnly)),
                .init("muc#roomconfig_moderatedroom", type: "boolean", label: "Moderated (require permission to speak)", values: bool(moderated)),
                .init("muc#roomconfig_passwordprotectedroom", type: "boolean", label: "Password protected", values: bool(passwordProtected)),
                .init("muc#roomconfig_roomsecret", type: "text-private", label: "Password", values: [password]),
                .init(
                    "muc#roomconfig_whois", type: "list-single", label: "Addresses (JIDs) of room occupants may be viewed by:",
                    values: [whois.rawValue], options: [("Moderators only", "moderators"), ("Anyone", "anyone")]
                ),
                .init("muc#roomconfig_changesubject", type: "boolean", label: "Allow anyone to set the room's subject", values: bool(changeSubject)),
                .init("muc#roomconfig_allowinvites", type: "boolean", label: "Allow members to invite new members", values: bool(allowInvites)),
                .init(
                    "muc#roomconfig_allowpm", type: "list-single", label: "Allow private messages from",
                    values: [allowPM.rawValue],
                    options: [("Everyone", "anyone"), ("Participants", "participants"), ("Moderators", "moderators"), ("Nobody", "none")]
                ),
                .init(
                    "muc#roomconfig_maxusers", type: "list-single", label: "Maximum number of occupants",
                    values: [maxUsers.map(String.init) ?? "none"],
                    options: [("No limit", "none")] + ["10", "20", "30", "50", "100", "500", "1000"].map { (nil, $0) }
                ),
                .init("muc#roomconfig_presencebroadcast", type: "list-multi", label: "Roles for which presence is broadcast", values: Role.allCases.filter { presenceBroadcast.contains($0) }.map(\.rawValue), options: roles),
                .init("muc#roomconfig_getmemberlist", type: "list-multi", label: "Roles that may retrieve the member list", values: Role.allCases.filter { getMemberList.contains($0) }.map(\.rawValue), options: roles),
                .init("muc#roomconfig_historylength", type: "text-single", label: "Maximum number of history messages returned by room", values: [String(historyLength)]),
                .init(
                    "muc#roomconfig_defaulthistorymessages", type: "text-single", label: "History messages a newcomer gets unless it asks otherwise",
                    values: [String(defaultHistoryMessages ?? 20)]),
                .init("muc#roomconfig_enablelogging", type: "boolean", label: "Archive chat on server", values: bool(logging)),
            ]
        )
    }

    /// The fields whose text is kept as given (bounded by `RoomLimits.configurationFieldBytes`).
    static let textFields: Set<String> = [
        "muc#roomconfig_roomname", "muc#roomconfig_roomdesc", "muc#roomconfig_lang", "muc#roomconfig_roomsecret",
    ]

    /// Applies a submitted form; fields left out keep their value. Returns the reason
    /// when a value is invalid, or a text field longer than `limits` allow.
    public func applying(_ form: DataForm, limits: RoomLimits = RoomLimits())
        -> Result<RoomConfiguration, StanzaError>
    {
        var next = self
        if let type = form.formType, type != Namespace.mucRoomConfig {
            return .failure(StanzaError(.badRequest, type: .cancel, text: "FORM_TYPE must be \(Namespace.mucRoomConfig)"))
        }
        for field in form.fields {
            if Self.textFields.contains(field.variable),
                let error = limits.refusal(configurationField: field.variable, value: field.values.joined())
            {
                return .failure(error)
            }
            func bool() -> Bool? { field.values.isEmpty ? nil : field.bool }
            switch field.variable {
            case "muc#roomconfig_roomname": next.name = field.value ?? ""
            case "muc#roomconfig_roomdesc": next.description = field.value ?? ""
            case "muc#roomconfig_lang": next.language = field.value ?? ""
            case "muc#roomconfig_persistentroom": if let v = bool() { next.persistent = v }
            case "muc#roomconfig_publicroom": if let v = bool() { next.isPublic = v }
            case "muc#roomconfig_membersonly": if let v = bool() { next.membersOnly = v }
            case "muc#roomconfig_moderatedroom": if let v = bool() { next.moderated = v }
            case "muc#roomconfig_passwordprotectedroom":
                if bool() == false { next.password = "" }
            case "muc#roomconfig_roomsecret": next.password = field.value ?? ""
            case "muc#roomconfig_whois":
                guard let value = field.value, let whois = Whois(rawValue: value) else {
                    return .failure(StanzaError(.notAcceptable, text: "invalid muc#roomconfig_whois"))
                }
                next.whois = whois
            case "muc#roomconfig_changesubject": if let v = bool() { next.changeSubject = v }
            // Prosody's name for the same option.
            case "muc#roomconfig_allowinvites", "{http://prosody.im/protocol/muc}roomconfig_allowmemberinvites":
                if let v = bool() { next.allowInvites = v }
            case "muc#roomconfig_allowpm":
                guard let value = field.value, let audience = Audience(rawValue: value) else {
                    return .failure(StanzaError(.notAcceptable, text: "invalid muc#roomconfig_allowpm"))
                }
                next.allowPM = audience
            case "muc#roomconfig_maxusers":
                let value = field.value ?? "none"
                if value == "none" || value.isEmpty || value == "0" {
                    next.maxUsers = nil
                } else if let number = Int(value), number > 0 {
                    next.maxUsers = number
                } else {
                    return .failure(StanzaError(.notAcceptable, text: "invalid muc#roomconfig_maxusers"))
                }
            case "muc#roomconfig_presencebroadcast":
                next.presenceBroadcast = Set(field.values.compactMap(Role.init(rawValue:)))
            case "muc#roomconfig_getmemberlist":
                next.getMemberList = Set(field.values.compactMap(Role.init(rawValue:)))
            case "muc#roomconfig_historylength":
                guard let number = Int(field.value ?? ""), number >= 0 else {
                    return .failure(StanzaError(.notAcceptable, text: "invalid muc#roomconfig_historylength"))
                }
                next.historyLength = min(number, 1000)
            case "muc#roomconfig_defaulthistorymessages":
                guard let number = Int(field.value ?? ""), number >= 0 else {
                    return .failure(StanzaError(.notAcceptable, text: "invalid muc#roomconfig_defaulthistorymessages"))
                }
                next.defaultHistoryMessages = number
            case "muc#roomconfig_enablelogging": if let v = bool() { next.logging = v }
            default: continue
            }
        }
        // No more by default than the room keeps; the default itself is kept as none.
        if let number = next.defaultHistoryMessages {
            let bounded = min(number, next.historyLength)
            next.defaultHistoryMessages = bounded == 20 ? nil : bounded
        }
        return .success(next)
    }

    /// Status codes announcing what changed (XEP-0045 §10.2.1): 104 always, plus the
    /// privacy-related ones.
    public func changeStatusCodes(from old: RoomConfiguration) -> [Int] {
        var codes: Set<Int> = []
        var rest = self
        rest.whois = old.whois
        rest.logging = old.logging
        // Occupants are not told of a new default amount of join history (nor by Prosody).
        rest.defaultHistoryMessages = old.defaultHistoryMessages
        if rest != old { codes.insert(104) }
        if old.whois != whois { codes.insert(whois == .anyone ? 172 : 173) }
        if old.logging != logging { codes.insert(logging ? 170 : 171) }
        return codes.sorted()
    }
}
