import XMPPCore

extension Room {
    mutating func handleIQ(_ iq: XMLElement, from real: JID, nick: String?, environment: RoomEnvironment) -> RoomEffects {
        var effects = RoomEffects()
        let type = iq.type ?? ""
        if let nick { return occupantIQ(iq, from: real, to: nick) }
        guard type == "get" || type == "set" else { return effects }
        guard let payload = iq.elements.first, iq.elements.count == 1 else {
            effects.send(iq.errorReply(StanzaError(.badRequest)))
            return effects
        }
        switch (type, payload.namespace, payload.name) {
        case ("get", Namespace.discoInfo, "query") where payload[attribute: "node"] == "x-roomuser-item":
            // Discovering one's reserved nickname (§7.12).
            var query = XMLElement("query", namespace: Namespace.discoInfo, ["node": "x-roomuser-item"])
            if let nick = affiliations[real.bare]?.nick {
                query.append(XMLElement("identity", namespace: Namespace.discoInfo, ["category": "conference", "type": "text", "name": nick]))
            }
            effects.send(iq.iqResult(query))
        case ("get", Namespace.discoInfo, "query"):
            effects.send(iq.iqResult(discoInfo(node: payload[attribute: "node"])))
        case ("get", Namespace.discoItems, "query"):
            // Occupants are not listed (as in Prosody): presence is how they are seen.
            effects.send(iq.iqResult(XMLElement("query", namespace: Namespace.discoItems)))
        case ("get", Namespace.ping, "ping"):
            effects.send(iq.iqResult())
        case (_, Namespace.mucOwner, "query"):
            return owner(iq, payload: payload, from: real, environment: environment)
        case ("get", Namespace.mucAdmin, "query"):
            return adminGet(iq, payload: payload, from: real, environment: environment)
        case ("set", Namespace.mucAdmin, "query"):
            return adminSet(iq, payload: payload, from: real, environment: environment)
        case (_, Namespace.register, "query"):
            return register(iq, payload: payload, from: real, environment: environment)
        default:
            effects.send(iq.errorReply(StanzaError(.serviceUnavailable)))
        }
        return effects
    }

    /// An IQ to an occupant JID: a self-ping is answered by the room (XEP-0410), other
    /// requests are forwarded with the sender's occupant JID and an id that routes the
    /// answer back; answers go back to whoever asked.
    private func occupantIQ(_ iq: XMLElement, from real: JID, to nick: String) -> RoomEffects {
        var effects = RoomEffects()
        let isRequest = iq.type == "get" || iq.type == "set"
        guard let sender = occupant(real: real) else {
            if isRequest {
                effects.send(iq.errorReply(StanzaError(.notAcceptable, type: .cancel, text: "you are not in this room")))
            }
            return effects
        }
        if !isRequest {
            guard let id = iq.id, let (originalID, recipient) = Self.decodeForwardedID(id), recipient == real,
                let target = occupant(nick: nick)
            else { return effects }
            var answer = iq
            answer.id = originalID
            answer[attribute: "from"] = occupantJID(sender.nick).description
            answer[attribute: "to"] = target.realJID.description
            effects.send(answer)
            return effects
        }
        if let payload = iq.elements.first, payload.namespace == Namespace.ping, payload.name == "ping",
            sender.nickKey == Nickname.comparisonKey(of: nick)
        {
            effects.send(iq.iqResult())
            return effects
        }
        guard let target = occupant(nick: nick) else {
            effects.send(iq.errorReply(StanzaError(.itemNotFound, text: "no such occupant")))
            return effects
        }
        var forwarded = iq
        forwarded.id = Self.encodeForwardedID(iq.id ?? "", asker: target.realJID)
        forwarded[attribute: "from"] = occupantJID(sender.nick).description
        forwarded[attribute: "to"] = target.realJID.description
        effects.send(forwarded)
        return effects
    }

    static func encodeForwardedID(_ id: String, asker: JID) -> String {
        "muc~" + Base64.encode(asker.description) + "~" + id
    }

