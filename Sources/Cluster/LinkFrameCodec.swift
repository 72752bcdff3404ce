public import XMPPCore

/// The binary form of the frames a connecting node sends once both ends of a link have
/// proved the cluster secret (the handshake, and everything the accepting node sends back,
/// stay XML).
///
/// A frame is its length (4 bytes, big-endian, counting what follows), its kind (1 byte),
/// its sequence number (8 bytes, big-endian), then the kind's fields. Strings are a length
/// (LEB128) and UTF-8; numbers are LEB128 or 8 bytes big-endian. A stanza a client sent
/// (room input, a stanza for a user) travels as its element tree
/// (`LinkFrameCodec.appendElement`), which the receiving node reads back without an XML
/// parser; room output travels as the bytes the room's node serialized, written to the
/// recipients' sessions as they are.
///
/// Everything read is checked as input from the network is: lengths against what is left
/// of the frame, nesting depth, UTF-8, and the characters XML allows (a stanza read here is
/// written to clients again). A frame that does not read is refused whole
/// (`LinkFrameCodec.Decoded.malformed`).
public enum LinkFrameCodec {
    /// Bytes of the length prefix.
    public static let lengthBytes = 4
    /// Kind and sequence number.
    static let headerBytes = 9
    /// The deepest element tree a frame may carry.
    static let maxDepth = 128
    /// The largest frame the format can say (its length is 4 bytes).
    public static let largestFrame = Int(UInt32.max)

    enum Kind: UInt8 {
        case room = 1
        case sessionEnded = 2
        case sessionLeft = 3
        case membership = 4
        case deliver = 5
        case user = 6
        case addressed = 7
        case barrier = 8
        case barrierAck = 9
    }

    public enum Decoded: Sendable, Equatable {
        case frame(seq: UInt64, LinkFrame)
        /// A kind this node does not know (a newer node's): skipped and acknowledged.
        case unknown(seq: UInt64, kind: UInt8)
        case malformed
    }

    // MARK: - Encoding

    /// `frame` with its length prefix.
    public static func encode(_ frame: LinkFrame, seq: UInt64) -> [UInt8] {
        var out: [UInt8] = [0, 0, 0, 0]
        out.reserveCapacity(frame.estimatedBytes + lengthBytes + headerBytes)
        out.append(frame.codecKind.rawValue)
        appendFixed(seq, to: &out)
        switch frame {
        case .room(let stanza, let real, let home, let hops):
            appendString(real.description, to: &out)
            appendString(home, to: &out)
            appendNumber(UInt64(max(0, hops)), to: &out)
            appendElement(stanza, to: &out)
        case .sessionEnded(let room, let real, let home, let hops, let token):
            appendString(room.description, to: &out)
            appendString(real.description, to: &out)
            appendString(home, to: &out)
            appendNumber(UInt64(max(0, hops)), to: &out)
            appendFixed(token, to: &out)
        case .sessionLeft(let token):
            appendFixed(token, to: &out)
        case .membership(let room, let real, let entered):
            appendString(room.description, to: &out)
            appendString(real.description, to: &out)
            out.append(entered ? 1 : 0)
        case .deliver(let copies):
            out.append((copies.replay ? 1 : 0) | (copies.message != nil ? 2 : 0))
            if let message = copies.message {
                appendString(message.room, to: &out)
                appendString(message.id, to: &out)
            }
            appendNumber(UInt64(copies.recipients.count), to: &out)
            for recipient in copies.recipients { appendParts(of: recipient, to: &out) }
            appendNumber(UInt64(copies.stanza.head.count + copies.stanza.tail.count), to: &out)
            out.append(contentsOf: copies.stanza.head)
            out.append(contentsOf: copies.stanza.tail)
        case .user(let stanza), .addressed(let stanza):
            appendElement(stanza, to: &out)
        case .barrier(let id, let ring):
            appendFixed(id, to: &out)
            appendString(ring, to: &out)
        case .barrierAck(let id):
            appendFixed(id, to: &out)
        }
        let length = UInt32(truncatingIfNeeded: out.count - lengthBytes)
        out[0] = UInt8(truncatingIfNeeded: length >> 24)
        out[1] = UInt8(truncatingIfNeeded: length >> 16)
        out[2] = UInt8(truncatingIfNeeded: length >> 8)
        out[3] = UInt8(truncatingIfNeeded: length)
        return out
    }

