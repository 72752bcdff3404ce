/// The parts of the DNS wire format (RFC 1035) a client needs to find XMPP servers:
/// a query for one name and type, and the answer section of the response, with
/// SRV (RFC 2782), A and AAAA records read. Name compression is followed on reading.
public enum DNSRecordType: UInt16, Sendable {
    case a = 1
    case cname = 5
    case aaaa = 28
    case srv = 33
}

/// One SRV record: where a service of a domain runs.
public struct SRVRecord: Sendable, Hashable, CustomStringConvertible {
    public var priority: UInt16
    public var weight: UInt16
    public var port: UInt16
    /// The host name, without the trailing dot; "." means "no such service here".
    public var target: String

    public init(priority: UInt16, weight: UInt16, port: UInt16, target: String) {
        self.priority = priority
        self.weight = weight
        self.port = port
        self.target = target
    }

    public var description: String { "\(priority) \(weight) \(port) \(target)" }
}

public enum DNSRecordData: Sendable, Hashable {
    case srv(SRVRecord)
    /// An address in text form (dotted quad or IPv6).
    case address(String)
    case cname(String)
    case other(type: UInt16)
}

public struct DNSRecord: Sendable, Hashable {
    public var name: String
    public var ttl: UInt32
    public var data: DNSRecordData
}

public struct DNSResponse: Sendable {
    public var id: UInt16
    /// 0 no error, 2 server failure, 3 no such name (RFC 1035 §4.1.1).
    public var responseCode: UInt8
    /// The answer did not fit in the datagram.
    public var truncated: Bool
    public var answers: [DNSRecord]

    public var srvRecords: [SRVRecord] {
        answers.compactMap { if case .srv(let record) = $0.data { record } else { nil } }
    }

    public var addresses: [String] {
        answers.compactMap { if case .address(let text) = $0.data { text } else { nil } }
    }
}

public enum DNSError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidName(String)
    case malformed(String)
    case timeout
    case serverFailure(responseCode: UInt8)

    public var description: String {
        switch self {
        case .invalidName(let name): "not a valid DNS name: '\(name)'"
        case .malformed(let why): "malformed DNS response: \(why)"
        case .timeout: "the DNS server did not answer"
        case .serverFailure(let code): "the DNS server answered with error code \(code)"
        }
    }
}

