import XMPPCore

extension Room {
    // MARK: - Building occupant presence

    /// The presence of `occupant` as `recipient` sees it.
    func presence(
        of occupant: Occupant,
        to recipient: JID,
        recipientRole: Role,
        type: String? = nil,
        codes: [Int] = [],
        isSelf: Bool = false,
        selfStatus: Bool = true,
        newNick: String? = nil,
        actor: Occupant? = nil,
        reason: String? = nil,
        environment: RoomEnvironment,
        leading: [XMLElement] = []
    ) -> XMLElement {
        var presence = XMLElement("presence", namespace: Namespace.client)
        presence[attribute: "from"] = occupantJID(occupant.nick).description
        presence[attribute: "to"] = recipient.description
        if let type { presence[attribute: "type"] = type }
        // The occupant's own status and show, for an available presence or the
        // unavailable one it sent itself.
        if type == nil || occupant.presence.type == type {
            // As the client sent it: its id and language too (Prosody's copies keep them).
            for attribute in occupant.presence.attributes where !["from", "to", "type"].contains(attribute.name) {
                presence.attributes.append(attribute)
            }
            presence.children.append(contentsOf: occupant.presence.children)
        }
        // The unavailable half of a nick change is, to the occupant itself, the room's own
        // notice: no occupant id there (others get it, as from Prosody).
        if newNick == nil || type != "unavailable" || !isSelf {
            presence.append(XMLElement("occupant-id", namespace: Namespace.occupantID, ["id": occupant.occupantID]))
        }
        var x = XMLElement("x", namespace: Namespace.mucUser)
        for element in leading { x.append(element) }
        for code in codes { x.append(status(code)) }
        var item = XMLElement("item", namespace: Namespace.mucUser)
        item[attribute: "affiliation"] = affiliation(of: occupant.realJID, environment: environment).rawValue
        item[attribute: "role"] = occupant.role.rawValue
        if isSelf || configuration.whois == .anyone || recipientRole == .moderator {
            item[attribute: "jid"] = occupant.realJID.description
        }
        if let newNick { item[attribute: "nick"] = newNick }
        if let actor {
            // An actor no longer in the room (who kicked itself) has no nick to show.
            var actorElement = XMLElement("actor", namespace: Namespace.mucUser)
            if !actor.nick.isEmpty { actorElement[attribute: "nick"] = actor.nick }
            if !isSelf, configuration.whois == .anyone || recipientRole == .moderator {
                actorElement[attribute: "jid"] = actor.realJID.description
            }
            if !actorElement.attributes.isEmpty { item.append(actorElement) }
        }
        if let reason { item.append(XMLElement("reason", namespace: Namespace.mucUser, text: reason)) }
        x.append(item)
        if isSelf && selfStatus { x.append(status(110)) }
        presence.append(x)
        return presence
    }

    func status(_ code: Int) -> XMLElement {
        XMLElement("status", namespace: Namespace.mucUser, ["code": String(code)])
    }

    /// Sends `occupant`'s presence to everyone in the room (the occupant itself with 110).
    func broadcastPresence(
        of occupant: Occupant,
        type: String? = nil,
        codes: [Int] = [],
        newNick: String? = nil,
        actor: Occupant? = nil,
        reason: String? = nil,
        selfCodes: [Int]? = nil,
        leading: [XMLElement] = [],
        previousRole: Role? = nil,
        into effects: inout RoomEffects,
        environment: RoomEnvironment
    ) {
        // Others see the presence of roles the room broadcasts; one whose role left those
        // (or who left with such a role) is seen going unavailable (as in Prosody).
        let shown = configuration.presenceBroadcast.contains(occupant.role)
        let wasShown = previousRole.map { configuration.presenceBroadcast.contains($0) } ?? false
        let othersType = shown ? type : "unavailable"
        if shown || wasShown {
            // One stanza for those who see real JIDs, one for those who do not: each a
            // broadcast (serialized once downstream), not a copy per recipient.
            var seeing: [JID] = []
            var notSeeing: [JID] = []
            for recipient in occupants where recipient.realJID != occupant.realJID {
                if configuration.whois == .anyone || recipient.role == .moderator {
                    seeing.append(recipient.realJID)
                } else {
                    notSeeing.append(recipient.realJID)
                }
            }
            for (recipients, role) in [(seeing, Role.moderator), (notSeeing, Role.participant)] {
                guard let first = recipients.first else { continue }
                var stanza = presence(
                    of: occupant, to: first, recipientRole: role, type: othersType, codes: codes,
                    newNick: newNick, actor: actor, reason: reason, environment: environment, leading: leading
                )
                stanza[attribute: "to"] = nil
                effects.broadcast(stanza, to: recipients)
            }
        }
        effects.send(
            presence(
                of: occupant, to: occupant.realJID, recipientRole: occupant.role, type: type, codes: selfCodes ?? codes,
                isSelf: true, newNick: newNick, actor: actor, reason: reason, environment: environment, leading: leading
            )
        )
    }

