@testable import Cluster
import Testing
import XMPPCore

/// The binary frames of a node link (`LinkFrameCodec`): what one node encodes the other
/// reads back as it was, and what an authenticated peer sends is still checked where the
/// receiving node relies on it: a frame that is not what its kind says is refused whole
/// (the link then isolates and drops it, `NodeLinkHardeningTests`), and never crashes the
/// node.
@Suite struct LinkFrameTests {
    static let room = try! JID("room@conference.localhost")
    static let real = try! JID("romeo@localhost/a")

    /// Decodes an encoded frame (without its length prefix).
    static func decode(_ bytes: [UInt8]) -> LinkFrameCodec.Decoded {
        bytes.withUnsafeBytes { LinkFrameCodec.decode($0) }
    }

    static func roundTrip(_ frame: LinkFrame, seq: UInt64 = 7) -> LinkFrameCodec.Decoded {
        let encoded = LinkFrameCodec.encode(frame, seq: seq)
        let length = encoded.prefix(4).reduce(0) { $0 << 8 | Int($1) }
        #expect(length == encoded.count - 4, "the prefix counts what follows")
        return decode(Array(encoded.dropFirst(4)))
    }

    /// A frame of `kind` with sequence number 7 and the fields `body` writes.
    static func raw(_ kind: UInt8, _ body: (inout [UInt8]) -> Void = { _ in }) -> [UInt8] {
        var bytes = [kind]
        LinkFrameCodec.appendFixed(7, to: &bytes)
        body(&bytes)
        return bytes
    }

    /// A stanza as a client's stream gives it: namespaces, a prefixed attribute, mixed content.
    static let stanza: XMLElement = {
        var message = XMLElement(
            "message", namespace: Namespace.client, ["to": "room@conference.localhost", "type": "groupchat", "id": "m1"])
        message.attributes.append(XMLAttribute(name: "xml:lang", value: "en"))
        message.attributes.append(XMLAttribute(name: "p:flag", value: "<&'\">", namespace: "urn:example:p"))
        message.append(XMLElement("body", namespace: Namespace.client, text: "Hello <world> & ünïcødé 🎉"))
        var extensionElement = XMLElement("x", namespace: "urn:example:x", ["a": ""])
        extensionElement.append(text: "  ")
        extensionElement.append(XMLElement("deep", namespace: "urn:example:x"))
        extensionElement.append(text: "tail")
        message.append(extensionElement)
        return message
    }()

    @Test func everyKindOfFrameReadsBackAsItWasSent() throws {
        let copies = StanzaCopies(
            stanza: PreparedStanza(Self.stanza), recipients: [Self.real, try JID("juliet@localhost/b")],
            message: .init(room: "room@conference.localhost", id: "m1"), replay: true)
        let frames: [LinkFrame] = [
            .room(Self.stanza, real: Self.real, home: "node2", hops: 3),
            .sessionEnded(room: Self.room, real: Self.real, home: "node1", hops: 0, token: .max),
            .sessionLeft(token: 42),
            .membership(room: Self.room, real: Self.real, entered: true),
            .membership(room: Self.room, real: Self.real, entered: false),
            .deliver(copies),
            .deliver(StanzaCopies(stanza: PreparedStanza(Self.stanza), recipients: [])),
            .user(Self.stanza),
            .addressed(XMLElement("presence", namespace: Namespace.client)),
            .barrier(id: 9, ring: "node1@3,node2@1"),
            .barrierAck(id: 9),
        ]
        for frame in frames {
            #expect(Self.roundTrip(frame, seq: 123_456_789_012) == .frame(seq: 123_456_789_012, frame), "\(frame.kind)")
        }
    }

    @Test func aDeliveredStanzaIsWrittenAsTheRoomsNodeSerializedIt() throws {
        let prepared = PreparedStanza(Self.stanza)
        guard case .frame(_, .deliver(let copies)) = Self.roundTrip(.deliver(StanzaCopies(stanza: prepared, recipients: [Self.real]))) else {
            Issue.record("not a deliver frame")
            return
        }
        #expect(copies.stanza.head == prepared.head && copies.stanza.tail == prepared.tail)
    }

