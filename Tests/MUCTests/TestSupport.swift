import MUC
import Testing
import XMPPCore

/// The addresses every suite uses.
enum Cast {
    static let room = address("verona@conference.example")
    static let romeo = address("romeo@montague.example/balcony")
    static let juliet = address("juliet@capulet.example/chamber")
    static let mercutio = address("mercutio@montague.example/street")
    static let tybalt = address("tybalt@capulet.example/sword")
    static let nurse = address("nurse@capulet.example/kitchen")
    static let benvolio = address("benvolio@montague.example/square")
}

/// A JID from a literal known to be valid.
func address(_ text: String) -> JID {
    guard let jid = try? JID(text) else { fatalError("invalid test JID \(text)") }
    return jid
}

/// A clock the test moves by hand. Each test owns its clock and uses it from one task,
/// which is what makes the unchecked `Sendable` sound.
final class TestClock: @unchecked Sendable {
    private(set) var now: Double

    init(_ start: Double) { now = start }

    func advance(by delta: Double) { now += delta }
}

/// Stanza-ids `sid-1`, `sid-2`, … in the order the room asks for them (one task, as above).
final class IDCounter: @unchecked Sendable {
    private var count = 0

    func next() -> String {
        count += 1
        return "sid-\(count)"
    }
}

/// A room with a fixed clock, counted stanza-ids and readable occupant-ids (`romeo@verona`).
struct TestRoom {
    static let start = 1_700_000_000.0

    var room: Room
    let clock = TestClock(TestRoom.start)
    let ids = IDCounter()
    var environment: RoomEnvironment {
        let clock = clock
        let ids = ids
        return RoomEnvironment(
            now: { clock.now },
            makeID: { ids.next() },
            occupantID: { room, real in "\(real.localpart ?? real.domainpart)@\(room.localpart ?? "")" }
        )
    }

    init(_ room: Room) { self.room = room }

    /// A room Romeo created and configured (an instant room, `configure` applied), with
    /// `affiliations` given and `occupants` joined in order.
    static func open(
        _ configure: (inout RoomConfiguration) -> Void = { _ in },
        affiliations: [JID: Affiliation] = [:],
        occupants: [(JID, String)] = [(Cast.romeo, "Romeo")]
    ) -> TestRoom {
        var configuration = RoomConfiguration()
        configure(&configuration)
        var entries = [Cast.romeo.bare: AffiliationEntry(.owner)]
        for (jid, affiliation) in affiliations { entries[jid.bare] = AffiliationEntry(affiliation) }
        var test = TestRoom(Room(jid: Cast.room, configuration: configuration, affiliations: entries))
        // Everyone gives the password, owners too (as in Prosody).
        let password = configuration.password.isEmpty ? nil : configuration.password
        for (real, nick) in occupants { test.join(real, nick: nick, password: password) }
        return test
    }

    /// A new, locked room that Romeo has just created by joining.
    static func created() -> (TestRoom, RoomEffects) {
        var test = TestRoom(Room(jid: Cast.room, locked: true))
        let effects = test.join(Cast.romeo, nick: "Romeo", isNew: true)
        return (test, effects)
    }

    @discardableResult
    /// An open room with Romeo (owner, moderator) and Juliet (participant) inside.
    static func twoInside(_ configure: (inout RoomConfiguration) -> Void = { _ in }) -> TestRoom {
        TestRoom.open(configure, occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")])
    }

    @discardableResult
    mutating func send(_ stanza: XMLElement, from real: JID, isNew: Bool = false) -> RoomEffects {
        room.handle(stanza, from: real, environment: environment, isNew: isNew)
    }

    @discardableResult
    mutating func join(
        _ real: JID, nick: String, isNew: Bool = false, password: String? = nil, history: XMLElement? = nil
    ) -> RoomEffects {
        send(Build.join(real, nick: nick, password: password, history: history), from: real, isNew: isNew)
    }

    @discardableResult
    mutating func leave(_ real: JID, nick: String, status: String? = nil) -> RoomEffects {
        let children = status.map { [XMLElement("status", namespace: Namespace.client, text: $0)] } ?? []
        return send(Build.presence(from: real, to: nick, type: "unavailable", children: children), from: real)
    }

    @discardableResult
    mutating func say(_ real: JID, _ body: String, id: String? = nil) -> RoomEffects {
        send(Build.message(from: real, type: "groupchat", id: id, body: body), from: real)
    }

    /// Submits a room configuration form with these fields (FORM_TYPE added).
    @discardableResult
    mutating func configure(_ owner: JID, _ fields: [(String, [String])], id: String = "config") -> RoomEffects {
        let form = DataForm(
            type: "submit",
            fields: [.init("FORM_TYPE", values: [Namespace.mucRoomConfig])] + fields.map { .init($0.0, values: $0.1) }
        )
        return send(
            Build.iq("set", from: owner, id: id, payload: Build.query(Namespace.mucOwner, [form.element])), from: owner)
    }

    /// A muc#admin set with these items.
    @discardableResult
    mutating func admin(_ actor: JID, _ items: [XMLElement], id: String = "admin") -> RoomEffects {
        send(Build.iq("set", from: actor, id: id, payload: Build.query(Namespace.mucAdmin, items)), from: actor)
    }
}

/// Builders for the stanzas clients send.
enum Build {
    static func presence(
        from real: JID, to nick: String?, type: String? = nil, children: [XMLElement] = []
    ) -> XMLElement {
        var presence = XMLElement("presence", namespace: Namespace.client, children: children)
        presence[attribute: "from"] = real.description
        presence[attribute: "to"] = nick.map { "\(Cast.room)/\($0)" } ?? Cast.room.description
        presence[attribute: "type"] = type
        return presence
    }