    // MARK: - Presence input

    mutating func handlePresence(
        _ stanza: XMLElement, from real: JID, nick: String?, environment: RoomEnvironment, isNew: Bool
    ) -> RoomEffects {
        var effects = RoomEffects()
        let type = stanza.type
        if type == "error" {
            // An occupant's client bounced something: it is gone, for a technical
            // reason (333, XEP-0045 §7.14 and XEP-0410).
            if index(real: real) != nil { return leave(real, status: 333, environment: environment) }
            return effects
        }
        guard let nick, !nick.isEmpty else {
            if let occupant = occupant(real: real) {
                // An occupant's presence to the room itself is one to its own nick (an
                // update, a probe, a leave), as Prosody takes it.
                var addressed = stanza
                addressed[attribute: "to"] = occupantJID(occupant.nick).description
                return handlePresence(addressed, from: real, nick: occupant.nick, environment: environment, isNew: false)
            }
            if type != "unavailable" {
                // A presence to the room itself, not to a nick in it: as Prosody answers.
                effects.send(
                    stanza.errorReply(StanzaError(.serviceUnavailable, text: "join the room with a nickname"))
                )
            }
            return effects
        }
        if type == "unavailable" {
            guard index(real: real) != nil else { return effects }
            return leave(real, status: nil, environment: environment, leavingPresence: stanza)
        }
        if type == "probe" { return probe(stanza, from: real, nick: nick, environment: environment) }
        guard type == nil else { return effects }
        if index(real: real) == nil, !isNew, stanza.child("x", namespace: Namespace.muc) == nil {
            // Not a join (no <x/>): a client that thinks it is still inside. As Prosody.
            effects.send(
                stanza.errorReply(StanzaError(.itemNotFound, text: "you are not currently connected to this chat"))
            )
            return effects
        }
        // The nick must be one (RFC 8266) before anything else is looked at, as in Prosody.
        let enforced: Nickname
        do {
            enforced = try Nickname(nick)
        } catch {
            var reply = stanza.errorReply(error.stanzaError)
            if index(real: real) == nil { reply.append(XMLElement("x", namespace: Namespace.muc)) }
            effects.send(reply)
            return effects
        }
        if let position = index(real: real) {
            // Every update goes to everyone in the room: bounded per occupant (`RoomLimits`).
            let limits = environment.limits
            guard takePresenceToken(real, environment: environment) else {
                let text = "at most \(limits.presenceUpdatesPerSecond) presence updates a second"
                effects.send(stanza.errorReply(StanzaError(.policyViolation, type: .wait, text: text)))
                return effects
            }
            // A join (<x/>) from someone already inside: its client lost track of the
            // room (a missed disconnect, XEP-0410). As Prosody, it gets the room again —
            // the others' presence before its own, then history and subject.
            let rejoining = stanza.child("x", namespace: Namespace.muc) != nil
            let others = rejoining ? occupantList(for: occupants[position], environment: environment) : []
            if occupants[position].nick == enforced.value {
                occupants[position].setPresence(stanza)
                effects.output += others.map(RoomDelivery.single)
                broadcastPresence(of: occupants[position], into: &effects, environment: environment)
            } else {
                effects = changeNick(stanza, at: position, to: enforced.value, environment: environment)
                if effects.stanzas.contains(where: { $0.type == "error" }) { return effects }
                // The others' presence comes between its 303 and its new presence (as Prosody's).
                let own = effects.output.firstIndex {
                    guard case .single(let stanza) = $0 else { return false }
                    return stanza.name == "presence" && stanza.type == nil && stanza[attribute: "to"] == real.description
                } ?? effects.output.endIndex
                effects.output.insert(contentsOf: others.map(RoomDelivery.single), at: own)
            }
            if rejoining {
                effects.output += historyFor(stanza, to: real, environment: environment).map(RoomDelivery.single)
                effects.send(subjectMessage(to: real))
            }
            return effects
        }
        return join(
            stanza, from: real, nick: enforced.value, modified: enforced.value != nick, environment: environment,
            isNew: isNew
        )
    }

    /// Takes one of `real`'s presence updates; `false` when it has none left now.
    private mutating func takePresenceToken(_ real: JID, environment: RoomEnvironment) -> Bool {
        if presenceBudgets[real] == nil, presenceBudgets.count > 2 * occupants.count + 16 {
            // Kept across leaving and joining again (or that would reset it), so dropped
            // only for those who are gone, once there are many more than occupants.
            let present = Set(occupants.map(\.realJID))
            presenceBudgets = presenceBudgets.filter { present.contains($0.key) }
        }
        let limits = environment.limits
        return presenceBudgets[real, default: TokenBucket()].take(
            now: environment.now(), rate: Double(limits.presenceUpdatesPerSecond),
            burst: Double(limits.presenceUpdateBurst)
        )
    }

