public import XMPPCore

extension Room {
    /// Handles a stanza addressed to the room (`to` is the room or an occupant JID),
    /// sent by the real full JID `from`. `isNew`: the room did not exist before this
    /// stanza (a joining presence creates it).
    public mutating func handle(_ stanza: XMLElement, from real: JID, environment: RoomEnvironment, isNew: Bool = false)
        -> RoomEffects
    {
        let nick = (try? stanza.toJID())??.resourcepart
        switch stanza.stanzaKind {
        case .presence:
            return handlePresence(stanza, from: real, nick: nick, environment: environment, isNew: isNew)
        case .message:
            return handleMessage(stanza, from: real, nick: nick, environment: environment)
        case .iq:
            return handleIQ(stanza, from: real, nick: nick, environment: environment)
        case nil:
            return RoomEffects()
        }
    }

    /// The real JID's session ended: it leaves every role it had.
    public mutating func sessionEnded(_ real: JID, environment: RoomEnvironment) -> RoomEffects {
        leave(real, status: nil, environment: environment)
    }
}
