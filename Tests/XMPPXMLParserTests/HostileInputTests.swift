import Testing
import XMPPCore
import XMPPXMLParser

/// Input written to hurt the parser: huge namespaces repeated over thousands of tiny
/// elements, thousands of attributes, endless character references, prefixed attributes
/// that must survive being written out again, other encodings.
@Suite struct HostileInputTests {
    /// A 128 KiB namespace URI on a stanza with thousands of children in it: every
    /// element carries the URI, and each must share one copy (each copy used to be its
    /// own heap string: 231 MiB for a 96 KiB stanza).
    @Test func aLongNamespaceIsStoredOncePerStanza() throws {
        let uri = "urn:" + String(repeating: "n", count: 128 * 1024)
        let stanza = "<message><x xmlns='\(uri)'>" + String(repeating: "<y/>", count: 5_000) + "</x></message>"
        let message = try Harness.stanza(stanza)
        let x = try #require(message.child("x"))
        #expect(x.elements.count == 5_000)
        var addresses = Set<UInt>()
        for element in [x] + x.elements {
            #expect(element.namespace == uri)
            var namespace = element.namespace
            namespace.withUTF8 { addresses.insert(UInt(bitPattern: $0.baseAddress)) }
        }
        #expect(addresses.count == 1, "\(addresses.count) copies of the namespace")
    }

    @Test func aStanzaWithTooManyElementsIsRefusedHoweverSplit() {
        var options = XMLStreamParser.Options()
        options.maxElementsPerStanza = 100
        let fits = Harness.prologue + "<message>" + String(repeating: "<y/>", count: 99) + "</message>"
        #expect(Harness.failure(fits, options: options) == nil)
        let over = Array((Harness.prologue + "<message>" + String(repeating: "<y/>", count: 100) + "</message>").utf8)
        #expect(Harness.failure([over[...]], options: options)?.condition == .policyViolation)
        #expect(Harness.failure(Harness.bytewise(over), options: options)?.condition == .policyViolation)
        // The count is per stanza: many small stanzas add up to more without harm.
        let many = Harness.prologue + String(repeating: "<message><y/><y/></message>", count: 100)
        #expect(Harness.failure(many, options: options) == nil)
    }

    @Test func theDefaultElementBoundStopsAStanzaOfTinyElements() {
        let stanza = "<message>" + String(repeating: "<y/>", count: 20_000) + "</message>"
        #expect(Harness.failure(Harness.prologue + stanza)?.condition == .policyViolation)
    }

    /// 35,700 attributes on the stream header took libxml2 0.44 s to check for
    /// duplicates; they are refused before libxml2 sees them.
    @Test func aHeaderWithThousandsOfAttributesIsRefused() {
        let attributes = (0..<35_700).map { " a\($0)='1'" }.joined()
        let header = "<stream:stream xmlns='jabber:client' xmlns:stream='\(Harness.streamNS)'\(attributes)>"
        #expect(Harness.failure(Harness.declaration + header)?.condition == .policyViolation)
    }

    @Test func attributesPerElementAreBoundedHoweverSplit() {
        let fits = "<message " + (0..<64).map { "a\($0)='=\">'" }.joined(separator: " ") + "/>"
        let over = "<message " + (0..<65).map { "a\($0)='1'" }.joined(separator: " ") + "/>"
        #expect(Harness.failure(Harness.prologue + fits) == nil, "'=' and '>' inside values are not markup")
        let bytes = Array((Harness.prologue + over).utf8)
        #expect(Harness.failure([bytes[...]])?.condition == .policyViolation)
        #expect(Harness.failure(Harness.bytewise(bytes))?.condition == .policyViolation)
        // Markup-like text in CDATA sections and in character data is not counted.
        let cdata = "<message><body><![CDATA[<a " + String(repeating: "b=1 ", count: 200) + "]]></body></message>"
        #expect(Harness.failure(Harness.prologue + cdata) == nil)
        let text = "<message><body>" + String(repeating: "x=1 ", count: 200) + "</body></message>"
        #expect(Harness.failure(Harness.prologue + text) == nil)
    }

    @Test func anOversizedStreamHeaderIsRefused() {
        let header = "<stream:stream xmlns='jabber:client' xmlns:stream='\(Harness.streamNS)' to='"
            + String(repeating: "a", count: 9_000) + "'>"
        #expect(Harness.failure(Harness.declaration + header)?.condition == .policyViolation)
    }