    /// A presence probe to an occupant JID answers with that occupant's presence as
    /// the prober sees it (or, for a nick reserved by someone absent, unavailable).
    private func probe(_ stanza: XMLElement, from real: JID, nick: String, environment: RoomEnvironment) -> RoomEffects {
        var effects = RoomEffects()
        guard let prober = occupant(real: real) else {
            effects.send(
                stanza.errorReply(StanzaError(.notAcceptable, type: .cancel, text: "you are not currently connected to this chat"))
            )
            return effects
        }
        if let probed = occupant(nick: nick) {
            effects.send(
                // One's own presence shows the real JID, but it is an answer, not a
                // status change: no 110 (as Prosody).
                presence(
                    of: probed, to: real, recipientRole: prober.role, isSelf: probed.realJID == real, selfStatus: false,
                    environment: environment)
            )
        } else if let holder = reservation(of: nick) {
            // From the nick as reserved, as an occupant's answer is from the nick in use.
            let nick = affiliations[holder]?.nick ?? nick
            var presence = XMLElement("presence", namespace: Namespace.client, ["type": "unavailable"])
            presence[attribute: "from"] = occupantJID(nick).description
            presence[attribute: "to"] = real.description
            var item = XMLElement(
                "item", namespace: Namespace.mucUser,
                ["affiliation": (affiliations[holder]?.affiliation ?? .none).rawValue, "role": "none", "nick": nick]
            )
            if configuration.whois == .anyone || prober.role == .moderator { item[attribute: "jid"] = holder.description }
            presence.append(XMLElement("x", namespace: Namespace.mucUser, children: [item]))
            effects.send(presence)
        }
        return effects
    }

    /// `nick` is enforced already; `modified`: it differs from the one asked for (210).
    private mutating func join(
        _ stanza: XMLElement, from real: JID, nick: String, modified: Bool, environment: RoomEnvironment, isNew: Bool
    ) -> RoomEffects {
        var effects = RoomEffects()
        func refuse(_ error: StanzaError) -> RoomEffects {
            var reply = stanza.errorReply(error)
            reply.append(XMLElement("x", namespace: Namespace.muc))
            effects.send(reply)
            return effects
        }
        func refuse(_ condition: StanzaError.Condition, _ text: String? = nil) -> RoomEffects {
            refuse(StanzaError(condition, text: text))
        }
        // Nothing the store would refuse: a room name, nick or address too long.
        let limits = environment.limits
        if isNew, let error = limits.refusal(creating: jid) { return refuse(error) }
        if let error = limits.refusal(nick: nick) ?? limits.refusal(storing: real, in: jid) { return refuse(error) }
        if isNew {
            affiliations[real.bare] = AffiliationEntry(.owner)
            // The room speaks its creator's language until configured otherwise (as
            // Prosody's rooms do); a tag longer than any real one is not taken.
            if let language = stanza[attribute: "xml:lang"], language.utf8.count <= 35 {
                configuration.language = language
            }
            // A password in the creating join protects the new room with it (Prosody).
            if let password = stanza.child("x", namespace: Namespace.muc)?.child("password", namespace: Namespace.muc)?.text,
                !password.isEmpty, limits.refusal(configurationField: "muc#roomconfig_roomsecret", value: password) == nil
            {
                configuration.password = password
            }
            effects.changes.append(.created(configuration))
            effects.changes.append(.affiliation(real.bare, AffiliationEntry(.owner)))
        }
        let affiliation = self.affiliation(of: real, environment: environment)
        // The checks in Prosody's order (so that each refusal is the one it gives): a nick
        // reserved by someone else, members only (outcasts included), banned, password
        // (owners too), locked, then a nick in use.
        if let holder = reservation(of: nick), holder != real.bare {
            return refuse(.conflict, "that nickname is reserved")
        }
        if configuration.membersOnly && affiliation.rank < Affiliation.member.rank {
            return refuse(.registrationRequired, "this room is members-only")
        }
        if affiliation == .outcast { return refuse(.forbidden, "you are banned from this room") }
        if configuration.passwordProtected && !isNew {
            let given = stanza.child("x", namespace: Namespace.muc)?.child("password", namespace: Namespace.muc)?.text
            guard given == configuration.password else { return refuse(.notAuthorized, "a password is required") }
        }
        if locked && !isNew {
            // The service answers for a room that is not open yet (as for one that does not
            // exist), to anyone but its creator's first entry, owners too (as Prosody).
            return refuse(StanzaError(.itemNotFound, text: "this room is locked until its owner configures it", by: jid.domain))
        }
        if let other = occupant(nick: nick), other.realJID.bare != real.bare {
            return refuse(.conflict, "that nickname is in use")
        }
        if let max = configuration.maxUsers, occupants.count >= max, affiliation.rank < Affiliation.admin.rank {
            return refuse(.serviceUnavailable, "the room is full")
        }
        let occupant = Occupant(
            nick: nick, realJID: real, role: defaultRole(for: affiliation), presence: stanza,
            occupantID: environment.occupantID(jid, real.bare)
        )
        // Existing occupants first, then the newcomer's own presence.
        effects.output += occupantList(for: occupant, environment: environment).map(RoomDelivery.single)
        occupants.append(occupant)
        var selfCodes: [Int] = []
        if configuration.whois == .anyone { selfCodes.append(100) }
        if configuration.logging { selfCodes.append(170) }
        if isNew { selfCodes.append(201) }
        // The profile changed the nick asked for (spaces, fullwidth letters): XEP-0045 §7.2.9.
        if modified { selfCodes.append(210) }
        broadcastPresence(of: occupant, selfCodes: selfCodes, into: &effects, environment: environment)
        effects.output += historyFor(stanza, to: real, environment: environment).map(RoomDelivery.single)
        effects.send(subjectMessage(to: real))
        return effects
    }

