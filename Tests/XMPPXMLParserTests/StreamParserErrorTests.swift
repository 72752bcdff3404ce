import Testing
import XMPPCore
import XMPPXMLParser

/// Malformed and restricted input must end the stream with the right stream error,
/// however the bytes are split.
@Suite struct StreamParserErrorTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let bytes: [UInt8]
        let condition: StreamError.Condition
        var testDescription: String { "\(name) → \(condition.rawValue)" }

        init(_ name: String, _ text: String, _ condition: StreamError.Condition) {
            self.init(name, Array(text.utf8), condition)
        }

        init(_ name: String, _ bytes: [UInt8], _ condition: StreamError.Condition) {
            self.name = name
            self.bytes = bytes
            self.condition = condition
        }
    }

    static let prologue = Harness.prologue
    static let cases: [Case] = [
        Case("plain text instead of XML", "hello", .notWellFormed),
        Case("angle brackets", "<<<>", .notWellFormed),
        Case("garbage after the header", prologue + "<<<>", .notWellFormed),
        Case("mismatched end tag", prologue + "<message><body></message>", .notWellFormed),
        Case("stray end tag", prologue + "</message>", .notWellFormed),
        Case("mismatched stream close", prologue + "</stream:streem>", .notWellFormed),
        Case("undeclared entity in text", prologue + "<message>&foo;</message>", .notWellFormed),
        Case("undeclared entity in attribute", prologue + "<message to='&foo;'/>", .notWellFormed),
        Case("duplicate attribute", prologue + "<message id='1' id='2'/>", .notWellFormed),
        Case("control character", prologue + "<message>\u{1}</message>", .notWellFormed),
        Case(
            "invalid UTF-8", Array(prologue.utf8) + [0x3C, 0x61, 0x3E, 0xFF, 0xFE, 0x3C, 0x2F, 0x61, 0x3E],
            .notWellFormed),
        Case("content after the stream closed", prologue + "</stream:stream><presence/>", .notWellFormed),
        Case("DOCTYPE", "<?xml version='1.0'?><!DOCTYPE stream:stream>" + Harness.header, .restrictedXML),
        Case("DOCTYPE with external id", "<!DOCTYPE s SYSTEM 'http://example.com/s.dtd'><s/>", .restrictedXML),
        Case("DOCTYPE with internal subset", "<!DOCTYPE s [<!ELEMENT s ANY>]><s/>", .restrictedXML),
        Case(
            "ENTITY declaration", "<?xml version='1.0'?><!DOCTYPE s [<!ENTITY e 'boom'>]><s>&e;</s>",
            .restrictedXML),
        Case("comment before the header", "<?xml version='1.0'?><!-- hi -->" + Harness.header, .restrictedXML),
        Case("comment between stanzas", prologue + "<presence/><!-- keep-alive -->", .restrictedXML),
        Case("comment inside a stanza", prologue + "<message><!-- x --><body/></message>", .restrictedXML),
        Case("processing instruction after the header", prologue + "<?foo bar?>", .restrictedXML),
        Case("processing instruction inside a stanza", prologue + "<message><?foo?></message>", .restrictedXML),
        Case("processing instruction before the header", "<?foo bar?>" + Harness.header, .restrictedXML),
    ]

    @Test(arguments: cases)
    func fedWhole(_ item: Case) {
        let error = Harness.failure([item.bytes[...]])
        #expect(error?.condition == item.condition)
        #expect(error?.streamError.condition == item.condition)
    }

    @Test(arguments: cases)
    func splitAtEveryBytePosition(_ item: Case) {
        for position in 0...item.bytes.count {
            let error = Harness.failure(Harness.split(item.bytes, at: position))
            #expect(error?.condition == item.condition, "split at byte \(position)")
        }
    }

    @Test(arguments: cases)
    func oneByteAtATime(_ item: Case) {
        #expect(Harness.failure(Harness.bytewise(item.bytes))?.condition == item.condition)
    }

    @Test func stanzasBeforeTheErrorAreDelivered() throws {
        let parser = XMLStreamParser()
        let events = try parser.parse(Harness.prologue + "<presence/>")
        #expect(Harness.stanzas(events).map(\.name) == ["presence"])
        let error = #expect(throws: XMLStreamParserError.self) { try parser.parse("<!-- no -->") }
        #expect(error?.condition == .restrictedXML)
        #expect(throws: XMLStreamParserError.self) { try parser.parse(Harness.prologue) }
    }

    @Test(.timeLimit(.minutes(1)))
    func billionLaughsIsRefusedQuickly() {
        var subset = "<!ENTITY lol0 'lol'>"
        for level in 1...9 {
            let refs = String(repeating: "&lol\(level - 1);", count: 10)
            subset += "<!ENTITY lol\(level) '\(refs)'>"
        }
        let input = Array("<?xml version='1.0'?><!DOCTYPE lolz [\(subset)]><lolz>&lol9;</lolz>".utf8)
        #expect(Harness.failure([input[...]])?.condition == .restrictedXML)
        for position in stride(from: 0, through: input.count, by: 7) {
            #expect(Harness.failure(Harness.split(input, at: position))?.condition == .restrictedXML)
        }
    }

    @Test(.bug(id: "parser-lt-lt", "'<<<' is only rejected once a '>' arrives; until then the stream just stalls"))
    func angleBracketsAloneAreRejected() {
        withKnownIssue("libxml2 2.9's push parser waits for '>' before it looks at a start tag") {
            #expect(Harness.failure("<<<")?.condition == .notWellFormed)
            #expect(Harness.failure(Harness.prologue + "<<<")?.condition == .notWellFormed)
        }
    }

    @Test
    func undeclaredPrefixIsRejected() {
        let error = Harness.failure(Harness.prologue + "<foo:message to='a@b'/>")
        #expect(error?.condition == .badNamespacePrefix || error?.condition == .notWellFormed)
    }

    @Test
    func encodingOtherThanUTF8IsRejected() {
        // RFC 6120 §11.6: anything but UTF-8 gets <unsupported-encoding/>.
        let header = "<?xml version='1.0' encoding='ISO-8859-1'?>" + Harness.header
        #expect(Harness.failure(header)?.condition == .unsupportedEncoding)
    }
}