    /// libxml2 reports each character reference as its own piece of text; the text is
    /// gathered in place (it used to be copied again for every piece).
    @Test func textOfManyCharacterReferencesIsGatheredWhole() throws {
        let count = 20_000
        let stanza = "<message><body>" + String(repeating: "&#65;&amp;", count: count) + "</body></message>"
        let body = try #require(try Harness.stanza(stanza).child("body"))
        #expect(body.children.count == 1)
        #expect(body.text == String(repeating: "A&", count: count))
        let bytes = Array((Harness.prologue + stanza).utf8)
        let split = Harness.stanzas(try Harness.events(Harness.split(bytes, at: bytes.count / 2)))
        #expect(split.first?.child("body")?.text == body.text)
    }

    @Test func textAroundChildElementsKeepsItsPlace() throws {
        let p = try Harness.stanza("<message><p>a&#66;<b>c</b>d&#69;<i/>f</p></message>").child("p")
        #expect(p?.children == [.text("aB"), .element(XMLElement("b", namespace: "jabber:client", text: "c")), .text("dE"),
            .element(XMLElement("i", namespace: "jabber:client")), .text("f")])
    }

    @Test(arguments: [
        ("UTF-16 LE with BOM", [0xFF, 0xFE] + utf16("<?xml version='1.0'?><stream:stream>", bigEndian: false)),
        ("UTF-16 BE with BOM", [0xFE, 0xFF] + utf16("<?xml version='1.0'?><stream:stream>", bigEndian: true)),
        ("UTF-16 LE without BOM", utf16("<stream:stream xmlns='jabber:client'>", bigEndian: false)),
        ("UTF-16 BE without BOM", utf16("<stream:stream xmlns='jabber:client'>", bigEndian: true)),
        ("declared ISO-8859-1", Array(("<?xml version='1.0' encoding='ISO-8859-1'?>" + Harness.header).utf8)),
    ])
    func streamsInOtherEncodingsAreRefused(_ name: String, _ bytes: [UInt8]) {
        #expect(Harness.failure([bytes[...]])?.condition == .unsupportedEncoding, "\(name)")
        #expect(Harness.failure(Harness.bytewise(bytes))?.condition == .unsupportedEncoding, "\(name) byte by byte")
    }

    /// libxml2 keeps every name and namespace URI it has seen in a dictionary that lives
    /// as long as its context: a long stream of ever new names grew it without bound.
    /// The parser starts a fresh context between stanzas once it has taken in a MiB,
    /// and the stanzas parse the same across the change.
    @Test func aLongStreamOfNewNamesRenewsTheContext() throws {
        let parser = XMLStreamParser()
        _ = try parser.parse(Harness.prologue)
        var received = 0
        for batch in 0..<300 {
            var input = ""
            for index in 0..<10 {
                let unique = "urn:unique:\(batch):\(index):" + String(repeating: "n", count: 400)
                input += "<message id='m\(batch)-\(index)'><x xmlns='\(unique)' a\(batch)x\(index)='1'/></message>"
            }
            for event in try parser.parse(input) {
                guard case .element(let message) = event else {
                    Issue.record("unexpected \(event)")
                    continue
                }
                #expect(message.id == "m\(received / 10)-\(received % 10)")
                #expect(message.namespace == "jabber:client")
                #expect(message.elements.first?.namespace.hasPrefix("urn:unique:\(received / 10):") == true)
                received += 1
            }
        }
        #expect(received == 3000)
        #expect(parser.contextRenewals >= 1, "1.2 MB of new names went into one libxml2 dictionary")
        // The stream goes on normally afterwards, and its end is still seen.
        let tail = try parser.parse("<presence/></stream:stream>")
        #expect(tail.count == 2)
        #expect(tail.last == .streamClose)
    }

    @Test func stanzasParseTheSameAcrossRenewals() throws {
        var options = XMLStreamParser.Options()
        options.maxDictionaryBytes = 1
        let parser = XMLStreamParser(options: options)
        _ = try parser.parse(Harness.prologue)
        for index in 0..<5 {
            let events = try parser.parse("<message id='\(index)'><body>hi</body></message>")
            #expect(Harness.stanzas(events).map(\.id) == ["\(index)"], "\(events)")
        }
        // Once after the header, once after each stanza.
        #expect(parser.contextRenewals == 6)
        #expect(try parser.parse("</stream:stream>") == [.streamClose])
    }

    /// The header's size bound counts only the bytes before a header: a stream that has
    /// carried more than that and then closes ends cleanly.
    @Test func aLongStreamStillClosesCleanly() throws {
        let parser = XMLStreamParser()
        _ = try parser.parse(Harness.prologue)
        let stanzas = String(repeating: Harness.message(bytes: 1000), count: 20)
        #expect(Harness.stanzas(try parser.parse(stanzas)).count == 20)
        #expect(try parser.parse("</stream:stream>") == [.streamClose])
    }

    @Test func aUTF8ByteOrderMarkIsAccepted() throws {
        let bytes: [UInt8] = [0xEF, 0xBB, 0xBF] + Array((Harness.prologue + "<presence/>").utf8)
        #expect(Harness.stanzas(try Harness.events([bytes[...]])).map(\.name) == ["presence"])
    }

    static func utf16(_ text: String, bigEndian: Bool) -> [UInt8] {
        text.utf16.flatMap { unit in
            bigEndian ? [UInt8(unit >> 8), UInt8(unit & 0xFF)] : [UInt8(unit & 0xFF), UInt8(unit >> 8)]
        }
    }
}

