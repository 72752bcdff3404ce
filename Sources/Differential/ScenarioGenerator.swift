public import XMPPCore
import ConclaveFuzzing
import Foundation

/// Generates scenarios from a seed: the same seed gives the same scenario. The
/// generator keeps a rough model of the room (who joined with which nick, whether it
/// was configured) so that most actions make sense, and picks invalid ones on purpose
/// often enough (nicks that fail validation, forms with bad values, outsiders acting
/// as owners): the servers' answers to those differ most.
public struct ScenarioGenerator: Sendable {
    public var mucDomain: String
    /// The clients' accounts, one per client (`A` logs in to the first, …).
    public var accounts: [String]
    /// How many random actions after the room's creation (inclusive range).
    public var length: ClosedRange<Int>

    public init(mucDomain: String, accounts: [String], length: ClosedRange<Int> = 4...14) {
        self.mucDomain = mucDomain
        self.accounts = accounts
        self.length = length
    }

    static let clientNames = ["A", "B", "C", "D", "E", "F"]

    /// Nicks a scenario picks from: plain ones, ones that collide in case or with each
    /// other, and ones a server should refuse.
    static let nicks = [
        "romeo", "juliet", "nurse", "Tybalt", "tybalt", "mercutio", "Benvolio", "friar laurence",
        "😀", "rosé", "Ｒｏｍｅｏ", "\u{2764}\u{FE0F}", " lead", "trail ", "tab\there", "a/b", "@at", "x\u{200B}y",
    ]
    /// A nick for a join, nick change or registration: mostly one both servers take
    /// alike; one time in eight one they enforce differently by design (`nick-precis`),
    /// which ends the scenario's comparison.
    static func pickNick(_ random: inout SplitMix) -> String {
        if random.below(8) == 0 {
            let odd = nicks.filter(nicksEnforcedOtherwise.contains)
            return odd[random.below(odd.count)]
        }
        let plain = nicks.filter { !nicksEnforcedOtherwise.contains($0) }
        return plain[random.below(plain.count)]
    }
    static let bodies = ["hello", "how are you?", "<&> escaped", "wherefore art thou", "ok", "…"]
    static let reasons = [nil, "spam", "welcome", "by request"] as [String?]
    static let passwords = ["secret", "wrong"]

    /// The room's configuration fields and values to submit: mostly valid, some not.
    static let formFields: [(variable: String, values: [[String]])] = [
        ("muc#roomconfig_roomname", [["A room"], [""], ["Ünïcode ✓"]]),
        ("muc#roomconfig_roomdesc", [["about things"], [""]]),
        ("muc#roomconfig_persistentroom", [["1"], ["0"], ["true"], ["maybe"]]),
        ("muc#roomconfig_publicroom", [["1"], ["0"], ["false"]]),
        ("muc#roomconfig_membersonly", [["1"], ["0"], ["true"], ["yes"]]),
        ("muc#roomconfig_moderatedroom", [["1"], ["0"]]),
        ("muc#roomconfig_passwordprotectedroom", [["1"], ["0"]]),
        ("muc#roomconfig_roomsecret", [["secret"], [""]]),
        ("muc#roomconfig_whois", [["moderators"], ["anyone"], ["everyone"]]),
        ("muc#roomconfig_changesubject", [["1"], ["0"]]),
        // Prosody's name for it (Conclave takes both).
        ("{http://prosody.im/protocol/muc}roomconfig_allowmemberinvites", [["1"], ["0"]]),
        ("muc#roomconfig_allowpm", [["anyone"], ["participants"], ["moderators"], ["none"], ["nobody"]]),
        ("muc#roomconfig_maxusers", [["2"], ["20"], ["0"], ["-1"], ["many"]]),
        ("muc#roomconfig_historylength", [["0"], ["5"], ["20"], ["x"]]),
        ("muc#roomconfig_defaulthistorymessages", [["0"], ["2"], ["x"]]),
        ("muc#roomconfig_presencebroadcast", [["moderator", "participant", "visitor"], ["moderator"]]),
        ("muc#roomconfig_getmemberlist", [["moderator", "participant"], ["moderator"]]),
        ("muc#roomconfig_lang", [["en"], ["fr"]]),
        ("muc#roomconfig_unknownfield", [["1"]]),
    ]

