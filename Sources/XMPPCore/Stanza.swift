/// The three stanza kinds of RFC 6120 §8.
public enum StanzaKind: String, Sendable {
    case message, presence, iq
}

extension XMLElement {
    /// The stanza kind, when this is a `jabber:client` stanza.
    public var stanzaKind: StanzaKind? {
        guard namespace == Namespace.client else { return nil }
        return StanzaKind(rawValue: name)
    }

    public var id: String? {
        get { self[attribute: "id"] }
        set { self[attribute: "id"] = newValue }
    }

    public var type: String? {
        get { self[attribute: "type"] }
        set { self[attribute: "type"] = newValue }
    }

    /// The `to` address; `nil` when absent. Throws when present but malformed.
    public func toJID() throws(JIDError) -> JID? {
        guard let to = self[attribute: "to"] else { return nil }
        return try JID(to)
    }

    /// The `from` address; `nil` when absent. Throws when present but malformed.
    public func fromJID() throws(JIDError) -> JID? {
        guard let from = self[attribute: "from"] else { return nil }
        return try JID(from)
    }

    /// An IQ result for this IQ request, optionally with a payload.
    public func iqResult(_ payload: XMLElement? = nil) -> XMLElement {
        var reply = XMLElement("iq", namespace: Namespace.client)
        if let id { reply[attribute: "id"] = id }
        reply[attribute: "type"] = "result"
        if let from = self[attribute: "from"] { reply[attribute: "to"] = from }
        if let to = self[attribute: "to"] { reply[attribute: "from"] = to }
        if let payload { reply.append(payload) }
        return reply
    }
}
