import XMPPCore

extension Room {
    /// Errors that mean the occupant's client is gone (Prosody's is_kickable_error).
    static let kickable: Set<StanzaError.Condition> = [
        .gone, .internalServerError, .itemNotFound, .jidMalformed, .recipientUnavailable, .redirect,
        .remoteServerNotFound, .remoteServerTimeout, .serviceUnavailable,
    ]

    mutating func handleMessage(_ stanza: XMLElement, from real: JID, nick: String?, environment: RoomEnvironment)
        -> RoomEffects
    {
        var effects = RoomEffects()
        let type = stanza.type ?? "normal"
        if type == "error" {
            if index(real: real) != nil, stanza.stanzaError.map({ Self.kickable.contains($0.condition) }) ?? true {
                return leave(real, status: 333, environment: environment)
            }
            return effects
        }
        if nick == nil, type != "groupchat" {
            // To the room itself only invitations, declines and voice requests mean
            // something besides groupchat (as in Prosody); a muc#user payload that is
            // neither is a bad request, anything else a service the room does not offer.
            if type == "normal", let x = stanza.child("x", namespace: Namespace.mucUser) {
                let first = x.elements.first
                if first?.name == "decline", first?[attribute: "to"] != nil, let decline = x.child("decline", namespace: Namespace.mucUser) {
                    return self.decline(decline, from: real)
                }
                if first?.name == "invite", first?[attribute: "to"] != nil {
                    return invite(stanza, x: x, from: real, environment: environment)
                }
                effects.send(stanza.errorReply(StanzaError(.badRequest, type: .cancel, text: "neither an invitation nor a decline")))
                return effects
            }
            if type == "normal", let formElement = stanza.child("x", namespace: Namespace.dataForms), let form = DataForm(element: formElement),
                form.formType == Namespace.mucRequest
            {
                guard let sender = occupant(real: real) else {
                    effects.send(stanza.errorReply(StanzaError(.notAcceptable, type: .cancel, text: "you are not in this room")))
                    return effects
                }
                return voiceRequest(form, from: sender, environment: environment)
            }
            effects.send(
                stanza.errorReply(StanzaError(.serviceUnavailable, text: "a room takes groupchat messages, invitations and voice requests")))
            return effects
        }
        guard let sender = occupant(real: real) else {
            effects.send(
                stanza.errorReply(StanzaError(.notAcceptable, type: .cancel, text: "you are not in this room"))
            )
            return effects
        }
        if let nick {
            return privateMessage(stanza, from: sender, to: nick, type: type)
        }
        // Only voice speaks, subjects included (as Prosody checks the role first).
        if sender.role == .visitor {
            effects.send(stanza.errorReply(StanzaError(.forbidden, text: "you need voice to speak here")))
            return effects
        }
        // A subject alone changes it; with a body or a thread it is a message like any
        // other (XEP-0045 §8.1, as Prosody reads it).
        let subjectElement = stanza.child("subject")
        if let subjectElement, stanza.child("body") == nil, stanza.child("thread") == nil {
            let allowed = sender.role == .moderator || (configuration.changeSubject && sender.role.rank >= Role.participant.rank)
            guard allowed else {
                effects.send(stanza.errorReply(StanzaError(.forbidden, text: "you may not change the subject")))
                return effects
            }
            // The same subject from the same occupant changes nothing and says nothing.
            if subjectElement.text == subject, subjectNick == sender.nick { return effects }
            subject = subjectElement.text
            subjectNick = sender.nick
            subjectStamp = environment.now()
            effects.changes.append(.subject(subject, nick: sender.nick, stamp: subjectStamp ?? 0))
            // The room's notice of the new subject, not the sender's stanza (as Prosody).
            var notice = XMLElement("message", namespace: Namespace.client, ["type": "groupchat"])
            notice[attribute: "from"] = occupantJID(sender.nick).description
            notice.append(
                subject.isEmpty
                    ? XMLElement("subject", namespace: Namespace.client)
                    : XMLElement("subject", namespace: Namespace.client, text: subject))
            effects.broadcast(notice, to: occupants.map(\.realJID))
            return effects
        }
        var message = stanza
        message[attribute: "from"] = occupantJID(sender.nick).description
        message[attribute: "to"] = nil
        message.children.removeAll { child in
            if case .element(let element) = child {
                return (element.namespace == Namespace.stanzaID && element.name == "stanza-id")
                    || element.namespace == Namespace.occupantID
            }
            return false
        }
        message.append(XMLElement("occupant-id", namespace: Namespace.occupantID, ["id": sender.occupantID]))
        message.append(XMLElement("stanza-id", namespace: Namespace.stanzaID, ["id": environment.makeID(), "by": jid.description]))
        if configuration.historyLength > 0, stanza.child("body") != nil {
            let entry = HistoryEntry(message: message, stamp: environment.now(), senderNick: sender.nick)
            // Bounded by count and by bytes (`RoomLimits.historyBytes`), oldest first; a
            // message bigger than the whole bound is broadcast but not kept.
            if entry.bytes <= environment.limits.historyBytes {
                history.append(entry)
                let kept = Self.keptHistory(history, configuration: configuration, limits: environment.limits)
                history.removeFirst(history.count - kept.count)
                effects.changes.append(.history(entry))
            }
        }
        effects.broadcast(message, to: occupants.map(\.realJID))
        return effects
    }