    static func decodeForwardedID(_ id: String) -> (String, JID)? {
        let parts = id.split(separator: "~", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "muc", let bytes = Base64.decode(String(parts[1])),
            let text = String(validating: bytes, as: UTF8.self), let asker = try? JID(text)
        else { return nil }
        return (String(parts[2]), asker)
    }

    // MARK: - Registration (XEP-0045 §7.10)

    private mutating func register(_ iq: XMLElement, payload: XMLElement, from real: JID, environment: RoomEnvironment)
        -> RoomEffects
    {
        var effects = RoomEffects()
        let user = real.bare
        let affiliation = self.affiliation(of: real, environment: environment)
        // As in Prosody: members and above reserve nicks; others must be made members first.
        if affiliation == .outcast {
            effects.send(iq.errorReply(StanzaError(.forbidden)))
            return effects
        }
        if affiliation == .none {
            effects.send(iq.errorReply(StanzaError(.registrationRequired)))
            return effects
        }
        let current = affiliations[user]?.nick
        if iq.type == "get" {
            var query = XMLElement("query", namespace: Namespace.register)
            if let current {
                query.append(XMLElement("registered", namespace: Namespace.register))
                query.append(XMLElement("username", namespace: Namespace.register, text: current))
            } else {
                let form = DataForm(
                    type: "form",
                    fields: [
                        .init("FORM_TYPE", type: "hidden", values: ["http://jabber.org/protocol/muc#register"]),
                        .init("muc#register_roomnick", type: "text-single", label: "Nickname", required: true),
                    ]
                )
                query.append(form.element)
            }
            effects.send(iq.iqResult(query))
            return effects
        }
        var entry = affiliations[user] ?? AffiliationEntry(affiliation)
        if payload.child("remove", namespace: Namespace.register) != nil {
            // Unregistering gives up membership; higher affiliations stay.
            if entry.affiliation == .member {
                effects.output += setAffiliation(user, to: .none, reason: nil, actor: nil, environment: environment).output
                effects.changes.append(.affiliation(user, AffiliationEntry(.none)))
            } else {
                let had = entry.nick != nil
                entry.nick = nil
                if had { effects.output += announceAffiliation(of: user, entry: entry, environment: environment) }
                affiliations[user] = entry
                effects.changes.append(.affiliation(user, entry))
            }
            effects.send(iq.iqResult())
            return effects
        }
        guard let element = payload.child("x", namespace: Namespace.dataForms), let form = DataForm(element: element),
            form.formType == "http://jabber.org/protocol/muc#register"
        else {
            effects.send(iq.errorReply(StanzaError(.badRequest, text: "a muc#register form is needed")))
            return effects
        }
        guard let requested = form["muc#register_roomnick"]?.value, !requested.isEmpty,
            (try? jid.with(resource: requested)) != nil
        else {
            effects.send(iq.errorReply(StanzaError(.badRequest, text: "invalid nickname")))
            return effects
        }
        // Reserved in its enforced form (RFC 8266), so that it is compared as joins are.
        let nick: String
        do {
            nick = try Nickname(requested).value
        } catch {
            effects.send(iq.errorReply(StanzaError(.badRequest, text: error.text)))
            return effects
        }
        if let error = environment.limits.refusal(nick: nick) ?? environment.limits.refusal(storing: user, in: jid) {
            effects.send(iq.errorReply(error))
            return effects
        }
        if let other = occupant(nick: nick), other.realJID.bare != user {
            effects.send(iq.errorReply(StanzaError(.conflict)))
            return effects
        }
        if let holder = reservation(of: nick), holder != user {
            effects.send(iq.errorReply(StanzaError(.conflict)))
            return effects
        }
        let changed = entry.nick != nick
        entry.nick = nick
        // A new reservation is announced as an affiliation change (as Prosody does):
        // the occupant's presence again, or a notice when it is not in the room.
        if changed { effects.output += announceAffiliation(of: user, entry: entry, environment: environment) }
        affiliations[user] = entry
        effects.changes.append(.affiliation(user, entry))
        effects.send(iq.iqResult())
        return effects
    }

    /// Announces `user`'s affiliation, unchanged but for its data (a reserved nick), as
    /// an affiliation change is; leaves `entry` (its reason included) as the user's.
    private mutating func announceAffiliation(of user: JID, entry: AffiliationEntry, environment: RoomEnvironment) -> [RoomDelivery] {
        affiliations[user] = entry
        let output = setAffiliation(user, to: entry.affiliation, reason: nil, actor: nil, environment: environment).output
        affiliations[user] = entry
        return output
    }

    // MARK: - Disco

    public static let features = [
        Namespace.muc, "http://jabber.org/protocol/muc#stable_id", "http://jabber.org/protocol/muc#self-ping-optimization",
        Namespace.discoInfo, Namespace.discoItems, Namespace.occupantID, Namespace.stanzaID, Namespace.register,
        Namespace.mucRequest,
    ]

    func discoInfo(node: String?) -> XMLElement {
        var query = XMLElement("query", namespace: Namespace.discoInfo)
        if let node { query[attribute: "node"] = node }
        query.append(
            XMLElement(
                "identity", namespace: Namespace.discoInfo,
                // An unnamed room's identity has no name (as Prosody's).
                configuration.name.isEmpty
                    ? ["category": "conference", "type": "text"] : ["category": "conference", "type": "text", "name": configuration.name]
            )
        )
        var features = Self.features
        features.append(configuration.isPublic ? "muc_public" : "muc_hidden")
        features.append(configuration.persistent ? "muc_persistent" : "muc_temporary")
        features.append(configuration.membersOnly ? "muc_membersonly" : "muc_open")
        features.append(configuration.moderated ? "muc_moderated" : "muc_unmoderated")
        features.append(configuration.whois == .anyone ? "muc_nonanonymous" : "muc_semianonymous")
        features.append(configuration.passwordProtected ? "muc_passwordprotected" : "muc_unsecured")
        for feature in features.sorted() {
            query.append(XMLElement("feature", namespace: Namespace.discoInfo, ["var": feature]))
        }
        // The fields and their order as Prosody 0.12 sends them, then the XEP-0045
        // ones it lacks (the subject, who may send private messages, the history limit).
        let info = DataForm(
            type: "result",
            fields: [
                .init("FORM_TYPE", type: "hidden", values: [Namespace.mucRoomInfo]),
                .init("muc#roomconfig_roomname", type: "text-single", label: "Title", values: configuration.name.isEmpty ? [] : [configuration.name]),
                .init(
                    "{http://prosody.im/protocol/muc}roomconfig_allowmemberinvites", type: "boolean", label: "Allow members to invite new members",
                    values: [configuration.allowInvites ? "1" : "0"]),
                .init(
                    "muc#roomconfig_allowinvites", type: "boolean", label: "Allow users to invite other users",
                    values: [!configuration.membersOnly || configuration.allowInvites ? "1" : "0"]),
                .init("muc#roominfo_description", type: "text-single", label: "Description", values: [configuration.description]),
                .init("muc#roominfo_lang", type: "text-single", values: [configuration.language]),
                .init("muc#roomconfig_changesubject", type: "boolean", values: [configuration.changeSubject ? "1" : "0"]),
                .init("muc#roominfo_occupants", type: "text-single", label: "Number of occupants", values: [String(occupants.count)]),
                .init("muc#roominfo_subject", type: "text-single", label: "Subject", values: [subject]),
                .init("muc#roomconfig_allowpm", type: "list-single", label: "Allow private messages from", values: [configuration.allowPM.rawValue]),
                .init(
                    "muc#maxhistoryfetch", type: "text-single", label: "Maximum number of history messages returned by room",
                    values: [String(configuration.historyLength)]),
            ]
        )
        query.append(info.element)
        return query
    }

    // MARK: - Owner

    private mutating func owner(_ iq: XMLElement, payload: XMLElement, from real: JID, environment: RoomEnvironment) -> RoomEffects {
        var effects = RoomEffects()
        guard affiliation(of: real, environment: environment) == .owner else {
            effects.send(iq.errorReply(StanzaError(.forbidden, text: "only owners may configure the room")))
            return effects
        }
        if iq.type == "get" {
            effects.send(iq.iqResult(XMLElement("query", namespace: Namespace.mucOwner, children: [configuration.form(room: jid).element])))
            return effects
        }
        if let destroy = payload.child("destroy", namespace: Namespace.mucOwner) {
            return self.destroy(iq, destroy: destroy, environment: environment)
        }
        guard let formElement = payload.child("x", namespace: Namespace.dataForms), let form = DataForm(element: formElement) else {
            effects.send(iq.errorReply(StanzaError(.badRequest, text: "expected a data form or <destroy/>")))
            return effects
        }
        if form.type == "cancel" {
            // XEP-0045 §10.1.3 would destroy a new room here; Prosody 0.12 keeps it (and
            // its owner inside), and clients are written against that.
            effects.send(iq.iqResult())
            return effects
        }
        guard form.type == "submit" else {
            effects.send(iq.errorReply(StanzaError(.badRequest, text: "submit the form with type='submit'")))
            return effects
        }
        switch configuration.applying(form, limits: environment.limits) {
        case .failure(let error):
            effects.send(iq.errorReply(error))
        case .success(let next):
            let old = configuration
            configuration = next
            locked = false
            effects.changes.append(.configured(next))
            // Members-only now: non-members are removed first, and told alone (as Prosody).
            if next.membersOnly && !old.membersOnly { removeNonMembers(into: &effects, environment: environment) }
            announcePresenceBroadcastChange(from: old, into: &effects, environment: environment)
            // The result first, then the announcement of what changed (as Prosody
            // orders them), also for the first configuration of a new room.
            effects.send(iq.iqResult())
            if next != old { announceConfigurationChange(from: old, into: &effects) }
            if occupants.isEmpty && !next.persistent {
                effects.roomEnded = true
                effects.changes.append(.destroyed)
            }
        }
        return effects
    }

    mutating func destroy(
        _ iq: XMLElement?, destroy: XMLElement?, environment: RoomEnvironment, into start: RoomEffects = RoomEffects()
    ) -> RoomEffects {
        var effects = start
        var destroyElement = XMLElement("destroy", namespace: Namespace.mucUser)
        if let alternate = destroy?[attribute: "jid"] { destroyElement[attribute: "jid"] = alternate }
        if let reason = destroy?.child("reason", namespace: Namespace.mucOwner) {
            destroyElement.append(XMLElement("reason", namespace: Namespace.mucUser, text: reason.text))
        }
        if let password = destroy?.child("password", namespace: Namespace.mucOwner) {
            destroyElement.append(XMLElement("password", namespace: Namespace.mucUser, text: password.text))
        }
        // Everyone leaves, one after the other, each told with <destroy/> (§10.9).
        let leaving = occupants
        occupants.removeAll()
        for occupant in leaving {
            var gone = occupant
            gone.role = .none
            effects.send(
                presence(
                    of: gone, to: gone.realJID, recipientRole: .none, type: "unavailable", isSelf: true,
                    environment: environment, leading: [destroyElement]
                )
            )
        }
        effects.roomEnded = true
        effects.changes.append(.destroyed)
        if let iq { effects.send(iq.iqResult()) }
        return effects
    }

    // MARK: - Admin

    private func adminGet(_ iq: XMLElement, payload: XMLElement, from real: JID, environment: RoomEnvironment) -> RoomEffects {
        var effects = RoomEffects()
        guard let item = payload.child("item", namespace: Namespace.mucAdmin) else {
            effects.send(iq.errorReply(StanzaError(.badRequest)))
            return effects
        }
        let actorAffiliation = affiliation(of: real, environment: environment)
        // Outside the room, the role the affiliation would give (as Prosody decides).
        let actorRole = occupant(real: real)?.role ?? defaultRole(for: actorAffiliation)
        var query = XMLElement("query", namespace: Namespace.mucAdmin)
        if let text = item[attribute: "affiliation"], let wanted = Affiliation(rawValue: text) {
            // Admins see lists up to their own rank; in a non-anonymous members-only
            // room members see them too (as Prosody decides).
            let allowed =
                (actorAffiliation.rank >= Affiliation.admin.rank && actorAffiliation.rank >= wanted.rank)
                || (configuration.membersOnly && configuration.whois == .anyone
                    && actorAffiliation.rank >= Affiliation.member.rank)
            guard allowed else {
                effects.send(iq.errorReply(StanzaError(.forbidden)))
                return effects
            }
            for (jid, entry) in affiliations.sorted(by: { $0.key < $1.key }) where entry.affiliation == wanted {
                var element = XMLElement("item", namespace: Namespace.mucAdmin, ["affiliation": wanted.rawValue, "jid": jid.description])
                if let nick = entry.nick { element[attribute: "nick"] = nick }
                // The reason given when it was set (XEP-0045 §9.2, example 109).
                if let reason = entry.reason, !reason.isEmpty {
                    element.append(XMLElement("reason", namespace: Namespace.mucAdmin, text: reason))
                }
                query.append(element)
            }
        } else if let text = item[attribute: "role"], let wanted = Role(rawValue: text) {
            guard actorRole == .moderator else {
                effects.send(iq.errorReply(StanzaError(.forbidden)))
                return effects
            }
            for occupant in occupants where occupant.role == wanted {
                query.append(
                    XMLElement(
                        "item", namespace: Namespace.mucAdmin,
                        [
                            "affiliation": affiliation(of: occupant.realJID, environment: environment).rawValue,
                            "jid": occupant.realJID.description, "nick": occupant.nick, "role": occupant.role.rawValue,
                        ]
                    )
                )
            }
        } else {
            effects.send(iq.errorReply(StanzaError(.badRequest)))
            return effects
        }
        effects.send(iq.iqResult(query))
        return effects
    }

    private mutating func adminSet(_ iq: XMLElement, payload: XMLElement, from real: JID, environment: RoomEnvironment) -> RoomEffects {
        var effects = RoomEffects()
        let items = payload.children("item", namespace: Namespace.mucAdmin)
        guard !items.isEmpty else {
            effects.send(iq.errorReply(StanzaError(.badRequest)))
            return effects
        }
        // Validate everything first: the request is applied whole or not at all.
        var operations: [(XMLElement, Bool)] = []
        var added: Set<JID> = []
        for item in items {
            let reason = item.child("reason", namespace: Namespace.mucAdmin)?.text
            if let error = environment.limits.refusal(reason: reason) {
                effects.send(iq.errorReply(error))
                return effects
            }
            if item[attribute: "affiliation"] != nil {
                if let error = checkAffiliationChange(item, actor: real, environment: environment)
                    ?? checkAffiliationCount(item, adding: &added, environment: environment)
                {
                    effects.send(iq.errorReply(error))
                    return effects
                }
                operations.append((item, true))
            } else if item[attribute: "role"] != nil {
                if let error = checkRoleChange(item, actor: real, environment: environment) {
                    effects.send(iq.errorReply(error))
                    return effects
                }
                operations.append((item, false))
            } else {
                effects.send(iq.errorReply(StanzaError(.badRequest)))
                return effects
            }
        }
        // The room keeps an owner after the whole request (an owner may hand ownership
        // over and step down in one request, but not demote the others and themselves).
        if let error = checkOwnerRemains(operations.filter(\.1).map(\.0), actor: real) {
            effects.send(iq.errorReply(error))
            return effects
        }
        let actor = occupant(real: real)
        for (item, isAffiliation) in operations {
            let reason = item.child("reason", namespace: Namespace.mucAdmin)?.text
            if isAffiliation {
                let target = try! JID(item[attribute: "jid"]!).bare
                let affiliation = Affiliation(rawValue: item[attribute: "affiliation"]!)!
                effects.output += setAffiliation(target, to: affiliation, reason: reason, actor: actor, environment: environment).output
                effects.changes.append(.affiliation(target, affiliations[target] ?? AffiliationEntry(.none, reason: reason)))
            } else {
                let nick = item[attribute: "nick"]!
                let role = Role(rawValue: item[attribute: "role"]!)!
                effects.output += setRole(nick, to: role, reason: reason, actor: actor, environment: environment).output
            }
        }
        if occupants.isEmpty && !configuration.persistent {
            effects.roomEnded = true
            effects.changes.append(.destroyed)
        }
        effects.send(iq.iqResult())
        return effects
    }

    private func checkAffiliationChange(_ item: XMLElement, actor: JID, environment: RoomEnvironment) -> StanzaError? {
        guard let text = item[attribute: "affiliation"], let affiliation = Affiliation(rawValue: text) else {
            return StanzaError(.badRequest, text: "unknown affiliation")
        }
        guard let jidText = item[attribute: "jid"] else {
            return StanzaError(.badRequest, text: "an affiliation change needs a jid")
        }
        guard let target = try? JID(jidText) else { return StanzaError(.jidMalformed) }
        if let error = environment.limits.refusal(storing: target.bare, in: jid) { return error }
        let actorAffiliation = self.affiliation(of: actor, environment: environment)
        let current = affiliations[target.bare]?.affiliation ?? .none
        switch actorAffiliation {
        case .owner:
            // Whether the room keeps an owner depends on the whole request: checkOwnerRemains.
            return nil
        case .admin:
            if affiliation == .owner || affiliation == .admin || current == .owner || current == .admin {
                return StanzaError(.notAllowed)
            }
            return nil
        default:
            return StanzaError(.notAllowed)
        }
    }

    /// An owner may not leave the room without owners by demoting themselves, alone or
    /// in a request whose other items demote the other owners (XEP-0045 §10.5: a room
    /// needs an owner). `items` are the request's affiliation items, validated already.
    private func checkOwnerRemains(_ items: [XMLElement], actor: JID) -> StanzaError? {
        var owners = Set(affiliations.filter { $0.value.affiliation == .owner }.keys)
        var demotesSelf = false
        for item in items {
            guard let target = item[attribute: "jid"].flatMap({ try? JID($0) })?.bare,
                let affiliation = item[attribute: "affiliation"].flatMap(Affiliation.init(rawValue:))
            else { continue }
            if affiliation == .owner {
                owners.insert(target)
            } else {
                owners.remove(target)
                if target == actor.bare { demotesSelf = true }
            }
        }
        return demotesSelf && owners.isEmpty ? StanzaError(.conflict, text: "a room needs an owner") : nil
    }

    /// A room keeps at most `limits.affiliations` affiliations: a change that would add
    /// one more is refused (`added`: the JIDs earlier items of the same request add).
    private func checkAffiliationCount(_ item: XMLElement, adding added: inout Set<JID>, environment: RoomEnvironment)
        -> StanzaError?
    {
        guard item[attribute: "affiliation"] != Affiliation.none.rawValue,
            let target = item[attribute: "jid"].flatMap({ try? JID($0) })?.bare, affiliations[target] == nil
        else { return nil }
        added.insert(target)
        let limit = environment.limits.affiliations
        guard affiliations.count + added.count <= limit else {
            return StanzaError(.resourceConstraint, text: "the room keeps at most \(limit) affiliations")
        }
        return nil
    }

    private func checkRoleChange(_ item: XMLElement, actor: JID, environment: RoomEnvironment) -> StanzaError? {
        guard let text = item[attribute: "role"], let role = Role(rawValue: text) else {
            return StanzaError(.badRequest, text: "unknown role")
        }
        guard let nick = item[attribute: "nick"] else { return StanzaError(.badRequest, text: "a role change needs a nick") }
        // A nick that cannot be part of an address names nobody (as Prosody answers it).
        guard (try? jid.with(resource: nick)) != nil else { return StanzaError(.jidMalformed, text: "not a nickname") }
        guard let target = occupant(nick: nick) else { return StanzaError(.itemNotFound, type: .modify) }
        // Prosody's rules (conclave-diff): nothing against a higher affiliation; granting
        // or taking moderator needs an admin or owner (§9.6, §9.7); and the actor must be
        // in the room as a moderator. Equals may act on each other and on themselves (an
        // owner may make itself a visitor), which XEP-0045 leaves open.
        let actorAffiliation = self.affiliation(of: actor, environment: environment)
        let targetAffiliation = self.affiliation(of: target.realJID, environment: environment)
        guard targetAffiliation.rank <= actorAffiliation.rank else { return StanzaError(.notAllowed) }
        if role == .moderator || target.role == .moderator {
            guard actorAffiliation.rank >= Affiliation.admin.rank else { return StanzaError(.notAllowed) }
        }
        guard occupant(real: actor)?.role == .moderator else { return StanzaError(.notAllowed) }
        return nil
    }

    /// Applies an affiliation and tells the room (XEP-0045 §9, §10).
    mutating func setAffiliation(
        _ target: JID, to affiliation: Affiliation, reason: String?, actor: Occupant?, environment: RoomEnvironment
    ) -> RoomEffects {
        var effects = RoomEffects()
        let previous = affiliations[target]?.affiliation ?? .none
        if affiliation == .none {
            affiliations[target] = nil
        } else {
            // A reserved nick stays with the affiliation, but not with a ban.
            let nick = affiliation == .outcast ? nil : affiliations[target]?.nick
            affiliations[target] = AffiliationEntry(affiliation, reason: reason, nick: nick)
        }
        let affected = occupants.filter { $0.realJID.bare == target }
        guard !affected.isEmpty else {
            // Not in the room: announce the change (XEP-0045 example 195).
            var message = XMLElement("message", namespace: Namespace.client, ["from": jid.description])
            var x = XMLElement("x", namespace: Namespace.mucUser)
            // Had they been here, they would have been removed: say so (as Prosody does).
            if affiliation == .outcast {
                x.append(status(301))
            } else if defaultRole(for: affiliation) == .none || (configuration.membersOnly && affiliation.rank < Affiliation.member.rank) {
                x.append(status(321))
            }
            var item = XMLElement("item", namespace: Namespace.mucUser, ["affiliation": affiliation.rawValue, "jid": target.description])
            if let reason { item.append(XMLElement("reason", namespace: Namespace.mucUser, text: reason)) }
            x.append(item)
            message.append(x)
            effects.broadcast(
                message, to: occupants.filter { configuration.whois == .anyone || $0.role == .moderator }.map(\.realJID))
            return effects
        }
        let newRole = defaultRole(for: affiliation)
        let removed = affiliation == .outcast || (configuration.membersOnly && affiliation.rank < Affiliation.member.rank)
        for occupant in affected {
            if removed {
                effects.output += leave(
                    occupant.realJID, status: affiliation == .outcast ? 301 : 321, actor: actor, reason: reason,
                    environment: environment
                ).output
            } else if let position = index(real: occupant.realJID) {
                let downgrade = affiliation.rank < previous.rank
                let oldRole = occupants[position].role
                if downgrade || newRole.rank > oldRole.rank { occupants[position].role = newRole }
                broadcastPresence(
                    of: occupants[position], actor: actor, reason: reason, previousRole: oldRole, into: &effects, environment: environment)
                resendOccupantsIfVisibilityChanged(for: occupants[position], oldRole: oldRole, into: &effects, environment: environment)
            }
        }
        return effects
    }

    /// Applies a role: `none` kicks (307); otherwise voice or moderator changes.
    mutating func setRole(_ nick: String, to role: Role, reason: String?, actor: Occupant?, environment: RoomEnvironment)
        -> RoomEffects
    {
        guard let target = occupant(nick: nick), let position = index(real: target.realJID) else { return RoomEffects() }
        if role == .none {
            // Who removes itself is no longer in the room to be named by its nick (Prosody):
            // an actor without one.
            var actor = actor
            if actor?.realJID == target.realJID { actor?.nick = "" }
            return leave(target.realJID, status: 307, actor: actor, reason: reason, environment: environment)
        }
        var effects = RoomEffects()
        let oldRole = occupants[position].role
        occupants[position].role = role
        broadcastPresence(
            of: occupants[position], actor: actor, reason: reason, previousRole: oldRole, into: &effects, environment: environment)
        return effects
    }

    /// In a semi-anonymous room, becoming or ceasing to be a moderator through an
    /// affiliation change changes whose real JIDs one sees: the occupant gets everyone
    /// else's presence again (as Prosody does; a role change alone does not).
    private func resendOccupantsIfVisibilityChanged(
        for occupant: Occupant, oldRole: Role, into effects: inout RoomEffects, environment: RoomEnvironment
    ) {
        guard configuration.whois == .moderators, (oldRole == .moderator) != (occupant.role == .moderator) else { return }
        for other in occupants where other.realJID.bare != occupant.realJID.bare {
            guard configuration.presenceBroadcast.contains(other.role) else { continue }
            effects.send(presence(of: other, to: occupant.realJID, recipientRole: occupant.role, environment: environment))
        }
    }
}

extension Room {
    /// Occupants below member leave a room that became members-only, each told alone
    /// with status 322 (as Prosody does).
    mutating func removeNonMembers(into effects: inout RoomEffects, environment: RoomEnvironment) {
        let removed = occupants.filter {
            affiliation(of: $0.realJID, environment: environment).rank < Affiliation.member.rank
        }
        occupants.removeAll { occupant in removed.contains { $0.realJID == occupant.realJID } }
        for occupant in removed {
            var gone = occupant
            gone.role = .none
            effects.send(
                presence(
                    of: gone, to: gone.realJID, recipientRole: .none, type: "unavailable", codes: [322], isSelf: true,
                    environment: environment
                )
            )
        }
    }

