public import XMPPCore

extension Room {
    /// Affiliations changed outside the room (the CLI, plain SQL, another owner before
    /// a hand-over): applies each difference as if an owner had made it, so that an
    /// occupant who lost membership of a members-only room is removed with 321, a
    /// banned one with 301, and the room is told. The store already has the change.
    public mutating func applyExternal(affiliations stored: [JID: AffiliationEntry], environment: RoomEnvironment)
        -> RoomEffects
    {
        var effects = RoomEffects()
        let everyone = Set(affiliations.keys).union(stored.keys).sorted()
        for jid in everyone {
            let current = affiliations[jid]
            let next = stored[jid]
            guard current != next else { continue }
            if current?.affiliation != next?.affiliation {
                let changed = setAffiliation(
                    jid, to: next?.affiliation ?? .none, reason: next?.reason, actor: nil, environment: environment
                )
                effects.stanzas += changed.stanzas
                effects.roomEnded = effects.roomEnded || changed.roomEnded
            }
            affiliations[jid] = next
        }
        return effects
    }

    /// The configuration changed outside the room: applies it as an owner's form
    /// submission would (non-members leave with 322 when the room becomes
    /// members-only, told alone as in an owner's change; occupants are told the status codes of the change).
    public mutating func applyExternal(configuration next: RoomConfiguration, environment: RoomEnvironment) -> RoomEffects {
        var effects = RoomEffects()
        let old = configuration
        guard next != old else { return effects }
        configuration = next
        if next.membersOnly && !old.membersOnly {
            let removed = occupants.filter {
                affiliation(of: $0.realJID, environment: environment).rank < Affiliation.member.rank
            }
            occupants.removeAll { occupant in removed.contains { $0.realJID == occupant.realJID } }
            for occupant in removed {
                var gone = occupant
                gone.role = .none
                effects.stanzas.append(
                    presence(
                        of: gone, to: gone.realJID, recipientRole: .none, type: "unavailable", codes: [322],
                        isSelf: true, environment: environment
                    )
                )
            }
        }
        let codes = next.changeStatusCodes(from: old)
        if !codes.isEmpty {
            var message = XMLElement("message", namespace: Namespace.client, ["type": "groupchat", "from": jid.description])
            var x = XMLElement("x", namespace: Namespace.mucUser)
            for code in codes { x.append(status(code)) }
            message.append(x)
            for occupant in occupants {
                var copy = message
                copy[attribute: "to"] = occupant.realJID.description
                effects.stanzas.append(copy)
            }
        }
        return effects
    }

    /// Puts back an occupant read from the store (a new owner continuing the room).
    public mutating func restore(_ occupant: Occupant) {
        guard self.occupant(real: occupant.realJID) == nil else { return }
        occupants.append(occupant)
    }
}

extension Room {
    /// The room was deleted from the store by someone else: everyone leaves with
    /// `<destroy/>`.
    public mutating func destroyedElsewhere(environment: RoomEnvironment) -> RoomEffects {
        destroy(nil, destroy: nil, environment: environment)
    }
}
