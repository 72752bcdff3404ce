public import NIOCore
public import XMPPCore

extension PreparedStanza {
    private static let allocator = ByteBufferAllocator()

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

    private static func writeEscaped(_ value: String, into buffer: inout ByteBuffer) {
        for byte in value.utf8 {
            if let escaped = XMLEscaping.attributeEntity(byte) { buffer.writeStaticString(escaped) } else { buffer.writeInteger(byte) }
        }
    }
}