    private func privateMessage(_ stanza: XMLElement, from sender: Occupant, to nick: String, type: String) -> RoomEffects {
        var effects = RoomEffects()
        guard type != "groupchat" else {
            effects.send(stanza.errorReply(StanzaError(.badRequest, text: "groupchat goes to the room")))
            return effects
        }
        let allowed: Bool
        switch configuration.allowPM {
        case .anyone: allowed = true
        case .participants: allowed = sender.role.rank >= Role.participant.rank
        case .moderators: allowed = sender.role == .moderator
        case .none: allowed = false
        }
        guard allowed else {
            effects.send(stanza.errorReply(StanzaError(.notAcceptable, type: .cancel, text: "private messages are not allowed here")))
            return effects
        }
        guard let target = occupant(nick: nick) else {
            effects.send(stanza.errorReply(StanzaError(.itemNotFound, text: "no such occupant")))
            return effects
        }
        var message = stanza
        message[attribute: "from"] = occupantJID(sender.nick).description
        message[attribute: "to"] = target.realJID.description
        message.children.removeAll {
            if case .element(let element) = $0 {
                return element.namespace == Namespace.mucUser || element.namespace == Namespace.occupantID
            }
            return false
        }
        message.append(XMLElement("x", namespace: Namespace.mucUser))
        // Who sent it, as in the room (XEP-0421 §4): after the <x/>, where Prosody puts it.
        message.append(XMLElement("occupant-id", namespace: Namespace.occupantID, ["id": sender.occupantID]))
        effects.send(message)
        return effects
    }

    /// Mediated invitations (XEP-0045 §7.8.2).
    private mutating func invite(_ stanza: XMLElement, x: XMLElement, from real: JID, environment: RoomEnvironment)
        -> RoomEffects
    {
        var effects = RoomEffects()
        let affiliation = self.affiliation(of: real, environment: environment)
        let sender = occupant(real: real)
        // Visitors, and those who would only be visitors, may not invite (as in Prosody).
        guard (sender?.role ?? defaultRole(for: affiliation)).rank > Role.visitor.rank else {
            effects.send(stanza.errorReply(StanzaError(.forbidden, text: "you may not invite here")))
            return effects
        }
        if configuration.membersOnly && !configuration.allowInvites && affiliation.rank < Affiliation.admin.rank {
            effects.send(stanza.errorReply(StanzaError(.forbidden, text: "only admins may invite here")))
            return effects
        }
        for invite in x.children("invite", namespace: Namespace.mucUser) {
            guard let toText = invite[attribute: "to"], let invitee = try? JID(toText) else {
                effects.send(stanza.errorReply(StanzaError(.jidMalformed)))
                continue
            }
            // An invitation into a members-only room stores an affiliation: it meets the
            // same limits as an admin's change (`RoomLimits`), checked before anything is sent.
            let makesMember =
                configuration.membersOnly && self.affiliation(of: invitee, environment: environment) == .none
            if makesMember, let error = refusal(ofNewAffiliation: invitee.bare, environment: environment) {
                effects.send(stanza.errorReply(error))
                continue
            }
            // The inviter's message goes on (its id, language and other payloads, as
            // Prosody passes it), its <x/> replaced by the room's.
            var message = stanza
            message.children.removeAll {
                if case .element(let element) = $0 { return element.namespace == Namespace.mucUser }
                return false
            }
            message[attribute: "from"] = jid.description
            message[attribute: "to"] = invitee.description
            var userX = XMLElement("x", namespace: Namespace.mucUser)
            // Semi-anonymous rooms do not give the inviter's address away, but to those
            // who would see it in the room anyway (moderators by affiliation; Prosody).
            let invitedSees = defaultRole(for: self.affiliation(of: invitee, environment: environment)) == .moderator
            let inviter = configuration.whois == .anyone || invitedSees || sender == nil ? real : occupantJID(sender!.nick)
            var element = XMLElement("invite", namespace: Namespace.mucUser, ["from": inviter.description])
            let reason = invite.child("reason", namespace: Namespace.mucUser)
            element.append(reason ?? XMLElement("reason", namespace: Namespace.mucUser))
            userX.append(element)
            if configuration.passwordProtected {
                userX.append(XMLElement("password", namespace: Namespace.mucUser, text: configuration.password))
            }
            message.append(userX)
            // For clients that do not know invitations, unless the inviter wrote one.
            if message.child("body") == nil {
                let because = reason.map { $0.text.isEmpty ? "" : " (\($0.text))" } ?? ""
                message.append(XMLElement("body", namespace: Namespace.client, text: "\(inviter) invited you to the room \(jid)\(because)"))
            }
            message.append(XMLElement("x", namespace: Namespace.conference, ["jid": jid.description], text: reason?.text ?? ""))
            effects.send(message)
            // An invitation to a members-only room makes an unaffiliated invitee a member
            // (§7.8.2), but never lifts a ban: only an admin's explicit change does that.
            // The outcast still gets the invitation, as in Prosody, so the inviter learns
            // nothing about the room's ban list; entering stays forbidden.
            if makesMember {
                let reason = "Invited by \(inviter)"
                effects.output += setAffiliation(
                    invitee.bare, to: .member, reason: reason, actor: sender, environment: environment
                ).output
                effects.changes.append(.affiliation(invitee.bare, AffiliationEntry(.member, reason: reason)))
            }
        }
        return effects
    }

