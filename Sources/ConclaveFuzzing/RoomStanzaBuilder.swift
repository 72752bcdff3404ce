import XMPPCore
import XMPPXMLParser

/// Builds the stanzas an occupant (or a stranger) could send to a room, from the fuzz
/// input: every kind of stanza XEP-0045 handles, with values from the input.
struct RoomStanzaBuilder {
    let room: JID
    /// Real JIDs the stanzas may name (invitees, affiliation targets).
    let people: [JID]

    static let templateCount = 24

    /// Nicks worth trying: the cast's, look-alikes of them, and anything else.
    static let nicks = [
        "Romeo", "romeo", "Ｒｏｍｅｏ", "Romeo ", "Rom\u{200B}eo", "Juliet", "Mercutio", "Mallory", "Nurse", "ROMEO",
        "\u{202E}oemoR", "ﬁ", "❤", "❤️", "日本", "ΣΑΣ", "σας",
    ]

    static let configurationFields = [
        "FORM_TYPE", "muc#roomconfig_roomname", "muc#roomconfig_roomdesc", "muc#roomconfig_lang",
        "muc#roomconfig_persistentroom", "muc#roomconfig_publicroom", "muc#roomconfig_membersonly",
        "muc#roomconfig_moderatedroom", "muc#roomconfig_passwordprotectedroom", "muc#roomconfig_roomsecret",
        "muc#roomconfig_whois", "muc#roomconfig_changesubject", "muc#roomconfig_allowinvites",
        "muc#roomconfig_allowpm", "muc#roomconfig_maxusers", "muc#roomconfig_presencebroadcast",
        "muc#roomconfig_getmemberlist", "muc#roomconfig_historylength", "muc#roomconfig_enablelogging",
    ]

    static let configurationValues = [
        "0", "1", "true", "false", "", "none", "anyone", "moderators", "participants", "moderator", "participant",
        "visitor", "2", "1", "0", "-3", "secret", "en", Namespace.mucRoomConfig, "http://jabber.org/protocol/muc#foo",
    ]

    static let affiliations = ["owner", "admin", "member", "none", "outcast", "Owner", ""]
    static let roles = ["moderator", "participant", "visitor", "none", "Moderator", ""]

    /// The stanza for template `template`, sent by `sender` whose nick in the room (if
    /// in it) is `currentNick`.
    func stanza(_ template: Int, from sender: JID, currentNick: String?, _ input: inout FuzzInput) -> XMLElement? {
        switch template {
        case 0, 1, 2:
            return join(sender, &input)
        case 3:
            // A presence update, or a nick change when the nick differs.
            var presence = presence(from: sender, to: input.bool() ? currentNick ?? nick(&input) : nick(&input))
            if input.bool() {
                presence.append(
                    XMLElement(
                        "show", namespace: Namespace.client, text: input.pick(["away", "dnd", "xa", "chat", "bogus"])))
            }
            if input.bool() { presence.append(XMLElement("status", namespace: Namespace.client, text: input.text())) }
            return presence
        case 4:
            var presence = presence(from: sender, to: input.bool() ? currentNick ?? nick(&input) : nick(&input))
            presence.type = "unavailable"
            if input.bool() { presence.append(XMLElement("status", namespace: Namespace.client, text: input.text())) }
            return presence
        case 5, 6:
            var message = message(
                from: sender, to: nil, type: input.pick(["groupchat", "groupchat", "chat", "normal", "headline"]))
            if input.bool() { message.id = input.text() }
            message.append(XMLElement("body", namespace: Namespace.client, text: input.text()))
            if input.bool() { message.append(extraPayload(&input)) }
            return message
        case 7:
            var message = message(
                from: sender, to: nick(&input), type: input.pick(["chat", "groupchat", "normal", "bogus"]))
            message.append(XMLElement("body", namespace: Namespace.client, text: input.text()))
            if input.bool() { message.append(XMLElement("x", namespace: Namespace.mucUser)) }
            return message
        case 8:
            var message = message(from: sender, to: nil, type: "groupchat")
            message.append(XMLElement("subject", namespace: Namespace.client, text: input.text()))
            if input.byte() % 4 == 0 {
                message.append(XMLElement("body", namespace: Namespace.client, text: input.text()))
            }
            return message
        case 9, 10:
            return configurationSubmit(from: sender, &input)
        case 11:
            return iq(
                input.pick(["get", "set"]), from: sender, payload: XMLElement("query", namespace: Namespace.mucOwner))
        case 12, 13:
            return adminSet(from: sender, &input)
        case 14:
            let attribute =
                input.bool() ? ("affiliation", input.pick(Self.affiliations)) : ("role", input.pick(Self.roles))
            var item = XMLElement("item", namespace: Namespace.mucAdmin)
            item[attribute: attribute.0] = attribute.1
            return iq(
                "get", from: sender, payload: XMLElement("query", namespace: Namespace.mucAdmin, children: [item]))
        case 15:
            return invite(from: sender, &input)
        case 16:
            return register(from: sender, &input)
        case 17:
            var destroy = XMLElement("destroy", namespace: Namespace.mucOwner)
            if input.bool() { destroy[attribute: "jid"] = input.text() }
            if input.bool() { destroy.append(XMLElement("reason", namespace: Namespace.mucOwner, text: input.text())) }
            if input.bool() {
                destroy.append(XMLElement("password", namespace: Namespace.mucOwner, text: input.text()))
            }
            return iq(
                "set", from: sender, payload: XMLElement("query", namespace: Namespace.mucOwner, children: [destroy]))
        case 18:
            let payload: XMLElement
            switch input.byte() % 4 {
            case 0: payload = XMLElement("query", namespace: Namespace.discoInfo)
            case 1: payload = XMLElement("query", namespace: Namespace.discoInfo, ["node": "x-roomuser-item"])
            case 2: payload = XMLElement("query", namespace: Namespace.discoItems)
            default: payload = XMLElement("ping", namespace: Namespace.ping)
            }
            return iq(input.pick(["get", "get", "set"]), from: sender, payload: payload)
        case 19:
            return voiceRequest(from: sender, &input)
        case 20:
            // An IQ to an occupant: forwarded, answered (self-ping), or an answer coming back.
            let type = input.pick(["get", "set", "result", "error"])
            var iq = iq(
                type, from: sender, to: nick(&input),
                payload: input.bool()
                    ? XMLElement("ping", namespace: Namespace.ping) : XMLElement("vCard", namespace: "vcard-temp"))
            if type == "result" || type == "error" {
                iq.id = input.pick([
                    "muc~" + Base64.encode(people[input.below(people.count)].description) + "~" + input.text(),
                    input.text(),
                ])
            }
            return iq
        case 21:
            // The client's side bounced something: an error presence or message.
            var stanza =
                input.bool()
                ? presence(from: sender, to: input.bool() ? currentNick : nil)
                : message(from: sender, to: nil, type: nil)
            stanza.type = "error"
            if input.bool() {
                let condition = input.pick([
                    StanzaError.Condition.gone, .forbidden, .itemNotFound, .resourceConstraint, .notAcceptable,
                ])
                stanza.append(StanzaError(condition).element)
            }
            return stanza
        case 22:
            var presence = presence(from: sender, to: input.bool() ? nick(&input) : nil)
            presence.type = input.pick(["probe", "subscribe", "bogus"])
            return presence
        default:
            return arbitrary(from: sender, &input)
        }
    }

