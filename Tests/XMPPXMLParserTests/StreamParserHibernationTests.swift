import Testing
import XMPPCore

@testable import XMPPXMLParser

/// An idle stream's parser gives its libxml2 context back (`hibernate`) and picks the
/// stream up again at the next input, as if nothing had happened.
@Suite struct StreamParserHibernationTests {
    @Test func anIdleStreamReleasesItsContextAndReadsTheNextStanzasAsBefore() throws {
        let parser = XMLStreamParser()
        #expect(!parser.hibernate(), "no stream yet")
        _ = try parser.parse(Harness.prologue)
        #expect(parser.hibernate(), "right after the header")
        #expect(parser.hibernating)
        let first = try parser.parse("<message id='1' xml:lang='en'><body>hi</body></message>")
        #expect(!parser.hibernating)
        #expect(first.count == 1, "the header is not reported again: \(first)")
        let stanza = try #require(Harness.stanzas(first).first)
        #expect(stanza.namespace == Namespace.client && stanza[attribute: "id"] == "1")
        #expect(stanza.child("body")?.text == "hi" && stanza[attribute: "xml:lang"] == "en")
        for round in 2...4 {
            #expect(parser.hibernate())
            // A stanza in pieces after a release.
            let text = "<presence id='\(round)'><status>away</status></presence>"
            let split = text.index(text.startIndex, offsetBy: 7)
            #expect(try parser.parse(String(text[..<split])).isEmpty)
            let events = try parser.parse(String(text[split...]))
            #expect(Harness.stanzas(events).map { $0[attribute: "id"] } == ["\(round)"])
        }
        #expect(parser.hibernate())
        #expect(try parser.parse("</stream:stream>") == [.streamClose])
    }

    /// Whitespace after a stanza (a keep-alive, a newline) stays unconsumed in libxml2
    /// until more input comes: it does not keep the parser from being released, and
    /// whitespace alone does not wake a released one.
    @Test func keepAlivesNeitherPreventNorEndARelease() throws {
        let parser = XMLStreamParser()
        _ = try parser.parse(Harness.prologue)
        _ = try parser.parse("<presence/>\n")
        #expect(parser.hibernate(), "a newline after the stanza")
        #expect(try parser.parse(" ").isEmpty)
        #expect(try parser.parse("\r\n\t ").isEmpty)
        #expect(parser.hibernating, "keep-alives leave it released")
        let events = try parser.parse("  <message id='m'><body>after</body></message> ")
        #expect(Harness.stanzas(events).map { $0[attribute: "id"] } == ["m"])
        #expect(parser.hibernate(), "whitespace after it again")
        #expect(try parser.parse("</stream:stream>") == [.streamClose])
    }

    @Test func nothingIsReleasedInTheMiddleOfAStanza() throws {
        let parser = XMLStreamParser()
        _ = try parser.parse(Harness.prologue)
        #expect(try parser.parse("<presen").isEmpty)
        #expect(!parser.hibernate(), "half a start tag")
        #expect(Harness.stanzas(try parser.parse("ce id='p'/>")).count == 1)
        #expect(try parser.parse("<message id='m'><body>half").isEmpty)
        #expect(!parser.hibernate())
        #expect(!parser.hibernating)
        let events = try parser.parse(" and half</body></message>")
        #expect(Harness.stanzas(events).first?.child("body")?.text == "half and half")
        #expect(parser.hibernate())
    }

    @Test func aStreamThatFailedOrWasResetIsNotHibernating() throws {
        let failed = XMLStreamParser()
        _ = try failed.parse(Harness.prologue)
        #expect(throws: XMLStreamParserError.self) { try failed.parse("<message><</message>") }
        #expect(!failed.hibernate())

        let restarted = XMLStreamParser()
        _ = try restarted.parse(Harness.prologue)
        #expect(restarted.hibernate())
        restarted.reset()
        #expect(!restarted.hibernating)
        let events = try restarted.parse(Harness.prologue + "<iq id='after-reset' type='get'/>")
        #expect(events.count == 2, "a new header after a reset is reported: \(events)")
    }

    /// The limits hold across a release: the stanza size bound counts from the stanza's
    /// start, not from the replayed header.
    @Test func limitsStillApplyAfterARelease() throws {
        var options = XMLStreamParser.Options()
        options.maxStanzaBytes = 2048
        let parser = XMLStreamParser(options: options)
        _ = try parser.parse(Harness.prologue)
        #expect(parser.hibernate())
        #expect(Harness.stanzas(try parser.parse(Harness.message(bytes: 2000))).count == 1)
        #expect(parser.hibernate())
        #expect(throws: XMLStreamParserError.self) { try parser.parse(Harness.message(bytes: 5000)) }
    }
}