    /// Why `bare` may not be given a new affiliation here, or `nil`: the address must be
    /// storable, and the room keeps at most `limits.affiliations` (the errors of muc#admin).
    private func refusal(ofNewAffiliation bare: JID, environment: RoomEnvironment) -> StanzaError? {
        if let error = environment.limits.refusal(storing: bare, in: jid) { return error }
        let limit = environment.limits.affiliations
        guard affiliations[bare] != nil || affiliations.count < limit else {
            return StanzaError(.resourceConstraint, text: "the room keeps at most \(limit) affiliations")
        }
        return nil
    }

    /// A declined invitation goes back to the inviter (§7.8.2).
    private func decline(_ decline: XMLElement, from real: JID) -> RoomEffects {
        var effects = RoomEffects()
        guard let toText = decline[attribute: "to"], let inviter = try? JID(toText) else { return effects }
        var message = XMLElement("message", namespace: Namespace.client, ["from": jid.description, "to": inviter.description])
        var element = XMLElement("decline", namespace: Namespace.mucUser, ["from": real.description])
        if let reason = decline.child("reason", namespace: Namespace.mucUser) { element.append(reason) }
        message.append(XMLElement("x", namespace: Namespace.mucUser, children: [element]))
        effects.send(message)
        return effects
    }

    /// A visitor asks for voice (§7.13): the moderators get a form; a moderator's
    /// approved form grants it (§8.6).
    private mutating func voiceRequest(_ form: DataForm, from sender: Occupant, environment: RoomEnvironment) -> RoomEffects {
        if sender.role == .moderator {
            guard form["muc#request_allow"]?.bool == true, let nick = form["muc#roomnick"]?.value,
                let target = occupant(nick: nick), target.role == .visitor
            else { return RoomEffects() }
            return setRole(nick, to: .participant, reason: nil, actor: sender, environment: environment)
        }
        var effects = RoomEffects()
        guard sender.role == .visitor else { return effects }
        let request = DataForm(
            type: "form",
            title: "Voice request",
            instructions: "To approve this request for voice, select the 'Grant voice to this person?' checkbox and submit.",
            fields: [
                .init("FORM_TYPE", type: "hidden", values: [Namespace.mucRequest]),
                .init("muc#jid", type: "jid-single", label: "User ID", values: [sender.realJID.description]),
                .init("muc#roomnick", type: "text-single", label: "Room Nickname", values: [sender.nick]),
                .init("muc#role", type: "list-single", label: "Requested role", values: ["participant"]),
                .init("muc#request_allow", type: "boolean", label: "Grant voice to this person?", values: ["0"]),
            ]
        )
        for moderator in occupants where moderator.role == .moderator {
            var message = XMLElement("message", namespace: Namespace.client, ["type": "normal", "from": jid.description])
            message[attribute: "to"] = moderator.realJID.description
            message.append(request.element)
            effects.send(message)
        }
        return effects
    }