    func nick(_ input: inout FuzzInput) -> String {
        input.byte() % 4 == 0 ? input.text() : input.pick(Self.nicks)
    }

    func person(_ input: inout FuzzInput) -> String {
        switch input.byte() % 4 {
        case 0: input.text()
        case 1: people[input.below(people.count)].description
        default: people[input.below(people.count)].bare.description
        }
    }

    func address(_ nick: String?) -> String {
        nick.map { room.description + "/" + $0 } ?? room.description
    }

    func presence(from sender: JID, to nick: String?) -> XMLElement {
        XMLElement("presence", namespace: Namespace.client, ["from": sender.description, "to": address(nick)])
    }

    func message(from sender: JID, to nick: String?, type: String?) -> XMLElement {
        var message = XMLElement(
            "message", namespace: Namespace.client, ["from": sender.description, "to": address(nick)])
        message.type = type
        return message
    }

    func iq(_ type: String, from sender: JID, to nick: String? = nil, payload: XMLElement) -> XMLElement {
        XMLElement(
            "iq", namespace: Namespace.client,
            ["from": sender.description, "to": address(nick), "type": type, "id": "q1"],
            children: [payload]
        )
    }

    func join(_ sender: JID, _ input: inout FuzzInput) -> XMLElement {
        var presence = presence(from: sender, to: nick(&input))
        var x = XMLElement("x", namespace: Namespace.muc)
        if input.bool() {
            x.append(XMLElement("password", namespace: Namespace.muc, text: input.bool() ? "secret" : input.text()))
        }
        if input.bool() {
            var history = XMLElement("history", namespace: Namespace.muc)
            for name in ["maxstanzas", "maxchars", "seconds", "since"] where input.byte() % 3 == 0 {
                history[attribute: name] = input.text()
            }
            x.append(history)
        }
        presence.append(x)
        if input.bool() { presence.append(XMLElement("status", namespace: Namespace.client, text: input.text())) }
        if input.byte() % 4 == 0 { presence.append(extraPayload(&input)) }
        return presence
    }

    /// Something a client may add to any stanza: foreign namespaces, prefixed attributes,
    /// MUC payloads the room strips or must not trust.
    func extraPayload(_ input: inout FuzzInput) -> XMLElement {
        switch input.byte() % 6 {
        case 0:
            return XMLElement(
                name: "flagged", namespace: input.pick(["urn:example", "http://example.com/#x", ""]),
                attributes: [
                    XMLAttribute(name: "p:flag", value: input.text(), namespace: "urn:p"),
                    XMLAttribute(name: "xml:lang", value: "en"),
                ]
            )
        case 1:
            return XMLElement("occupant-id", namespace: Namespace.occupantID, ["id": input.text()])
        case 2:
            return XMLElement("stanza-id", namespace: Namespace.stanzaID, ["id": input.text(), "by": room.description])
        case 3:
            return XMLElement(
                "x", namespace: Namespace.mucUser,
                children: [
                    XMLElement("item", namespace: Namespace.mucUser, ["affiliation": "owner", "role": "moderator"])
                ])
        case 4:
            return XMLElement("error", namespace: "http://etherx.jabber.org/streams", text: input.text())
        default:
            return XMLElement("delay", namespace: Namespace.delay, ["stamp": input.text()])
        }
    }

