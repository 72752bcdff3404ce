public import NIOCore
public import XMPPCore

/// A stanza serialized once for many recipients (a room's copies of one message): the
/// bytes before and after its `to` attribute, so that each copy is written from the two
/// halves and the recipient's address straight into the recipient's output buffer.
public struct PreparedStanza: Sendable {
    /// The element's name (for the traffic counters).
    public let name: String
    public let isError: Bool
    /// `<name`
    private let head: [UInt8]
    /// Everything after the `to` attribute: the other attributes, the children, the end tag.
    private let tail: [UInt8]

    private static let allocator = ByteBufferAllocator()

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

    /// The bytes of the copy for `recipient`, in a buffer of their own.
    public func buffer(to recipient: JID) -> ByteBuffer {
        let local = recipient.localpart?.utf8.count ?? 0
        let resource = recipient.resourcepart?.utf8.count ?? 0
        // Room for the escaped address: at most 6 bytes per byte ("&apos;").
        let capacity = head.count + tail.count + 6 + 6 * (local + resource) + recipient.domainpart.utf8.count + 2
        var buffer = Self.allocator.buffer(capacity: capacity)
        write(to: recipient, into: &buffer)
        return buffer
    }

    /// Appends the bytes of the copy for `recipient` to `buffer`.
    public func write(to recipient: JID, into buffer: inout ByteBuffer) {
        buffer.writeBytes(head)
        buffer.writeStaticString(" to='")
        if let localpart = recipient.localpart {
            Self.writeEscaped(localpart, into: &buffer)
            buffer.writeInteger(UInt8(ascii: "@"))
        }
        Self.writeEscaped(recipient.domainpart, into: &buffer)
        if let resourcepart = recipient.resourcepart {
            buffer.writeInteger(UInt8(ascii: "/"))
            Self.writeEscaped(resourcepart, into: &buffer)
        }
        buffer.writeInteger(UInt8(ascii: "'"))
        buffer.writeBytes(tail)
    }

    /// `value` as the text of a single-quoted attribute.
    private static func writeEscaped(_ value: String, into buffer: inout ByteBuffer) {
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "&"): buffer.writeStaticString("&amp;")
            case UInt8(ascii: "<"): buffer.writeStaticString("&lt;")
            case UInt8(ascii: ">"): buffer.writeStaticString("&gt;")
            case UInt8(ascii: "\""): buffer.writeStaticString("&quot;")
            case UInt8(ascii: "'"): buffer.writeStaticString("&apos;")
            case UInt8(ascii: "\n"): buffer.writeStaticString("&#10;")
            case UInt8(ascii: "\r"): buffer.writeStaticString("&#13;")
            case UInt8(ascii: "\t"): buffer.writeStaticString("&#9;")
            default: buffer.writeInteger(byte)
            }
        }
    }
}