    /// Values no server should accept for their field (XEP-0004 booleans are 0, 1, true
    /// and false; numbers are numbers): Conclave refuses the form with not-acceptable,
    /// Prosody 0.12 skips the field and applies the rest (docs/muc.md,
    /// `config-invalid-value`).
    static let invalidValues: Set<String> = ["maybe", "yes", "everyone", "nobody", "-1", "many", "x"]
    /// XEP-0045 fields Conclave applies and Prosody 0.12 ignores (docs/muc.md,
    /// `config-beyond-prosody`).
    static let fieldsProsodyLacks: Set<String> = [
        "muc#roomconfig_allowpm", "muc#roomconfig_maxusers", "muc#roomconfig_getmemberlist",
        "muc#roomconfig_passwordprotectedroom",
    ]

    /// Nicks whose fate differs by design: Conclave enforces the PRECIS Nickname profile
    /// (RFC 8266: emoji allowed, invisible characters and variation selectors refused,
    /// spaces trimmed and width mapped with status 210), Prosody 0.12 stringprep's
    /// Resourceprep (Unicode 3.2 only, so no emoji; invisible characters removed; spaces
    /// kept; no 210). docs/muc.md, `nick-precis`.
    static let nicksEnforcedOtherwise: Set<String> = ["😀", "Ｒｏｍｅｏ", "\u{2764}\u{FE0F}", " lead", "trail ", "x\u{200B}y"]

    /// The known tag of an action that takes `nick` for `client`: `nick-precis` when the
    /// nick is one of those above, or differs only in case from a nick someone else
    /// holds or reserved (Conclave compares nicks case-insensitively, Prosody exactly).
    func nickTag(_ nick: String, for client: String, model: Model) -> String? {
        if Self.nicksEnforcedOtherwise.contains(nick) { return "nick-precis" }
        let taken = model.nicks.filter { $0.key != client }.map(\.value) + model.registered.filter { $0.key != client }.map(\.value)
        func key(_ text: String) -> String { text.precomposedStringWithCompatibilityMapping.lowercased() }
        if taken.contains(where: { $0 != nick && key($0) == key(nick) }) { return "nick-precis" }
        return nil
    }

    struct Model {
        var connected: Set<String> = []
        var nicks: [String: String] = [:]
        /// Nicks clients registered (reserved).
        var registered: [String: String] = [:]
        var configured = false
        var persistent = false
        var historyLength = 20
        /// Clients that own the room (its creator, and those an owner made owners).
        var owners: Set<String> = []
        var counter = 0
    }

    public func scenario(seed: UInt64, room: String) -> Scenario {
        var random = SplitMix(seed: seed)
        let count = min(accounts.count, 2 + random.below(3))
        let clients = (0..<count).map { (name: Self.clientNames[$0], account: accounts[$0]) }
        let names = clients.map(\.name)
        var model = Model()
        var actions: [ScenarioAction] = []
        func add(_ action: ScenarioAction?) {
            guard let action else { return }
            actions.append(action)
            // Clients come online as real ones do: invitations and messages to their
            // bare JID then have a resource to go to.
            if action.kind == .connects {
                actions.append(ScenarioAction(client: action.client, kind: .sends("<presence/>"), label: "comes online"))
            }
        }
        for name in names {
            add(ScenarioAction(client: name, kind: .connects, label: "connects"))
            model.connected.insert(name)
        }
        // The creator joins; most scenarios configure the room at once.
        add(join(names[0], nick: Self.nicks[random.below(4)], room: room, model: &model, random: &random, plain: true))
        switch random.below(10) {
        case 0...5: add(instant(names[0], room: room, model: &model))
        case 6...8: add(configure(names[0], room: room, model: &model, random: &random))
        default: break
        }
        let steps = length.lowerBound + random.below(length.count)
        for _ in 0..<steps {
            add(randomAction(names: names, room: room, model: &model, random: &random))
        }
        return Scenario(seed: seed, room: room, clients: clients, actions: actions)
    }

    // MARK: - Actions

    func nextID(_ client: String, _ model: inout Model) -> String {
        model.counter += 1
        return "\(client.lowercased())\(model.counter)"
    }

    static func escape(_ text: String) -> String { XMLEscaping.escapeText(text) }
    static func attribute(_ text: String) -> String { XMLEscaping.escapeAttribute(text) }

