/// A stanza serialized once for many recipients (a room's copies of one broadcast): the
/// bytes before and after its `to` attribute, so that each copy is written from the two
/// halves and the recipient's address straight into the recipient's output buffer. The
/// same bytes travel to the other nodes that host recipients (`bytes`), which write them
/// to their sessions without parsing them (`init?(bytes:)`).
public struct PreparedStanza: Sendable, Hashable {
    /// The element's name (for the traffic counters).
    public let name: String
    public let isError: Bool
    /// `<name`
    public let head: [UInt8]
    /// Everything after the `to` attribute: the other attributes, the children, the end tag.
    public let tail: [UInt8]

    /// `stanza` without its `to` attribute, serialized as a child of the client stream.
    public init(_ stanza: XMLElement) {
        var element = stanza
        element[attribute: "to"] = nil
        let text = element.serialized(parentNamespace: Namespace.client)
        var bytes = Array(text.utf8)
        // The serialization starts with "<" and the element's name (no prefix: a stanza
        // is never a stream-level element).
        let split = min(bytes.count, 1 + stanza.name.utf8.count)
        tail = Array(bytes[split...])
        bytes.removeSubrange(split...)
        head = bytes
        name = stanza.name
        isError = stanza[attribute: "type"] == "error"
    }

    /// The stanza as `bytes` gave it on another node: split after its name, not parsed.
    /// `nil` unless it starts as a stanza of the client stream does (`<message`,
    /// `<presence` or `<iq` followed by a space, `/` or `>`) and ends with `>`.
    public init?(bytes: [UInt8]) {
        guard bytes.count >= 4, bytes[0] == UInt8(ascii: "<"), bytes.last == UInt8(ascii: ">") else { return nil }
        var end = 1
        while end < bytes.count, end < 10, !Self.endsName(bytes[end]) { end += 1 }
        guard end < bytes.count, Self.endsName(bytes[end]) else { return nil }
        let name = String(decoding: bytes[1..<end], as: UTF8.self)
        guard name == "message" || name == "presence" || name == "iq" else { return nil }
        self.name = name
        head = Array(bytes[..<end])
        tail = Array(bytes[end...])
        // The type is an attribute of the start tag (before its first '>').
        let startTag = tail.prefix { $0 != UInt8(ascii: ">") }
        isError = Self.contains(startTag, Array(" type='error'".utf8)) || Self.contains(startTag, Array(" type=\"error\"".utf8))
    }

    /// The stanza without `to`, as one run of bytes (what another node gets).
    public var bytes: [UInt8] { head + tail }

    private static func endsName(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: ">")
    }

    private static func contains(_ haystack: ArraySlice<UInt8>, _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        var index = haystack.startIndex
        while index <= haystack.endIndex - needle.count {
            if haystack[index..<(index + needle.count)].elementsEqual(needle) { return true }
            index += 1
        }
        return false
    }
}

/// Copies of one stanza for recipients on one node: what a room's broadcast (or single
/// stanza) becomes for each node that hosts recipients of it.
public struct StanzaCopies: Sendable, Hashable {
    /// A groupchat message's room and id: what a node notes as delivered, so that a
    /// message a room sends again after a failover reaches only those who missed it.
    public struct MessageKey: Sendable, Hashable {
        public var room: String
        public var id: String
        public init(room: String, id: String) {
            self.room = room
            self.id = id
        }
    }

    public var stanza: PreparedStanza
    /// In the room's order; each copy's `to` is its recipient.
    public var recipients: [JID]
    public var message: MessageKey?
    /// The room sends the message again (its input came again after a failover): the
    /// node delivers it only to those recipients it did not deliver it to before.
    public var replay: Bool

    public init(stanza: PreparedStanza, recipients: [JID], message: MessageKey? = nil, replay: Bool = false) {
        self.stanza = stanza
        self.recipients = recipients
        self.message = message
        self.replay = replay
    }
}