    /// The newest entries of `history` a room keeps: at most `historyLength` of them,
    /// and at most `limits.historyBytes` bytes of content together (oldest dropped first).
    static func keptHistory(_ history: [HistoryEntry], configuration: RoomConfiguration, limits: RoomLimits)
        -> ArraySlice<HistoryEntry>
    {
        let counted = history.suffix(configuration.historyLength)
        var total = 0
        var start = counted.endIndex
        while start > counted.startIndex, total + counted[start - 1].bytes <= limits.historyBytes {
            total += counted[start - 1].bytes
            start -= 1
        }
        return counted[start...]
    }

    /// History for a joiner, limited by its `<history/>` request and the room's length
    /// and byte bound (history loaded from the store may predate a lower bound).
    func historyFor(_ join: XMLElement, to real: JID, environment: RoomEnvironment) -> [XMLElement] {
        let request = join.child("x", namespace: Namespace.muc)?.child("history", namespace: Namespace.muc)
        var entries = Self.keptHistory(history, configuration: configuration, limits: environment.limits)
        let asked = ["maxstanzas", "maxchars", "seconds", "since"].contains { request?[attribute: $0] != nil }
        if !asked { entries = entries.suffix(configuration.defaultHistoryMessages ?? 20) }
        if let text = request?[attribute: "maxstanzas"], let limit = Int(text) {
            entries = entries.suffix(Swift.max(0, limit))
        }
        if let text = request?[attribute: "seconds"], let seconds = Double(text) {
            let cutoff = environment.now() - seconds
            entries = entries.filter { $0.stamp >= cutoff }
        }
        if let text = request?[attribute: "since"], let since = Timestamp.parse(text) {
            entries = entries.filter { $0.stamp >= since }
        }
        if let text = request?[attribute: "maxchars"], let limit = Int(text) {
            var total = 0
            var kept: [HistoryEntry] = []
            for entry in entries.reversed() {
                total += entry.message.serialized(parentNamespace: Namespace.client).utf8.count
                if total > limit { break }
                kept.append(entry)
            }
            entries = ArraySlice(kept.reversed())
        }
        return entries.map { entry in
            var message = entry.message
            message[attribute: "to"] = real.description
            message.append(
                XMLElement("delay", namespace: Namespace.delay, ["from": jid.description, "stamp": Timestamp.format(entry.stamp)])
            )
            return message
        }
    }
}

/// XEP-0082 date-time stamps, UTC, without Foundation.
public enum Timestamp {
    public static func format(_ seconds: Double) -> String {
        let totalMillis = Int((seconds * 1000).rounded())
        let total = totalMillis >= 0 ? totalMillis / 1000 : (totalMillis - 999) / 1000
        let fraction = totalMillis - total * 1000
        let days = total >= 0 ? total / 86400 : (total - 86399) / 86400
        let secondsOfDay = total - days * 86400
        let (year, month, day) = civil(days: days)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let millis = fraction < 10 ? "00\(fraction)" : fraction < 100 ? "0\(fraction)" : "\(fraction)"
        return "\(year)-\(two(month))-\(two(day))T\(two(secondsOfDay / 3600)):\(two(secondsOfDay / 60 % 60)):\(two(secondsOfDay % 60)).\(millis)Z"
    }

    /// Parses `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`.
    public static func parse(_ text: String) -> Double? {
        let characters = Array(text.utf8)
        func number(_ start: Int, _ length: Int) -> Int? {
            guard start + length <= characters.count else { return nil }
            var value = 0
            for byte in characters[start..<(start + length)] {
                guard byte >= 48 && byte <= 57 else { return nil }
                value = value * 10 + Int(byte - 48)
            }
            return value
        }
        guard characters.count >= 20, let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
            let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2)
        else { return nil }
        var index = 19
        var fraction = 0.0
        if index < characters.count, characters[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            while index < characters.count, characters[index] >= 48, characters[index] <= 57 {
                fraction += Double(characters[index] - 48) * scale
                scale /= 10
                index += 1
            }
        }
        var offset = 0
        if index < characters.count, characters[index] != UInt8(ascii: "Z") {
            guard let hours = number(index + 1, 2), let minutes = number(index + 4, 2) else { return nil }
            offset = (hours * 60 + minutes) * 60 * (characters[index] == UInt8(ascii: "-") ? -1 : 1)
        }
        let days = daysFromCivil(year: year, month: month, day: day)
        return Double(days * 86400 + hour * 3600 + minute * 60 + second - offset) + fraction
    }

    static func civil(days: Int) -> (Int, Int, Int) {
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }
}