    /// Roles whose presence the room now broadcasts, or no longer does: the others see
    /// such occupants arrive, or go (a bare unavailable); each occupant is told its own
    /// presence again (as Prosody does when muc#roomconfig_presencebroadcast changes).
    func announcePresenceBroadcastChange(from old: RoomConfiguration, into effects: inout RoomEffects, environment: RoomEnvironment) {
        guard old.presenceBroadcast != configuration.presenceBroadcast else { return }
        for occupant in occupants {
            let now = configuration.presenceBroadcast.contains(occupant.role)
            let before = old.presenceBroadcast.contains(occupant.role)
            if now && !before {
                broadcastPresence(of: occupant, into: &effects, environment: environment)
            } else if before && !now {
                for recipient in occupants where recipient.realJID != occupant.realJID {
                    effects.send(
                        presence(of: occupant, to: recipient.realJID, recipientRole: recipient.role, type: "unavailable", environment: environment))
                }
                effects.send(
                    presence(of: occupant, to: occupant.realJID, recipientRole: occupant.role, isSelf: true, environment: environment))
            }
        }
    }

    /// Tells every occupant the status codes of a configuration change (XEP-0045 §10.2.1).
    func announceConfigurationChange(from old: RoomConfiguration, into effects: inout RoomEffects) {
        var message = XMLElement("message", namespace: Namespace.client, ["type": "groupchat", "from": jid.description])
        var x = XMLElement("x", namespace: Namespace.mucUser)
        let codes = configuration.changeStatusCodes(from: old)
        // Nothing occupants notice changed: nothing to say.
        guard !codes.isEmpty else { return }
        for code in codes { x.append(status(code)) }
        message.append(x)
        effects.broadcast(message, to: occupants.map(\.realJID))
    }
}