    func configurationSubmit(from sender: JID, _ input: inout FuzzInput) -> XMLElement {
        var fields: [DataForm.Field] = []
        if input.byte() % 4 != 0 { fields.append(.init("FORM_TYPE", values: [Namespace.mucRoomConfig])) }
        for _ in 0..<input.below(7) {
            let variable = input.pick(Self.configurationFields)
            var values: [String] = []
            for _ in 0..<input.below(3) {
                values.append(
                    input.bool() ? input.pick(Self.configurationValues) : input.text(Self.configurationValues))
            }
            fields.append(.init(variable, values: values))
        }
        let type = input.byte() % 8 == 0 ? input.pick(["cancel", "form", "result", ""]) : "submit"
        let form = DataForm(type: type, fields: fields)
        return iq(
            "set", from: sender, payload: XMLElement("query", namespace: Namespace.mucOwner, children: [form.element]))
    }

    func adminSet(from sender: JID, _ input: inout FuzzInput) -> XMLElement {
        var items: [XMLElement] = []
        for _ in 0..<(input.byte() % 4) {
            var item = XMLElement("item", namespace: Namespace.mucAdmin)
            if input.byte() % 3 != 0 {
                item[attribute: "affiliation"] = input.pick(Self.affiliations)
                if input.byte() % 8 != 0 { item[attribute: "jid"] = person(&input) }
            } else {
                item[attribute: "role"] = input.pick(Self.roles)
                if input.byte() % 8 != 0 { item[attribute: "nick"] = nick(&input) }
            }
            if input.bool() { item.append(XMLElement("reason", namespace: Namespace.mucAdmin, text: input.text())) }
            items.append(item)
        }
        return iq("set", from: sender, payload: XMLElement("query", namespace: Namespace.mucAdmin, children: items))
    }

    func invite(from sender: JID, _ input: inout FuzzInput) -> XMLElement {
        var message = message(from: sender, to: nil, type: nil)
        if input.bool() { message.id = input.text() }
        var x = XMLElement("x", namespace: Namespace.mucUser)
        let name = input.byte() % 4 == 0 ? "decline" : "invite"
        for _ in 0..<(1 + input.byte() % 2) {
            var element = XMLElement(name, namespace: Namespace.mucUser)
            if input.byte() % 8 != 0 { element[attribute: "to"] = person(&input) }
            if input.bool() { element.append(XMLElement("reason", namespace: Namespace.mucUser, text: input.text())) }
            x.append(element)
        }
        message.append(x)
        return message
    }

    func register(from sender: JID, _ input: inout FuzzInput) -> XMLElement {
        var query = XMLElement("query", namespace: Namespace.register)
        let type = input.byte() % 4 == 0 ? "get" : "set"
        if type == "set" {
            if input.byte() % 4 == 0 {
                query.append(XMLElement("remove", namespace: Namespace.register))
            } else {
                var fields: [DataForm.Field] = []
                if input.byte() % 4 != 0 {
                    fields.append(.init("FORM_TYPE", values: ["http://jabber.org/protocol/muc#register"]))
                }
                if input.byte() % 4 != 0 { fields.append(.init("muc#register_roomnick", values: [nick(&input)])) }
                query.append(DataForm(type: "submit", fields: fields).element)
            }
        }
        return iq(type, from: sender, payload: query)
    }

    func voiceRequest(from sender: JID, _ input: inout FuzzInput) -> XMLElement {
        var message = message(from: sender, to: nil, type: input.bool() ? nil : "normal")
        var fields: [DataForm.Field] = [.init("FORM_TYPE", values: [Namespace.mucRequest])]
        if input.bool() {
            fields.append(.init("muc#role", values: ["participant"]))
        } else {
            fields.append(.init("muc#request_allow", values: [input.pick(["1", "true", "0", ""])]))
            fields.append(.init("muc#roomnick", values: [nick(&input)]))
        }
        message.append(DataForm(type: "submit", fields: fields).element)
        return message
    }

    /// Bytes from the input parsed as a stanza (when they parse), addressed to the room
    /// from `sender`, as a client's server would stamp them.
    func arbitrary(from sender: JID, _ input: inout FuzzInput) -> XMLElement? {
        let bytes = input.bytes(Int(input.byte()) * 2)
        guard let stanza = try? StanzaText.parse(String(decoding: bytes, as: UTF8.self), options: .init()).first else {
            return nil
        }
        var copy = stanza
        copy[attribute: "from"] = sender.description
        if (try? copy.toJID())??.bare != room {
            copy[attribute: "to"] = address(input.bool() ? nick(&input) : nil)
        }
        return copy
    }
}