    static func appendFixed(_ value: UInt64, to out: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    static func appendNumber(_ value: UInt64, to out: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
    }

    static func appendString(_ string: String, to out: inout [UInt8]) {
        var string = string
        string.withUTF8 { bytes in
            appendNumber(UInt64(bytes.count), to: &out)
            out.append(contentsOf: bytes)
        }
    }

    /// An address as its parts: which of localpart and resourcepart it has (1 and 2), then
    /// the parts. Read back without joining or splitting a string (no allocation for
    /// parts of up to 15 bytes).
    static func appendParts(of jid: JID, to out: inout [UInt8]) {
        out.append((jid.localpart != nil ? 1 : 0) | (jid.resourcepart != nil ? 2 : 0))
        if let local = jid.localpart { appendString(local, to: &out) }
        appendString(jid.domainpart, to: &out)
        if let resource = jid.resourcepart { appendString(resource, to: &out) }
    }

    /// An element tree: name, namespace, the attributes (name, value, namespace), then the
    /// children, each an element (0) or text (1).
    static func appendElement(_ element: XMLElement, to out: inout [UInt8]) {
        appendString(element.name, to: &out)
        appendString(element.namespace, to: &out)
        appendNumber(UInt64(element.attributes.count), to: &out)
        for attribute in element.attributes {
            appendString(attribute.name, to: &out)
            appendString(attribute.value, to: &out)
            appendString(attribute.namespace, to: &out)
        }
        appendNumber(UInt64(element.children.count), to: &out)
        for child in element.children {
            switch child {
            case .element(let element):
                out.append(0)
                appendElement(element, to: &out)
            case .text(let text):
                out.append(1)
                appendString(text, to: &out)
            }
        }
    }

    // MARK: - Decoding

    /// The frame after its length prefix: `bytes` is exactly the frame.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Decoded {
        var reader = Reader(bytes)
        guard let kindByte = reader.byte(), let seq = reader.fixed() else { return .malformed }
        guard let kind = Kind(rawValue: kindByte) else { return .unknown(seq: seq, kind: kindByte) }
        guard let frame = reader.frame(kind), reader.atEnd else { return .malformed }
        return .frame(seq: seq, frame)
    }

    struct Reader {
        private let bytes: UnsafeRawBufferPointer
        private var offset = 0
        /// Elements, attributes and text nodes this frame may still carry: one per 8 of its
        /// bytes (as the XML link parser allowed), so that a frame of 2-byte children does
        /// not become 25 times its size in memory.
        private var nodesLeft: Int

        init(_ bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
            nodesLeft = max(64, bytes.count / 8)
        }

        /// Takes `count` of the frame's node budget; `false` when it is spent.
        private mutating func takeNodes(_ count: Int) -> Bool {
            guard count <= nodesLeft else { return false }
            nodesLeft -= count
            return true
        }

        var atEnd: Bool { offset == bytes.count }
        private var remaining: Int { bytes.count - offset }