/// A prefixed attribute (`p:flag`, the prefix declared on the element) used to be written
/// out with its prefix but without the declaration: every recipient's parser failed.
@Suite struct PrefixedAttributeTests {
    @Test func aPrefixedAttributeIsWrittenWithItsDeclaration() throws {
        let message = try Harness.stanza("<message xmlns:p='urn:p' p:flag='1'><body>hi</body></message>")
        #expect(message[attribute: "p:flag"] == "1")
        let text = message.serialized(parentNamespace: "jabber:client")
        #expect(text.contains("xmlns:p=\"urn:p\""), "\(text)")
        #expect(try Harness.stanza(text) == message)
    }

    @Test func prefixesDeclaredHigherUpAreDeclaredWhereUsed() throws {
        let message = try Harness.stanza(
            "<message xmlns:p='urn:p' xmlns:q='urn:q'><x xmlns='urn:x' p:a='1' q:b='2'><y p:c='3'/></x></message>"
        )
        let x = try #require(message.child("x"))
        // Each element stands alone: a room may send `x` without its parent.
        for element in [message, x, x.elements[0]] {
            let text = element.serialized(parentNamespace: "jabber:client")
            #expect(try Harness.stanza(text) == element, "\(text)")
        }
    }

    @Test func aPrefixBoundTwiceInOneElementGetsAFreshPrefix() throws {
        let element = XMLElement(
            name: "message",
            namespace: "jabber:client",
            attributes: [
                XMLAttribute(name: "p:a", value: "1", namespace: "urn:one"),
                XMLAttribute(name: "p:b", value: "2", namespace: "urn:two"),
                XMLAttribute(name: "xmlns:c", value: "3", namespace: "urn:three"),
            ]
        )
        let parsed = try Harness.stanza(element.serialized(parentNamespace: "jabber:client"))
        #expect(parsed.attributes.map(\.namespace) == ["urn:one", "urn:two", "urn:three"])
        #expect(parsed.attributes.map(\.value) == ["1", "2", "3"])
    }

    /// libxml2 hands an escaped '&' in a namespace URI over as "&#38;" (it substitutes no
    /// entities); read so, the URI changed and was written again as an invalid one.
    @Test func anAmpersandInANamespaceSurvivesTheRoundTrip() throws {
        let message = try Harness.stanza("<message><x xmlns='urn:x?a=1&amp;b=2'/></message>")
        #expect(message.child("x")?.namespace == "urn:x?a=1&b=2")
        #expect(try Harness.stanza(message.serialized(parentNamespace: "jabber:client")) == message)
    }

    /// An element in the stream namespace inside a stanza is written with its own
    /// declaration, so it survives storage and node links, where no header declares it.
    @Test func aStreamNamespaceElementInsideAStanzaDeclaresItsPrefix() throws {
        let message = try Harness.stanza("<message><s:error xmlns:s='\(Harness.streamNS)'/></message>")
        let text = message.serialized(parentNamespace: "jabber:client")
        let parser = XMLStreamParser()
        let events = try parser.parse("<stream xmlns='jabber:client'>" + text)
        #expect(Harness.stanzas(events) == [message])
    }
}