public enum DNSMessage {
    /// A standard query with recursion desired.
    public static func query(id: UInt16, name: String, type: DNSRecordType) throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32 + name.utf8.count)
        append16(&bytes, id)
        append16(&bytes, 0x0100)  // RD
        append16(&bytes, 1)  // QDCOUNT
        append16(&bytes, 0)
        append16(&bytes, 0)
        append16(&bytes, 0)
        try appendName(&bytes, name)
        append16(&bytes, type.rawValue)
        append16(&bytes, 1)  // IN
        return bytes
    }

    /// Reads a response: header and answer section (authority and additional
    /// sections are not needed and not read).
    public static func parse(_ bytes: [UInt8]) throws -> DNSResponse {
        var reader = Reader(bytes: bytes)
        let id = try reader.u16()
        let flags = try reader.u16()
        guard flags & 0x8000 != 0 else { throw DNSError.malformed("not a response") }
        let questions = try reader.u16()
        let answerCount = try reader.u16()
        _ = try reader.u16()
        _ = try reader.u16()
        for _ in 0..<questions {
            _ = try reader.name()
            try reader.skip(4)
        }
        var answers: [DNSRecord] = []
        for _ in 0..<answerCount {
            let name = try reader.name()
            let type = try reader.u16()
            let rrClass = try reader.u16()
            let ttl = try reader.u32()
            let length = Int(try reader.u16())
            let end = reader.offset + length
            guard end <= bytes.count else { throw DNSError.malformed("record data runs past the message") }
            let data: DNSRecordData
            switch (DNSRecordType(rawValue: type), rrClass) {
            case (.srv, 1):
                guard length >= 7 else { throw DNSError.malformed("short SRV record") }
                let priority = try reader.u16()
                let weight = try reader.u16()
                let port = try reader.u16()
                let target = try reader.name()
                data = .srv(SRVRecord(priority: priority, weight: weight, port: port, target: target))
            case (.a, 1):
                guard length == 4 else { throw DNSError.malformed("A record of \(length) bytes") }
                data = .address(bytes[reader.offset..<end].map(String.init).joined(separator: "."))
            case (.aaaa, 1):
                guard length == 16 else { throw DNSError.malformed("AAAA record of \(length) bytes") }
                data = .address(ipv6Text(Array(bytes[reader.offset..<end])))
            case (.cname, 1):
                data = .cname(try reader.name())
            default:
                data = .other(type: type)
            }
            reader.offset = end
            answers.append(DNSRecord(name: name, ttl: ttl, data: data))
        }
        return DNSResponse(
            id: id, responseCode: UInt8(flags & 0x000F), truncated: flags & 0x0200 != 0, answers: answers
        )
    }

    // MARK: - Encoding

    private static func append16(_ bytes: inout [UInt8], _ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    private static func appendName(_ bytes: inout [UInt8], _ name: String) throws {
        var trimmed = Substring(name)
        if trimmed.hasSuffix(".") { trimmed = trimmed.dropLast() }
        guard !trimmed.isEmpty else { throw DNSError.invalidName(name) }
        var total = 1
        for label in trimmed.split(separator: ".", omittingEmptySubsequences: false) {
            let utf8 = Array(label.utf8)
            guard !utf8.isEmpty, utf8.count <= 63 else { throw DNSError.invalidName(name) }
            total += utf8.count + 1
            bytes.append(UInt8(utf8.count))
            bytes.append(contentsOf: utf8)
        }
        guard total <= 255 else { throw DNSError.invalidName(name) }
        bytes.append(0)
    }

    private static func ipv6Text(_ bytes: [UInt8]) -> String {
        var groups: [UInt16] = []
        for index in stride(from: 0, to: 16, by: 2) { groups.append(UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1])) }
        // The longest run of zero groups (two or more) becomes "::" (RFC 5952).
        var best = (start: -1, length: 0)
        var index = 0
        while index < 8 {
            guard groups[index] == 0 else {
                index += 1
                continue
            }
            var end = index
            while end < 8, groups[end] == 0 { end += 1 }
            if end - index > best.length, end - index >= 2 { best = (index, end - index) }
            index = end
        }
        func hex(_ slice: ArraySlice<UInt16>) -> String { slice.map { String($0, radix: 16) }.joined(separator: ":") }
        guard best.start >= 0 else { return hex(groups[...]) }
        return hex(groups[..<best.start]) + "::" + hex(groups[(best.start + best.length)...])
    }

    // MARK: - Decoding

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func u16() throws -> UInt16 {
            guard offset + 2 <= bytes.count else { throw DNSError.malformed("message ends early") }
            defer { offset += 2 }
            return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
        }

        mutating func u32() throws -> UInt32 {
            UInt32(try u16()) << 16 | UInt32(try u16())
        }

        mutating func skip(_ count: Int) throws {
            guard offset + count <= bytes.count else { throw DNSError.malformed("message ends early") }
            offset += count
        }

        /// A name at the current offset, following compression pointers; the offset
        /// moves past the name as it appears here (up to and including a pointer).
        mutating func name() throws -> String {
            var labels: [String] = []
            var position = offset
            var jumped = false
            var jumps = 0
            var length = 0
            while true {
                guard position < bytes.count else { throw DNSError.malformed("name runs past the message") }
                let byte = bytes[position]
                switch byte & 0xC0 {
                case 0xC0:
                    guard position + 1 < bytes.count else { throw DNSError.malformed("cut compression pointer") }
                    let target = Int(byte & 0x3F) << 8 | Int(bytes[position + 1])
                    jumps += 1
                    guard jumps <= 32, target < bytes.count else { throw DNSError.malformed("compression loop") }
                    if !jumped { offset = position + 2 }
                    jumped = true
                    position = target
                case 0x00:
                    let count = Int(byte)
                    if count == 0 {
                        if !jumped { offset = position + 1 }
                        return labels.isEmpty ? "." : labels.joined(separator: ".")
                    }
                    guard position + 1 + count <= bytes.count else { throw DNSError.malformed("label runs past the message") }
                    length += count + 1
                    guard length <= 255 else { throw DNSError.malformed("name longer than 255 bytes") }
                    labels.append(String(decoding: bytes[(position + 1)...(position + count)], as: UTF8.self))
                    position += 1 + count
                default:
                    throw DNSError.malformed("unknown label type")
                }
            }
        }
    }
}