        mutating func byte() -> UInt8? {
            guard offset < bytes.count else { return nil }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func fixed() -> UInt64? {
            guard remaining >= 8 else { return nil }
            var value: UInt64 = 0
            for _ in 0..<8 {
                value = value << 8 | UInt64(bytes[offset])
                offset += 1
            }
            return value
        }

        mutating func number() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while let byte = byte() {
                // Ten bytes at most, the tenth carrying only the 64th bit.
                guard shift < 63 || (shift == 63 && byte <= 1) else { return nil }
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }

        /// A count of things that each take at least `each` bytes of what is left.
        mutating func count(each: Int) -> Int? {
            guard let value = number(), value <= UInt64(remaining / max(1, each)) else { return nil }
            return Int(value)
        }

        mutating func raw() -> UnsafeRawBufferPointer? {
            guard let length = count(each: 1) else { return nil }
            defer { offset += length }
            return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)])
        }

        /// A UTF-8 string.
        mutating func string() -> String? {
            raw().flatMap { String(validating: $0, as: UTF8.self) }
        }

        /// A string XML can carry as character data or an attribute value.
        mutating func text() -> String? {
            guard let string = string(), string.unicodeScalars.allSatisfy(Self.isXMLCharacter) else { return nil }
            return string
        }

        /// A name as XML writes it: a letter, `_` or a non-ASCII character first, then also
        /// digits, `-`, `.`; and `:` between a prefix and a local name where `prefixed`
        /// allows one (attributes).
        mutating func name(prefixed: Bool = false) -> String? {
            guard let raw = raw(), let first = raw.first, Self.mayStartName(first),
                raw.allSatisfy({ Self.mayBeInName($0) || (prefixed && $0 == UInt8(ascii: ":")) }),
                let string = String(validating: raw, as: UTF8.self), string.unicodeScalars.allSatisfy(Self.isXMLCharacter)
            else { return nil }
            guard prefixed else { return string }
            let parts = raw.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
            guard parts.count <= 2, parts.allSatisfy({ $0.first.map(Self.mayStartName) ?? false }) else { return nil }
            return string
        }

        /// An address from its parts (`appendParts`), as the room's node parsed and wrote
        /// it: not normalised again. `.some(nil)` for an empty domain (nobody).
        mutating func parts() -> JID?? {
            guard let flags = byte(), flags & ~3 == 0 else { return nil }
            let local = flags & 1 != 0 ? string() : nil
            guard flags & 1 == 0 || local != nil, let domain = string() else { return nil }
            let resource = flags & 2 != 0 ? string() : nil
            guard flags & 2 == 0 || resource != nil else { return nil }
            guard !domain.isEmpty else { return .some(nil) }
            return JID(normalizedLocal: local, domain: domain, resource: resource)
        }

        mutating func jid() -> JID? {
            string().flatMap { try? JID($0) }
        }

        static func isXMLCharacter(_ scalar: Unicode.Scalar) -> Bool {
            switch scalar.value {
            case 0x9, 0xA, 0xD, 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: true
            default: false
            }
        }

        private static func mayStartName(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "_"), 0x80...: true
            default: false
            }
        }

        private static func mayBeInName(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."): true
            default: mayStartName(byte)
            }
        }

        mutating func element(depth: Int = 1) -> XMLElement? {
            guard depth <= LinkFrameCodec.maxDepth, takeNodes(1), let name = name(), let namespace = text() else { return nil }
            // An attribute takes at least three bytes (three empty strings), a child two;
            // each counts against the frame's node budget before anything is reserved.
            guard let attributeCount = count(each: 3), takeNodes(attributeCount) else { return nil }
            var attributes: [XMLAttribute] = []
            attributes.reserveCapacity(attributeCount)
            // Beyond a few attributes, the names seen are kept in a set (no quadratic search).
            var seen: Set<String>? = attributeCount > 16 ? Set(minimumCapacity: attributeCount) : nil
            for _ in 0..<attributeCount {
                guard let name = self.name(prefixed: true), let value = text(), let namespace = text() else { return nil }
                // What a parser gives: no namespace declarations among the attributes, a
                // prefix only with the namespace it was bound to (`xml:` is bound by
                // definition), no attribute twice.
                let prefix = name.utf8.firstIndex(of: UInt8(ascii: ":")).map { String(name[..<$0]) }
                guard name != "xmlns", prefix != "xmlns", prefix == nil || prefix == "xml" || !namespace.isEmpty,
                    prefix != nil || namespace.isEmpty
                else { return nil }
                if seen != nil {
                    guard seen!.insert(name).inserted else { return nil }
                } else if attributes.contains(where: { $0.name == name }) {
                    return nil
                }
                attributes.append(XMLAttribute(name: name, value: value, namespace: namespace))
            }
            guard let childCount = count(each: 2), childCount <= nodesLeft else { return nil }
            var children: [XMLNode] = []
            children.reserveCapacity(childCount)
            for _ in 0..<childCount {
                switch byte() {
                case 0:
                    guard let child = element(depth: depth + 1) else { return nil }
                    children.append(.element(child))
                case 1:
                    guard takeNodes(1), let text = text() else { return nil }
                    children.append(.text(text))
                default:
                    return nil
                }
            }
            return XMLElement(name: name, namespace: namespace, attributes: attributes, children: children)
        }

        mutating func frame(_ kind: Kind) -> LinkFrame? {
            switch kind {
            case .room:
                guard let real = jid(), let home = string(), !home.isEmpty, let hops = number(), let stanza = element() else { return nil }
                return .room(stanza, real: real, home: home, hops: Int(min(hops, 1_000)))
            case .sessionEnded:
                guard let room = jid(), let real = jid(), let home = string(), !home.isEmpty, let hops = number(),
                    let token = fixed()
                else { return nil }
                return .sessionEnded(room: room, real: real, home: home, hops: Int(min(hops, 1_000)), token: token)
            case .sessionLeft:
                return fixed().map { .sessionLeft(token: $0) }
            case .membership:
                guard let room = jid(), let real = jid(), let entered = byte(), entered <= 1 else { return nil }
                return .membership(room: room, real: real, entered: entered == 1)
            case .deliver:
                guard let flags = byte(), flags & ~3 == 0 else { return nil }
                var message: StanzaCopies.MessageKey?
                if flags & 2 != 0 {
                    guard let room = string(), let id = string() else { return nil }
                    message = StanzaCopies.MessageKey(room: room, id: id)
                }
                // A recipient takes at least two bytes (its flags and an empty domain), and
                // counts against the node budget.
                guard let count = count(each: 2), takeNodes(count) else { return nil }
                var recipients: [JID] = []
                recipients.reserveCapacity(count)
                for _ in 0..<count {
                    guard let recipient = parts() else { return nil }
                    if let recipient { recipients.append(recipient) }
                }
                // The stanza's bytes are not parsed: only split after its name.
                guard let raw = raw(), let stanza = PreparedStanza(bytes: Array(raw)) else { return nil }
                return .deliver(StanzaCopies(stanza: stanza, recipients: recipients, message: message, replay: flags & 1 != 0))
            case .user:
                return element().map { .user($0) }
            case .addressed:
                return element().map { .addressed($0) }
            case .barrier:
                guard let id = fixed(), let ring = string() else { return nil }
                return .barrier(id: id, ring: ring)
            case .barrierAck:
                return fixed().map { .barrierAck(id: $0) }
            }
        }
    }
}

extension LinkFrame {
    var codecKind: LinkFrameCodec.Kind {
        switch self {
        case .room: .room
        case .sessionEnded: .sessionEnded
        case .sessionLeft: .sessionLeft
        case .membership: .membership
        case .deliver: .deliver
        case .user: .user
        case .addressed: .addressed
        case .barrier: .barrier
        case .barrierAck: .barrierAck
        }
    }

    /// About what the frame takes encoded (to reserve once).
    var estimatedBytes: Int {
        switch self {
        case .deliver(let copies): copies.stanza.head.count + copies.stanza.tail.count + copies.recipients.count * 40 + 64
        case .room, .user, .addressed: 512  // a stanza's size is not walked for this: the array grows if needed
        default: 128
        }
    }
}