    static func join(_ real: JID, nick: String, password: String? = nil, history: XMLElement? = nil) -> XMLElement {
        var x = XMLElement("x", namespace: Namespace.muc)
        if let password { x.append(XMLElement("password", namespace: Namespace.muc, text: password)) }
        if let history { x.append(history) }
        return presence(from: real, to: nick, children: [x])
    }

    static func history(_ attributes: KeyValuePairs<String, String>) -> XMLElement {
        XMLElement("history", namespace: Namespace.muc, attributes)
    }

    /// A message to the room, or to `nick` in it.
    static func message(
        from real: JID, to nick: String? = nil, type: String? = nil, id: String? = nil, body: String? = nil,
        children: [XMLElement] = []
    ) -> XMLElement {
        var message = XMLElement("message", namespace: Namespace.client)
        message[attribute: "from"] = real.description
        message[attribute: "to"] = nick.map { "\(Cast.room)/\($0)" } ?? Cast.room.description
        message[attribute: "type"] = type
        message[attribute: "id"] = id
        if let body { message.append(XMLElement("body", namespace: Namespace.client, text: body)) }
        for child in children { message.append(child) }
        return message
    }

    static func iq(_ type: String, from real: JID, to nick: String? = nil, id: String, payload: XMLElement?)
        -> XMLElement
    {
        var iq = XMLElement("iq", namespace: Namespace.client, ["type": type, "id": id])
        iq[attribute: "from"] = real.description
        iq[attribute: "to"] = nick.map { "\(Cast.room)/\($0)" } ?? Cast.room.description
        if let payload { iq.append(payload) }
        return iq
    }

    static func query(_ namespace: String, _ children: [XMLElement] = []) -> XMLElement {
        XMLElement("query", namespace: namespace, children: children)
    }

    /// A muc#admin item.
    static func item(_ attributes: KeyValuePairs<String, String>, reason: String? = nil) -> XMLElement {
        var item = XMLElement("item", namespace: Namespace.mucAdmin, attributes)
        if let reason { item.append(XMLElement("reason", namespace: Namespace.mucAdmin, text: reason)) }
        return item
    }
}

extension RoomEffects {
    /// The stanzas addressed to `real`, in order.
    func to(_ real: JID) -> [XMLElement] { stanzas.filter { $0[attribute: "to"] == real.description } }

    func presences(to real: JID) -> [XMLElement] { to(real).filter { $0.name == "presence" } }
    func messages(to real: JID) -> [XMLElement] { to(real).filter { $0.name == "message" } }
    func iqs(to real: JID) -> [XMLElement] { to(real).filter { $0.name == "iq" } }

    /// Everyone who gets something, once each, in order of first delivery.
    var recipients: [String] {
        var seen: [String] = []
        for stanza in stanzas {
            if let to = stanza[attribute: "to"], !seen.contains(to) { seen.append(to) }
        }
        return seen
    }
}

extension XMLElement {
    var from: String? { self[attribute: "from"] }

    /// The muc#user `<x/>`.
    var mucUser: XMLElement? { child("x", namespace: Namespace.mucUser) }

    /// The muc#user status codes, in document order.
    var statusCodes: [Int] {
        (mucUser?.children("status", namespace: Namespace.mucUser) ?? []).compactMap {
            $0[attribute: "code"].flatMap(Int.init)
        }
    }

    /// The muc#user `<item/>`.
    var mucItem: XMLElement? { mucUser?.child("item", namespace: Namespace.mucUser) }

    /// The muc#user children as `status 201`, `item`, `destroy`…, to check their order.
    var mucUserLayout: [String] {
        (mucUser?.elements ?? []).map { element in
            element.name == "status" ? "status \(element[attribute: "code"] ?? "")" : element.name
        }
    }

    var errorCondition: StanzaError.Condition? { stanzaError?.condition }
    var errorType: StanzaError.ErrorType? { stanzaError?.type }

    /// The `<body/>` text.
    var body: String? { child("body", namespace: Namespace.client)?.text }

    /// A data form child (`jabber:x:data`), anywhere one level down.
    var dataForm: DataForm? {
        if let x = child("x", namespace: Namespace.dataForms) { return DataForm(element: x) }
        return elements.lazy.compactMap { $0.child("x", namespace: Namespace.dataForms) }.first.flatMap(DataForm.init)
    }
}