    @Test func aKindThisNodeDoesNotKnowIsSkippedWithItsNumber() {
        #expect(Self.decode(Self.raw(200) { $0 += [1, 2, 3] }) == .unknown(seq: 7, kind: 200))
    }

    @Test func deliverFramesWhosePayloadIsNotAStanzaAreRefused() {
        for payload in ["", "<x/>", "<message", "message/>", String(repeating: "A", count: 4096), "<messagex/>"] {
            let frame = Self.raw(LinkFrameCodec.Kind.deliver.rawValue) { bytes in
                bytes.append(0)
                LinkFrameCodec.appendNumber(1, to: &bytes)
                LinkFrameCodec.appendParts(of: LinkFrameTests.real, to: &bytes)
                LinkFrameCodec.appendString(payload, to: &bytes)
            }
            #expect(Self.decode(frame) == .malformed, "\(payload.prefix(20))")
        }
    }

    @Test func aDeliverFrameWithEmptyRecipientsDeliversToNobody() throws {
        let frame = Self.raw(LinkFrameCodec.Kind.deliver.rawValue) { bytes in
            bytes.append(0)
            LinkFrameCodec.appendNumber(2, to: &bytes)
            bytes.append(0)
            LinkFrameCodec.appendString("", to: &bytes)
            bytes.append(3)
            LinkFrameCodec.appendString("romeo", to: &bytes)
            LinkFrameCodec.appendString("", to: &bytes)
            LinkFrameCodec.appendString("a", to: &bytes)
            LinkFrameCodec.appendString("<message/>", to: &bytes)
        }
        guard case .frame(_, .deliver(let copies)) = Self.decode(frame) else {
            Issue.record("not a deliver frame")
            return
        }
        #expect(copies.recipients.isEmpty)
    }

    /// Every prefix of every valid frame is refused (a field cut short), as are the frame
    /// with a byte more and the frame with each byte changed to 0xFF: none crashes.
    @Test func truncatedExtendedOrCorruptedFramesAreRefusedOrReadSafely() throws {
        let frames: [LinkFrame] = [
            .room(Self.stanza, real: Self.real, home: "node2", hops: 1),
            .sessionEnded(room: Self.room, real: Self.real, home: "node1", hops: 0, token: 3),
            .membership(room: Self.room, real: Self.real, entered: true),
            .deliver(StanzaCopies(stanza: PreparedStanza(Self.stanza), recipients: [Self.real], message: .init(room: "r", id: "i"))),
            .barrier(id: 1, ring: "node1@1"),
        ]
        for frame in frames {
            let body = Array(LinkFrameCodec.encode(frame, seq: 1).dropFirst(4))
            for length in 0..<body.count {
                #expect(Self.decode(Array(body.prefix(length))) == .malformed, "\(frame.kind) cut at \(length)")
            }
            #expect(Self.decode(body + [0]) == .malformed, "\(frame.kind) with a byte more")
            for index in 9..<body.count {
                var corrupted = body
                corrupted[index] = 0xFF
                _ = Self.decode(corrupted)  // refused or read as some other valid frame; never a crash
            }
        }
    }