    func randomAction(names: [String], room: String, model: inout Model, random: inout SplitMix) -> ScenarioAction? {
        if model.nicks.isEmpty, !model.persistent {
            // A temporary room nobody is in is gone: the next join creates it anew.
            model.configured = false
            model.registered = [:]
            model.owners = []
            model.historyLength = 20
        }
        let actor = names[random.below(names.count)]
        guard model.connected.contains(actor) else {
            model.connected.insert(actor)
            return ScenarioAction(client: actor, kind: .connects, label: "connects")
        }
        let others = names.filter { $0 != actor }
        let other = others.isEmpty ? actor : others[random.below(others.count)]
        let joined = model.nicks[actor] != nil
        let occupantNicks = Array(model.nicks.values).sorted()
        // Prosody 0.12 destroys a room that is still locked (not configured yet) when an
        // occupant changes nick in it, and then answers item-not-found for the room: a
        // bug of the reference (docs/muc.md), not generated.
        // It also destroys a temporary room whose only occupant changes nick.
        let nickChangeBreaksReference = joined && (!model.configured || (!model.persistent && model.nicks.count < 2))
        if random.below(100) < 15 { return c2sAction(actor, to: other, room: room, model: &model, random: &random) }
        switch random.below(100) {
        case 0..<16:
            let nick = nickChangeBreaksReference ? model.nicks[actor]! : Self.pickNick(&random)
            return join(actor, nick: nick, room: room, model: &model, random: &random, plain: false)
        case 16..<22:
            return leave(actor, room: room, model: &model, random: &random)
        case 22..<28:
            guard joined, !nickChangeBreaksReference else { fallthrough }
            let nick = Self.pickNick(&random)
            let id = nextID(actor, &model)
            let known = nickTag(nick, for: actor, model: model)
            model.nicks[actor] = nick
            return ScenarioAction(
                client: actor, kind: .sends("<presence to=\"\(Self.attribute(room + "/" + nick))\" id=\"\(id)\"/>"),
                label: "changes nick to '\(nick)'", known: known)
        case 28..<40:
            let id = nextID(actor, &model)
            let body = Self.bodies[random.below(Self.bodies.count)]
            let type = random.below(10) == 0 ? "normal" : "groupchat"
            return ScenarioAction(
                client: actor,
                kind: .sends("<message to=\"\(room)\" type=\"\(type)\" id=\"\(id)\"><body>\(Self.escape(body))</body></message>"),
                label: "says '\(body)' (\(type))")
        case 40..<45:
            let id = nextID(actor, &model)
            let subject = ["Plans", "", "Ünïcode subject"][random.below(3)]
            let withBody = random.below(3) == 0
            let body = withBody ? "<body>and a body</body>" : ""
            return ScenarioAction(
                client: actor,
                kind: .sends("<message to=\"\(room)\" type=\"groupchat\" id=\"\(id)\"><subject>\(Self.escape(subject))</subject>\(body)</message>"),
                label: "sets the subject '\(subject)'\(withBody ? " with a body" : "")")
        case 45..<50:
            let id = nextID(actor, &model)
            let target = occupantNicks.isEmpty || random.below(5) == 0 ? "nobody" : occupantNicks[random.below(occupantNicks.count)]
            return ScenarioAction(
                client: actor,
                kind: .sends(
                    "<message to=\"\(Self.attribute(room + "/" + target))\" type=\"chat\" id=\"\(id)\"><body>psst</body>"
                        + "<x xmlns=\"http://jabber.org/protocol/muc#user\"/></message>"),
                label: "whispers to '\(target)'")
        case 50..<54:
            guard let nick = model.nicks[actor] else { fallthrough }
            let id = nextID(actor, &model)
            let show = ["", "<show>away</show>", "<show>dnd</show><status>busy</status>"][random.below(3)]
            let photo = random.below(2) == 0
                ? "<x xmlns=\"vcard-temp:x:update\"><photo>01b87fcd030b72895ff8e88db57ec525450f000d</photo></x>" : ""
            return ScenarioAction(
                client: actor,
                kind: .sends("<presence to=\"\(Self.attribute(room + "/" + nick))\" id=\"\(id)\">\(show)\(photo)</presence>"),
                label: "updates its presence")
        case 54..<60:
            return configure(actor, room: room, model: &model, random: &random)
        case 60..<62:
            let id = nextID(actor, &model)
            return ScenarioAction(
                client: actor,
                kind: .sends("<iq type=\"get\" to=\"\(room)\" id=\"\(id)\"><query xmlns=\"http://jabber.org/protocol/muc#owner\"/></iq>"),
                label: "asks for the configuration form")
        case 62..<70:
            let id = nextID(actor, &model)
            let affiliation = ["owner", "admin", "member", "outcast", "none"][random.below(5)]
            let target = random.below(8) == 0 ? "stranger@localhost" : "${\(other)'s JID}"
            if model.owners.contains(actor), target != "stranger@localhost" {
                if affiliation == "owner" { model.owners.insert(other) } else { model.owners.remove(other) }
            }
            let reason = Self.reasons[random.below(Self.reasons.count)].map { "<reason>\(Self.escape($0))</reason>" } ?? ""
            return ScenarioAction(
                client: actor,
                kind: .sends(
                    "<iq type=\"set\" to=\"\(room)\" id=\"\(id)\"><query xmlns=\"http://jabber.org/protocol/muc#admin\">"
                        + "<item affiliation=\"\(affiliation)\" jid=\"\(target)\">\(reason)</item></query></iq>"),
                label: "makes \(target == "stranger@localhost" ? "a stranger" : other) \(affiliation)")
        case 70..<75:
            let id = nextID(actor, &model)
            let role = ["moderator", "participant", "visitor", "none"][random.below(4)]
            let target = occupantNicks.isEmpty || random.below(6) == 0 ? "nobody" : occupantNicks[random.below(occupantNicks.count)]
            let reason = Self.reasons[random.below(Self.reasons.count)].map { "<reason>\(Self.escape($0))</reason>" } ?? ""
            return ScenarioAction(
                client: actor,
                kind: .sends(
                    "<iq type=\"set\" to=\"\(room)\" id=\"\(id)\"><query xmlns=\"http://jabber.org/protocol/muc#admin\">"
                        + "<item nick=\"\(Self.attribute(target))\" role=\"\(role)\">\(reason)</item></query></iq>"),
                label: "gives '\(target)' the role \(role)")
        case 75..<79:
            let id = nextID(actor, &model)
            let item = ["affiliation=\"member\"", "affiliation=\"outcast\"", "affiliation=\"admin\"", "affiliation=\"owner\"",
                        "role=\"moderator\"", "role=\"participant\""][random.below(6)]
            return ScenarioAction(
                client: actor,
                kind: .sends(
                    "<iq type=\"get\" to=\"\(room)\" id=\"\(id)\"><query xmlns=\"http://jabber.org/protocol/muc#admin\">"
                        + "<item \(item)/></query></iq>"),
                label: "lists \(item)")
        case 79..<83:
            let id = nextID(actor, &model)
            let reason = random.below(2) == 0 ? "<reason>join us</reason>" : ""
            return ScenarioAction(
                client: actor,
                kind: .sends(
                    "<message to=\"\(room)\" id=\"\(id)\"><x xmlns=\"http://jabber.org/protocol/muc#user\">"
                        + "<invite to=\"${\(other)'s JID}\">\(reason)</invite></x></message>"),
                label: "invites \(other)")
        case 83..<87:
            let id = nextID(actor, &model)
            if random.below(2) == 0 {
                return ScenarioAction(
                    client: actor,
                    kind: .sends("<iq type=\"get\" to=\"\(room)\" id=\"\(id)\"><query xmlns=\"jabber:iq:register\"/></iq>"),
                    label: "asks for the registration form")
            }
            let nick = Self.pickNick(&random)
            let known = nickTag(nick, for: actor, model: model)
            model.registered[actor] = nick
            return ScenarioAction(
                client: actor,
                kind: .sends(
                    "<iq type=\"set\" to=\"\(room)\" id=\"\(id)\"><query xmlns=\"jabber:iq:register\">"
                        + "<x xmlns=\"jabber:x:data\" type=\"submit\"><field var=\"FORM_TYPE\"><value>http://jabber.org/protocol/muc#register</value></field>"
                        + "<field var=\"muc#register_roomnick\"><value>\(Self.escape(nick))</value></field></x></query></iq>"),
                label: "registers '\(nick)'", known: known)
        case 87..<92:
            let id = nextID(actor, &model)
            let target = random.below(3) == 0 && !occupantNicks.isEmpty
                ? room + "/" + occupantNicks[random.below(occupantNicks.count)] : room
            let query = random.below(3) == 0 ? "http://jabber.org/protocol/disco#items" : "http://jabber.org/protocol/disco#info"
            return ScenarioAction(
                client: actor,
                kind: .sends("<iq type=\"get\" to=\"\(Self.attribute(target))\" id=\"\(id)\"><query xmlns=\"\(query)\"/></iq>"),
                label: "asks \(target == room ? "the room" : "an occupant") for \(query.hasSuffix("info") ? "disco#info" : "disco#items")")
        case 92..<95:
            let id = nextID(actor, &model)
            let target = !occupantNicks.isEmpty && random.below(3) != 0
                ? room + "/" + occupantNicks[random.below(occupantNicks.count)] : room
            return ScenarioAction(
                client: actor, kind: .sends("<presence type=\"probe\" to=\"\(Self.attribute(target))\" id=\"\(id)\"/>"),
                label: "probes \(target == room ? "the room" : "an occupant")")
        case 95..<97:
            let id = nextID(actor, &model)
            // Prosody keeps a destroyed persistent room's tombstone (docs/muc.md).
            let known: String? = model.owners.contains(actor) && model.persistent ? "no-tombstone" : nil
            if model.owners.contains(actor) {
                model.nicks = [:]
                model.configured = false
                model.persistent = false
                model.registered = [:]
                model.owners = []
                model.historyLength = 20
            }
            return ScenarioAction(
                client: actor,
                kind: .sends(
                    "<iq type=\"set\" to=\"\(room)\" id=\"\(id)\"><query xmlns=\"http://jabber.org/protocol/muc#owner\">"
                        + "<destroy><reason>done</reason></destroy></query></iq>"),
                label: "destroys the room", known: known)
        default:
            model.connected.remove(actor)
            model.nicks[actor] = nil
            return ScenarioAction(client: actor, kind: .disconnects, label: "disconnects")
        }
    }

    /// Between users, not through the room: a message (to the other's bare or full JID,
    /// of any type, with or without a body), an IQ to the other (the client does not
    /// answer; the server answers one to the bare JID), or directed presence. The other
    /// may be offline: a message then waits for it (XEP-0160) or comes back as an error.
    /// Ids carry the room's local part, unique to the scenario, so that an offline
    /// message an earlier scenario left is told apart (`ScenarioRunner`).
    func c2sAction(_ actor: String, to other: String, room: String, model: inout Model, random: inout SplitMix) -> ScenarioAction {
        let local = room.split(separator: "@").first.map(String.init) ?? room
        let id = local + "-" + nextID(actor, &model)
        let full = random.below(3) == 0
        let target = full ? "${\(other)'s full JID}" : "${\(other)'s JID}"
        let whom = "\(other)'s \(full ? "full " : "")JID"
        let offline = model.connected.contains(other) ? "" : " (offline)"
        switch random.below(10) {
        case 0..<6:
            let type = ["chat", "chat", "chat", "normal", "headline", "groupchat", "error", nil][random.below(8)]
            let body = random.below(8) == 0 ? "" : "<body>\(Self.escape(Self.bodies[random.below(Self.bodies.count)]))</body>"
            let typeAttribute = type.map { " type=\"\($0)\"" } ?? ""
            let hint = random.below(10) == 0 ? "<no-store xmlns=\"urn:xmpp:hints\"/>" : ""
            // Kept offline by Prosody 0.12 whatever the hint (docs/muc.md).
            let known: String? = !hint.isEmpty && ["chat", "normal", nil].contains(type) ? "no-store-hint" : nil
            return ScenarioAction(
                client: actor, kind: .sends("<message to=\"\(target)\"\(typeAttribute) id=\"\(id)\">\(body)\(hint)</message>"),
                label: "messages \(whom)\(offline) (\(type ?? "no type")\(body.isEmpty ? ", no body" : "")\(hint.isEmpty ? "" : ", no-store"))",
                known: known)
        case 6..<8:
            let query = [
                "<ping xmlns=\"urn:xmpp:ping\"/>", "<query xmlns=\"jabber:iq:version\"/>",
                "<query xmlns=\"http://jabber.org/protocol/disco#info\"/>", "<query xmlns=\"urn:example:unknown\"/>",
            ][random.below(4)]
            let type = random.below(4) == 0 ? "set" : "get"
            return ScenarioAction(
                client: actor, kind: .sends("<iq to=\"\(target)\" type=\"\(type)\" id=\"\(id)\">\(query)</iq>"),
                label: "sends \(whom)\(offline) an iq \(type)")
        default:
            let type = random.below(3) == 0 ? " type=\"unavailable\"" : ""
            return ScenarioAction(
                client: actor, kind: .sends("<presence to=\"\(target)\"\(type) id=\"\(id)\"/>"),
                label: "sends \(whom)\(offline) directed presence\(type.isEmpty ? "" : " (unavailable)")")
        }
    }

    func join(_ client: String, nick: String, room: String, model: inout Model, random: inout SplitMix, plain: Bool) -> ScenarioAction {
        let id = nextID(client, &model)
        var children = ""
        var notes: [String] = []
        if !plain {
            if random.below(4) == 0 {
                let password = Self.passwords[random.below(Self.passwords.count)]
                children += "<password>\(password)</password>"
                notes.append("password '\(password)'")
            }
            if random.below(4) == 0 {
                let history = ["<history maxstanzas=\"0\"/>", "<history maxstanzas=\"2\"/>", "<history maxchars=\"0\"/>", "<history seconds=\"3600\"/>"][random.below(4)]
                children += history
                notes.append("history \(history)")
            }
        }
        let known = nickTag(nick, for: client, model: model)
        // Who creates the room owns it.
        if model.nicks.isEmpty, model.owners.isEmpty { model.owners.insert(client) }
        model.nicks[client] = nick
        return ScenarioAction(
            client: client,
            kind: .sends(
                "<presence to=\"\(Self.attribute(room + "/" + nick))\" id=\"\(id)\"><x xmlns=\"http://jabber.org/protocol/muc\">\(children)</x></presence>"),
            label: "joins as '\(nick)'" + (notes.isEmpty ? "" : " (" + notes.joined(separator: ", ") + ")"), known: known)
    }

    func leave(_ client: String, room: String, model: inout Model, random: inout SplitMix) -> ScenarioAction {
        let id = nextID(client, &model)
        let nick = model.nicks[client] ?? "someone"
        model.nicks[client] = nil
        let status = random.below(3) == 0 ? "<status>bye</status>" : ""
        return ScenarioAction(
            client: client,
            kind: .sends("<presence type=\"unavailable\" to=\"\(Self.attribute(room + "/" + nick))\" id=\"\(id)\">\(status)</presence>"),
            label: "leaves")
    }

    func instant(_ client: String, room: String, model: inout Model) -> ScenarioAction {
        let id = nextID(client, &model)
        model.configured = true
        return ScenarioAction(
            client: client,
            kind: .sends(
                "<iq type=\"set\" to=\"\(room)\" id=\"\(id)\"><query xmlns=\"http://jabber.org/protocol/muc#owner\">"
                    + "<x xmlns=\"jabber:x:data\" type=\"submit\"/></query></iq>"),
            label: "accepts the default configuration")
    }

    func configure(_ client: String, room: String, model: inout Model, random: inout SplitMix) -> ScenarioAction {
        let id = nextID(client, &model)
        model.configured = true
        var fields = "<field var=\"FORM_TYPE\"><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
        var notes: [String] = []
        let count = 1 + random.below(4)
        var used: Set<Int> = []
        var known: String?
        for _ in 0..<count {
            let index = random.below(Self.formFields.count)
            guard used.insert(index).inserted else { continue }
            let field = Self.formFields[index]
            let values = field.values[random.below(field.values.count)]
            fields += "<field var=\"\(field.variable)\">" + values.map { "<value>\(Self.escape($0))</value>" }.joined() + "</field>"
            if values.contains(where: Self.invalidValues.contains) {
                known = "config-invalid-value"
            } else if Self.fieldsProsodyLacks.contains(field.variable), known == nil {
                known = "config-beyond-prosody"
            }
            if field.variable == "muc#roomconfig_historylength", let value = values.first, let number = Int(value), number >= 0 {
                // Prosody announces 104 whenever this field is submitted, changed or not.
                if number == model.historyLength, known == nil { known = "history-length-104" }
                model.historyLength = number
            }
            if field.variable == "muc#roomconfig_persistentroom", let value = values.first {
                if ["1", "true"].contains(value) { model.persistent = true }
                if ["0", "false"].contains(value) { model.persistent = false }
            }
            notes.append("\(field.variable.replacingPrefix("muc#roomconfig_"))=\(values.joined(separator: ","))")
        }
        return ScenarioAction(
            client: client,
            kind: .sends(
                "<iq type=\"set\" to=\"\(room)\" id=\"\(id)\"><query xmlns=\"http://jabber.org/protocol/muc#owner\">"
                    + "<x xmlns=\"jabber:x:data\" type=\"submit\">\(fields)</x></query></iq>"),
            label: "configures " + notes.joined(separator: " "), known: known)
    }
}

extension String {
    func replacingPrefix(_ prefix: String) -> String { hasPrefix(prefix) ? String(dropFirst(prefix.count)) : self }
}
