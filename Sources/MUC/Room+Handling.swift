public import XMPPCore

extension Room {
    /// Handles a stanza addressed to the room (`to` is the room or an occupant JID),
    /// sent by the real full JID `from`. `isNew`: the room did not exist before this
    /// stanza (a joining presence creates it).
    public mutating func handle(_ stanza: XMLElement, from real: JID, environment: RoomEnvironment, isNew: Bool = false)
        -> RoomEffects
    {
        let nick = (try? stanza.toJID())??.resourcepart
        var effects = dispatch(stanza, from: real, nick: nick, environment: environment, isNew: isNew)
        if nick != nil { markErrors(&effects, answering: stanza) }
        return effects
    }

    /// RFC 6120 §8.2: an error says who found it when that is not the address that
    /// answers. The room found the errors it answers for one of its occupant JIDs
    /// (`room@service/nick`); errors for the room's own JID need no `by`.
    func markErrors(_ effects: inout RoomEffects, answering stanza: XMLElement) {
        guard let to = stanza[attribute: "to"] else { return }
        for index in effects.output.indices {
            guard case .single(var stanza) = effects.output[index], stanza.type == "error", stanza[attribute: "from"] == to,
                let errorIndex = stanza.children.firstIndex(where: {
                    if case .element(let child) = $0 { return child.name == "error" }
                    return false
                }), case .element(var error) = stanza.children[errorIndex], error[attribute: "by"] == nil
            else { continue }
            error[attribute: "by"] = jid.description
            stanza.children[errorIndex] = .element(error)
            effects.output[index] = .single(stanza)
        }
    }

    private mutating func dispatch(_ stanza: XMLElement, from real: JID, nick: String?, environment: RoomEnvironment, isNew: Bool)
        -> RoomEffects
    {
        switch stanza.stanzaKind {
        case .presence:
            return handlePresence(stanza, from: real, nick: nick, environment: environment, isNew: isNew)
        case .message:
            if nick == nil, stanza.type == "groupchat", stanza.child("body") == nil,
                let subject = stanza.child("subject"), let error = environment.limits.refusal(subject: subject.text)
            {
                // A subject is stored and sent to every joiner: bounded (`RoomLimits`).
                var effects = RoomEffects()
                effects.send(stanza.errorReply(error))
                return effects
            }
            return handleMessage(stanza, from: real, nick: nick, environment: environment)
        case .iq:
            return handleIQ(stanza, from: real, nick: nick, environment: environment)
        case nil:
            return RoomEffects()
        }
    }

    /// The service is going down: every occupant leaves with status 332 (XEP-0045
    /// §7.2.x, "removed because of a system shutdown"). The room itself stays if it is
    /// persistent.
    public mutating func systemShutdown(environment: RoomEnvironment) -> RoomEffects {
        var effects = RoomEffects()
        while let occupant = occupants.first {
            let left = leave(occupant.realJID, status: 332, environment: environment)
            effects.output += left.output
            effects.changes += left.changes
            effects.roomEnded = effects.roomEnded || left.roomEnded
        }
        return effects
    }

    /// The real JID's session ended: it leaves every role it had.
    public mutating func sessionEnded(_ real: JID, environment: RoomEnvironment) -> RoomEffects {
        leave(real, status: nil, environment: environment)
    }
}
