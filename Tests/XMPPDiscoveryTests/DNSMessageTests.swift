import Testing
import XMPPDiscovery

/// Builds DNS responses the way a server writes them: the question, then answers
/// whose owner name is a compression pointer to the question's name (offset 12).
struct ResponseBuilder {
    var bytes: [UInt8] = []
    var answers: [[UInt8]] = []
    let id: UInt16
    let question: String
    let type: UInt16
    var responseCode: UInt8 = 0

    init(id: UInt16, question: String, type: UInt16) {
        self.id = id
        self.question = question
        self.type = type
    }

    static func name(_ text: String) -> [UInt8] {
        if text == "." { return [0] }
        var out: [UInt8] = []
        for label in text.split(separator: ".") {
            out.append(UInt8(label.utf8.count))
            out += Array(label.utf8)
        }
        return out + [0]
    }

    static func u16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }

    mutating func srv(priority: UInt16, weight: UInt16, port: UInt16, target: String) {
        let data = Self.u16(priority) + Self.u16(weight) + Self.u16(port) + Self.name(target)
        answers.append([0xC0, 0x0C] + Self.u16(33) + Self.u16(1) + [0, 0, 1, 44] + Self.u16(UInt16(data.count)) + data)
    }

    mutating func a(_ octets: [UInt8]) {
        answers.append([0xC0, 0x0C] + Self.u16(1) + Self.u16(1) + [0, 0, 0, 60] + Self.u16(4) + octets)
    }

    mutating func aaaa(_ octets: [UInt8]) {
        answers.append([0xC0, 0x0C] + Self.u16(28) + Self.u16(1) + [0, 0, 0, 60] + Self.u16(16) + octets)
    }

    var message: [UInt8] {
        var out = Self.u16(id) + Self.u16(0x8180 | UInt16(responseCode)) + Self.u16(1) + Self.u16(UInt16(answers.count))
        out += Self.u16(0) + Self.u16(0)
        out += Self.name(question) + Self.u16(type) + Self.u16(1)
        for answer in answers { out += answer }
        return out
    }
}

@Suite("DNS messages")
struct DNSMessageTests {
    @Test("a query carries the id, recursion desired, the name as labels, the type and class IN")
    func query() throws {
        let bytes = try DNSMessage.query(id: 0xBEEF, name: "_xmpp-client._tcp.example.org", type: .srv)
        #expect(bytes[0..<12] == [0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])
        let name: [UInt8] = [12] + Array("_xmpp-client".utf8) + [4] + Array("_tcp".utf8) + [7] + Array("example".utf8)
            + [3] + Array("org".utf8) + [0]
        #expect(Array(bytes[12..<(12 + name.count)]) == name)
        #expect(Array(bytes.suffix(4)) == [0, 33, 0, 1])
        // A trailing dot names the same thing.
        #expect(try DNSMessage.query(id: 1, name: "example.org.", type: .a) == DNSMessage.query(id: 1, name: "example.org", type: .a))
    }

    @Test("names that DNS cannot carry are refused", arguments: ["", ".", "a..b", String(repeating: "x", count: 64) + ".org"])
    func invalidNames(_ name: String) {
        #expect(throws: DNSError.invalidName(name)) { try DNSMessage.query(id: 1, name: name, type: .srv) }
    }

    @Test("SRV answers with compressed owner names are read")
    func srvAnswers() throws {
        var builder = ResponseBuilder(id: 7, question: "_xmpp-client._tcp.example.org", type: 33)
        builder.srv(priority: 10, weight: 60, port: 5222, target: "xmpp1.example.org")
        builder.srv(priority: 20, weight: 0, port: 5269, target: "backup.example.org")
        let response = try DNSMessage.parse(builder.message)
        #expect(response.id == 7)
        #expect(response.responseCode == 0)
        #expect(!response.truncated)
        #expect(response.answers.map(\.name) == ["_xmpp-client._tcp.example.org", "_xmpp-client._tcp.example.org"])
        #expect(response.answers.first?.ttl == 300)
        #expect(
            response.srvRecords == [
                SRVRecord(priority: 10, weight: 60, port: 5222, target: "xmpp1.example.org"),
                SRVRecord(priority: 20, weight: 0, port: 5269, target: "backup.example.org"),
            ]
        )
    }

    @Test("A and AAAA answers become address text")
    func addresses() throws {
        var builder = ResponseBuilder(id: 9, question: "xmpp1.example.org", type: 1)
        builder.a([10, 0, 0, 11])
        builder.aaaa([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        builder.aaaa([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect(try DNSMessage.parse(builder.message).addresses == ["10.0.0.11", "2001:db8::1", "::1"])
    }

    @Test("no such name is an empty answer with response code 3")
    func noSuchName() throws {
        var builder = ResponseBuilder(id: 3, question: "_xmpps-client._tcp.example.org", type: 33)
        builder.responseCode = 3
        let response = try DNSMessage.parse(builder.message)
        #expect(response.responseCode == 3)
        #expect(response.answers.isEmpty)
    }

    @Test("broken responses are errors, never crashes")
    func malformed() throws {
        var builder = ResponseBuilder(id: 1, question: "_xmpp-client._tcp.example.org", type: 33)
        builder.srv(priority: 1, weight: 1, port: 5222, target: "xmpp.example.org")
        let good = builder.message
        // Every truncation of a good message.
        for length in 0..<good.count {
            #expect(throws: DNSError.self) { try DNSMessage.parse(Array(good.prefix(length))) }
        }
        // A compression pointer to itself.
        var loop = ResponseBuilder(id: 1, question: "x.org", type: 33).message
        loop[5] = 0
        loop[7] = 1
        loop += [0xC0, UInt8(loop.count), 0, 33, 0, 1, 0, 0, 0, 1, 0, 7, 0, 1, 0, 1, 0, 1, 0]
        #expect(throws: DNSError.self) { try DNSMessage.parse(loop) }
        // A query (QR not set) is not a response.
        #expect(throws: DNSError.malformed("not a response")) {
            try DNSMessage.parse(try DNSMessage.query(id: 1, name: "example.org", type: .srv))
        }
    }
}