    @Test func typedFramesMissingWhatTheyNeedAreRefused() {
        let kind = LinkFrameCodec.Kind.self
        let incomplete: [[UInt8]] = [
            // a room address that is not one
            Self.raw(kind.sessionEnded.rawValue) { bytes in
                LinkFrameCodec.appendString("@", to: &bytes)
                LinkFrameCodec.appendString("romeo@localhost/a", to: &bytes)
                LinkFrameCodec.appendString("node1", to: &bytes)
                LinkFrameCodec.appendNumber(0, to: &bytes)
                LinkFrameCodec.appendFixed(3, to: &bytes)
            },
            // no home
            Self.raw(kind.sessionEnded.rawValue) { bytes in
                LinkFrameCodec.appendString("room@conference.localhost", to: &bytes)
                LinkFrameCodec.appendString("romeo@localhost/a", to: &bytes)
                LinkFrameCodec.appendString("", to: &bytes)
                LinkFrameCodec.appendNumber(0, to: &bytes)
                LinkFrameCodec.appendFixed(3, to: &bytes)
            },
            Self.raw(kind.sessionLeft.rawValue),
            Self.raw(kind.membership.rawValue) { LinkFrameCodec.appendString("room@conference.localhost", to: &$0) },
            Self.raw(kind.membership.rawValue) { bytes in
                LinkFrameCodec.appendString("room@conference.localhost", to: &bytes)
                LinkFrameCodec.appendString("a@b@c/", to: &bytes)
                bytes.append(1)
            },
            Self.raw(kind.membership.rawValue) { bytes in
                LinkFrameCodec.appendString("room@conference.localhost", to: &bytes)
                LinkFrameCodec.appendString("romeo@localhost/a", to: &bytes)
                bytes.append(2)  // neither entered nor left
            },
            // a sequence number cut short
            [kind.barrierAck.rawValue, 0, 0, 0],
            // a deliver frame with flags it does not know
            Self.raw(kind.deliver.rawValue) { $0.append(4) },
            // a recipient whose parts say it has a resource, and none follows
            Self.raw(kind.deliver.rawValue) { bytes in
                bytes.append(0)
                LinkFrameCodec.appendNumber(1, to: &bytes)
                bytes.append(2)
                LinkFrameCodec.appendString("localhost", to: &bytes)
            },
            // a recipient with parts flags it does not know
            Self.raw(kind.deliver.rawValue) { bytes in
                bytes.append(0)
                LinkFrameCodec.appendNumber(1, to: &bytes)
                bytes.append(4)
                LinkFrameCodec.appendString("localhost", to: &bytes)
                LinkFrameCodec.appendString("<message/>", to: &bytes)
            },
        ]
        for frame in incomplete {
            #expect(Self.decode(frame) == .malformed, "\(frame)")
        }
    }

    /// A stanza read from a frame is written to clients again: it must be what an XML
    /// parser could have given.
    @Test func elementsXMLCouldNotCarryAreRefused() {
        func user(_ write: (inout [UInt8]) -> Void) -> [UInt8] { Self.raw(LinkFrameCodec.Kind.user.rawValue, write) }
        func element(name: String, text: String = "", attribute: (String, String)? = nil) -> [UInt8] {
            element(name: name, text: text, attributes: attribute.map { [($0.0, $0.1, "")] } ?? [])
        }
        func element(name: String, text: String = "", attributes: [(String, String, String)]) -> [UInt8] {
            user { bytes in
                LinkFrameCodec.appendString(name, to: &bytes)
                LinkFrameCodec.appendString(Namespace.client, to: &bytes)
                LinkFrameCodec.appendNumber(UInt64(attributes.count), to: &bytes)
                for (name, value, namespace) in attributes {
                    LinkFrameCodec.appendString(name, to: &bytes)
                    LinkFrameCodec.appendString(value, to: &bytes)
                    LinkFrameCodec.appendString(namespace, to: &bytes)
                }
                LinkFrameCodec.appendNumber(1, to: &bytes)
                bytes.append(1)
                LinkFrameCodec.appendString(text, to: &bytes)
            }
        }
        #expect(Self.decode(element(name: "message", text: "fine")) != .malformed)
        #expect(Self.decode(element(name: "message", attributes: [("xml:lang", "en", ""), ("p:flag", "1", "urn:p"), ("to", "x", "")])) != .malformed)
        for refused in [
            element(name: ""), element(name: "mes sage"), element(name: "a<b"), element(name: "a='"),
            element(name: "1x"), element(name: "-x"), element(name: "p:message"), element(name: "!x"),
            element(name: "message", attributes: [("xmlns", "urn:x", "")]),
            element(name: "message", attributes: [("xmlns:p", "urn:x", "")]),
            element(name: "message", attributes: [("p:flag", "1", "")]),  // a prefix bound to nothing
            element(name: "message", attributes: [("flag", "1", "urn:p")]),  // a namespace without a prefix
            element(name: "message", attributes: [("a:b:c", "1", "urn:p")]),
            element(name: "message", attributes: [(":b", "1", "urn:p")]),
            element(name: "message", attributes: [("to", "a", ""), ("to", "b", "")]),
            element(name: "message", attributes: (0..<40).map { ("a\($0)", "", "") } + [("a7", "", "")]),
            element(name: "message", text: "\u{0}"), element(name: "message", text: "bell \u{7}"),
            element(name: "message", attribute: ("a", "\u{1}")), element(name: "message", attribute: ("", "v")),
            element(name: "message", attribute: ("a b", "v")),
        ] {
            #expect(Self.decode(refused) == .malformed)
        }
        // Bytes that are not UTF-8.
        let invalid = user { bytes in
            LinkFrameCodec.appendNumber(2, to: &bytes)
            bytes += [0xC3, 0x28]
            LinkFrameCodec.appendString("", to: &bytes)
            LinkFrameCodec.appendNumber(0, to: &bytes)
            LinkFrameCodec.appendNumber(0, to: &bytes)
        }
        #expect(Self.decode(invalid) == .malformed)
        // A child of a kind that is neither element nor text.
        let strangeChild = user { bytes in
            LinkFrameCodec.appendString("message", to: &bytes)
            LinkFrameCodec.appendString("", to: &bytes)
            LinkFrameCodec.appendNumber(0, to: &bytes)
            LinkFrameCodec.appendNumber(1, to: &bytes)
            bytes.append(2)
            LinkFrameCodec.appendString("x", to: &bytes)
        }
        #expect(Self.decode(strangeChild) == .malformed)
    }

