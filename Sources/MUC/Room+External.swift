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
                effects.output += changed.output
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
        if next.membersOnly && !old.membersOnly { removeNonMembers(into: &effects, environment: environment) }
        announcePresenceBroadcastChange(from: old, into: &effects, environment: environment)
        announceConfigurationChange(from: old, into: &effects)
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