    /// The presence of everyone else in the room, as `occupant` sees it (on entering).
    /// Admins and owners see real JIDs in it whatever their role (as Prosody lists).
    func occupantList(for occupant: Occupant, environment: RoomEnvironment) -> [XMLElement] {
        let seesJIDs = affiliation(of: occupant.realJID, environment: environment).rank >= Affiliation.admin.rank
        return occupants.filter { $0.realJID != occupant.realJID && configuration.presenceBroadcast.contains($0.role) }.map {
            presence(of: $0, to: occupant.realJID, recipientRole: seesJIDs ? .moderator : occupant.role, environment: environment)
        }
    }

    private mutating func changeNick(
        _ stanza: XMLElement, at position: Int, to nick: String, environment: RoomEnvironment
    ) -> RoomEffects {
        var effects = RoomEffects()
        let real = occupants[position].realJID
        if let error = environment.limits.refusal(nick: nick) {
            effects.send(stanza.errorReply(error))
            return effects
        }
        if let other = occupant(nick: nick), other.realJID.bare != real.bare {
            effects.send(stanza.errorReply(StanzaError(.conflict, text: "that nickname is in use")))
            return effects
        }
        if let holder = reservation(of: nick), holder != real.bare {
            effects.send(stanza.errorReply(StanzaError(.conflict, text: "that nickname is reserved")))
            return effects
        }
        let old = occupants[position]
        broadcastPresence(of: old, type: "unavailable", codes: [303], newNick: nick, into: &effects, environment: environment)
        occupants[position].nick = nick
        occupants[position].setPresence(stanza)
        broadcastPresence(of: occupants[position], into: &effects, environment: environment)
        return effects
    }

    /// The occupant `real` leaves (on its own, or removed with `status`).
    mutating func leave(
        _ real: JID,
        status: Int?,
        actor: Occupant? = nil,
        reason: String? = nil,
        environment: RoomEnvironment,
        leavingPresence: XMLElement? = nil
    ) -> RoomEffects {
        var effects = RoomEffects()
        guard let position = index(real: real) else { return effects }
        var occupant = occupants[position]
        let previousRole = occupant.role
        occupant.role = .none
        if let leavingPresence { occupant.setPresence(leavingPresence) }
        let codes = status.map { [$0] } ?? []
        occupants[position] = occupant
        broadcastPresence(
            of: occupant, type: "unavailable", codes: codes, actor: actor, reason: reason, previousRole: previousRole,
            into: &effects, environment: environment
        )
        occupants.remove(at: position)
        if occupants.isEmpty && !configuration.persistent {
            effects.roomEnded = true
            effects.changes.append(.destroyed)
        }
        return effects
    }

    /// The subject message sent last on join (XEP-0045 §7.2.15), possibly empty.
    func subjectMessage(to real: JID) -> XMLElement {
        var message = XMLElement("message", namespace: Namespace.client, ["type": "groupchat"])
        message[attribute: "from"] = (subjectNick.map { occupantJID($0) } ?? jid).description
        message[attribute: "to"] = real.description
        message.append(
            subject.isEmpty
                ? XMLElement("subject", namespace: Namespace.client)
                : XMLElement("subject", namespace: Namespace.client, text: subject)
        )
        if let subjectStamp {
            message.append(
                XMLElement("delay", namespace: Namespace.delay, ["from": jid.description, "stamp": Timestamp.format(subjectStamp)])
            )
        }
        return message
    }
}
