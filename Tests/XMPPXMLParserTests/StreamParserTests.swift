import Testing
import XMPPCore
import XMPPXMLParser

@Suite struct StreamParserTests {
    @Test func streamOpenReportsHeaderAttributesAndDefaultNamespace() throws {
        let events = try Harness.events(Harness.prologue)
        #expect(events.count == 1)
        guard case .streamOpen(let header, let defaultNamespace)? = events.first else {
            Issue.record("expected a stream header, got \(events)")
            return
        }
        #expect(header.name == "stream")
        #expect(header.namespace == Harness.streamNS)
        #expect(header[attribute: "to"] == "example.com")
        #expect(header[attribute: "version"] == "1.0")
        #expect(header[attribute: "xml:lang"] == "en")
        #expect(defaultNamespace == "jabber:client")
        // Namespace declarations are not attributes.
        #expect(header.attributes.map(\.name) == ["to", "version", "xml:lang"])
        #expect(header.children.isEmpty)
    }

    @Test func headerWithoutDefaultNamespaceReportsNil() throws {
        let events = try Harness.events("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='a'>")
        guard case .streamOpen(_, let defaultNamespace)? = events.first else {
            Issue.record("expected a stream header, got \(events)")
            return
        }
        #expect(defaultNamespace == nil)
    }

    @Test func stanzasInheritTheStreamDefaultNamespace() throws {
        let message = try Harness.stanza("<message to='romeo@example.net'><body>hi</body></message>")
        #expect(message.name == "message")
        #expect(message.namespace == "jabber:client")
        #expect(message.stanzaKind == .message)
        #expect(message.child("body")?.namespace == "jabber:client")
        #expect(message[attribute: "to"] == "romeo@example.net")
    }

    @Test func elementsCarryResolvedNamespaces() throws {
        let iq = try Harness.stanza(
            "<iq type='get' id='1'><query xmlns='jabber:iq:roster'><item jid='a@b'/></query>"
                + "<a:x xmlns:a='urn:a'><a:y/><z/></a:x><e xmlns=''/></iq>"
        )
        let query = try #require(iq.child("query"))
        #expect(query.namespace == "jabber:iq:roster")
        #expect(query.child("item")?.namespace == "jabber:iq:roster")
        let x = try #require(iq.child("x"))
        #expect(x.name == "x", "the prefix is not part of the name")
        #expect(x.namespace == "urn:a")
        #expect(x.child("y")?.namespace == "urn:a")
        #expect(x.child("z")?.namespace == "jabber:client", "a prefixed parent does not change the default")
        #expect(iq.child("e")?.namespace == "")
    }

    @Test func streamNamespaceElementsAreRecognised() throws {
        let features = try Harness.stanza(
            "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        )
        #expect(features.name == "features")
        #expect(features.namespace == Harness.streamNS)
        #expect(features.stanzaKind == nil)
        #expect(features.child("bind")?.namespace == "urn:ietf:params:xml:ns:xmpp-bind")
    }

    @Test func textEntitiesAndCharacterReferencesAreDecoded() throws {
        let stanza = "<message><body>&lt;b&gt; &amp; &quot;x&quot; &apos;y&apos; &#x41;&#66;</body></message>"
        let body = try Harness.stanza(stanza).child("body")
        #expect(body?.text == "<b> & \"x\" 'y' AB")
    }

    @Test func attributeEntitiesOtherThanAmpersandAreDecoded() throws {
        let message = try Harness.stanza("<message a='&lt;&gt;&quot;&apos;&#x41;&#66;' b=\"it's\"/>")
        #expect(message[attribute: "a"] == "<>\"'AB")
        #expect(message[attribute: "b"] == "it's")
    }

    @Test
    func ampersandInAttributeIsDecoded() throws {
        let message = try Harness.stanza("<message id='a&amp;b' x='&#38;' y='&#x26;' z='&amp;#38;'/>")
        #expect(message[attribute: "id"] == "a&b")
        #expect(message[attribute: "x"] == "&")
        #expect(message[attribute: "y"] == "&")
        #expect(message[attribute: "z"] == "&#38;")
    }

    @Test func cdataBecomesText() throws {
        let body = try Harness.stanza("<message><body>a<![CDATA[<b> & </b>]]>c</body></message>").child("body")
        #expect(body?.text == "a<b> & </b>c")
        #expect(body?.children.count == 1, "adjacent text and CDATA merge into one text node")
    }

    @Test func mixedContentKeepsOrder() throws {
        let p = try Harness.stanza("<message><p>one <b>two</b> three</p></message>").child("p")
        #expect(
            p?.children == [
                .text("one "), .element(XMLElement("b", namespace: "jabber:client", text: "two")),
                .text(" three"),
            ])
    }

    @Test func whitespaceKeepAlivesProduceNoEvents() throws {
        let parser = XMLStreamParser()
        #expect(try parser.parse(Harness.prologue).count == 1)
        #expect(try parser.parse(" ") == [])
        #expect(try parser.parse("\n\t \r\n") == [])
        #expect(try parser.parse("<presence/>") == [.element(XMLElement("presence", namespace: "jabber:client"))])
        #expect(try parser.parse("   ") == [])
    }

    @Test func closingTagEndsTheStream() throws {
        let parser = XMLStreamParser()
        _ = try parser.parse(Harness.prologue)
        #expect(try parser.parse("</stream:stream>") == [.streamClose])
    }

    @Test func resetAcceptsANewHeaderWithADeclaration() throws {
        let parser = XMLStreamParser()
        _ = try parser.parse(Harness.prologue + "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        parser.reset()
        let events = try parser.parse(Harness.prologue + "<presence/>")
        #expect(events.count == 2)
        guard case .streamOpen(let header, "jabber:client")? = events.first else {
            Issue.record("expected a new stream header, got \(events)")
            return
        }
        #expect(header[attribute: "to"] == "example.com")
        #expect(Harness.stanzas(events).map(\.name) == ["presence"])
    }

    @Test func resetInTheMiddleOfAStanzaForgetsIt() throws {
        let parser = XMLStreamParser()
        _ = try parser.parse(Harness.prologue + "<message><body>half")
        parser.reset()
        let events = try parser.parse(Harness.header + "<presence/>")
        #expect(Harness.stanzas(events) == [XMLElement("presence", namespace: "jabber:client")])
    }

    @Test func resetClearsAFailure() throws {
        let parser = XMLStreamParser()
        #expect(throws: XMLStreamParserError.self) { try parser.parse("<<<>") }
        parser.reset()
        #expect(try parser.parse(Harness.prologue).count == 1)
    }

    @Test func withoutResetASecondDeclarationIsRejected() throws {
        let parser = XMLStreamParser()
        _ = try parser.parse(Harness.prologue)
        let error = #expect(throws: XMLStreamParserError.self) { try parser.parse(Harness.prologue) }
        #expect(error?.condition == .notWellFormed)
    }
}