    @Test func countsLargerThanTheFrameAndNestingBeyondTheLimitAreRefusedWithoutAllocating() {
        let huge = Self.raw(LinkFrameCodec.Kind.user.rawValue) { bytes in
            LinkFrameCodec.appendString("message", to: &bytes)
            LinkFrameCodec.appendString("", to: &bytes)
            LinkFrameCodec.appendNumber(UInt64.max >> 1, to: &bytes)  // attributes
        }
        #expect(Self.decode(huge) == .malformed)
        let overlong = Self.raw(LinkFrameCodec.Kind.barrier.rawValue) { bytes in
            LinkFrameCodec.appendFixed(1, to: &bytes)
            bytes += Array(repeating: 0xFF, count: 11)  // a number of more than 64 bits
        }
        #expect(Self.decode(overlong) == .malformed)
        let beyond64Bits = Self.raw(LinkFrameCodec.Kind.barrier.rawValue) { bytes in
            LinkFrameCodec.appendFixed(1, to: &bytes)
            bytes += Array(repeating: 0xFF, count: 9) + [0x02]  // the tenth byte says bit 65
        }
        #expect(Self.decode(beyond64Bits) == .malformed)
        var largest: [UInt8] = []
        LinkFrameCodec.appendNumber(.max, to: &largest)
        let lastNumber = Self.raw(LinkFrameCodec.Kind.barrier.rawValue) { bytes in
            LinkFrameCodec.appendFixed(1, to: &bytes)
            LinkFrameCodec.appendString("r", to: &bytes)
        }
        #expect(largest.count == 10 && Self.decode(lastNumber) == .frame(seq: 7, .barrier(id: 1, ring: "r")))

        // Children of two bytes each (empty text): more than one node per 8 bytes of the
        // frame is refused before anything is reserved for them.
        let manyChildren = Self.raw(LinkFrameCodec.Kind.user.rawValue) { bytes in
            LinkFrameCodec.appendString("message", to: &bytes)
            LinkFrameCodec.appendString("", to: &bytes)
            LinkFrameCodec.appendNumber(0, to: &bytes)
            LinkFrameCodec.appendNumber(10_000, to: &bytes)
            for _ in 0..<10_000 { bytes += [1, 0] }
        }
        #expect(Self.decode(manyChildren) == .malformed)
        let someChildren = XMLElement(
            name: "message", namespace: Namespace.client, children: Array(repeating: .text("some text"), count: 1_000))
        #expect(Self.roundTrip(.user(someChildren)) == .frame(seq: 7, .user(someChildren)), "as many as real stanzas have")

        func nested(_ depth: Int) -> XMLElement {
            var element = XMLElement("x", namespace: "urn:example:x")
            for _ in 1..<depth { element = XMLElement("x", namespace: "urn:example:x", children: [element]) }
            return element
        }
        #expect(Self.roundTrip(.user(nested(LinkFrameCodec.maxDepth))) != .malformed)
        #expect(Self.roundTrip(.user(nested(LinkFrameCodec.maxDepth + 1))) == .malformed)
    }
}
