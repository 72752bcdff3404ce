import Testing
import XMPPCore
import XMPPXMLParser

/// A whole stream, however the network cuts it up, must give the same events as the
/// stream fed in one piece.
@Suite struct StreamSplittingTests {
    struct Stream: CustomTestStringConvertible, Sendable {
        let name: String
        let text: String
        /// Stanzas (depth-1 elements) the stream holds.
        let stanzaCount: Int
        var testDescription: String { name }
        var bytes: [UInt8] { Array(text.utf8) }
    }

    static let streams: [Stream] = [
        Stream(
            name: "session with entities, UTF-8, CDATA and keep-alives",
            text: Harness.prologue
                + "<iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                + "<resource>balcony</resource></bind></iq>\n"
                + "<presence><show>chat</show><status>Tom &amp; Jerry &lt;3</status></presence> \n\t "
                + "<message to='juliet@example.com/balcony' id='m&amp;1' type='chat' title='&lt;&apos;&#x41;&#65;&gt;'>"
                + "<body>héllo ☃ 𝄞 &#x1D11E; &amp; more</body>"
                + "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>"
                + "<p style='font-weight:bold'>héllo <em>☃</em> <![CDATA[<raw> & ]] text]]></p></body></html>"
                + "<a:x xmlns:a='urn:a' a:y='1'/></message>"
                + " \n </stream:stream>",
            stanzaCount: 3
        ),
        Stream(
            name: "no declaration, double quotes, back-to-back stanzas",
            text: "<stream:stream xmlns=\"jabber:client\" xmlns:stream=\"http://etherx.jabber.org/streams\""
                + " version=\"1.0\">"
                + "<message id=\"a\" note=\"x > y\"><body>1 > 0 and &quot;quoted&quot;</body></message>"
                + "<presence/><presence type=\"unavailable\"/>"
                + "<iq id=\"p\" type=\"get\"><ping xmlns=\"urn:xmpp:ping\"/></iq>"
                + "</stream:stream>",
            stanzaCount: 4
        ),
        Stream(
            name: "negotiation elements in the stream namespace",
            text: Harness.prologue
                + "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
                + "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism>"
                + "<mechanism>PLAIN</mechanism></mechanisms></stream:features>\r\n"
                + "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldAByMG0zMG15cjBtMzA=</auth>"
                + "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                + "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>naïve — ☃</text></stream:error>"
                + "</stream:stream>",
            stanzaCount: 3
        ),
        Stream(
            name: "deep payload with non-ASCII names and long CDATA",
            text: Harness.prologue
                + "<iq type='result' id='items'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                + "<items node='ünïcode'><item id='1'><entry xmlns='http://www.w3.org/2005/Atom'>"
                + "<café ñ='ü'><title>Ελληνικά 中文 🎉</title><summary><![CDATA[" + String(repeating: "x&<y>", count: 40)
                + "]]></summary></café></entry></item></items></pubsub></iq>"
                + "<message><body>" + String(repeating: "𝄞", count: 50) + "</body></message>"
                + "</stream:stream>",
            stanzaCount: 2
        ),
    ]

    @Test(arguments: streams)
    func wholeStreamGivesHeaderStanzasAndClose(_ stream: Stream) throws {
        let events = try Harness.events(stream.text)
        guard case .streamOpen(let header, let defaultNamespace)? = events.first else {
            Issue.record("the first event must open the stream, got \(events)")
            return
        }
        #expect(header.name == "stream" && header.namespace == Harness.streamNS)
        #expect(defaultNamespace == "jabber:client")
        #expect(Harness.stanzas(events).count == stream.stanzaCount)
        #expect(events.last == .streamClose)
        #expect(events.count == stream.stanzaCount + 2)
    }

    @Test(arguments: streams)
    func splitAtEveryBytePositionGivesTheSameEvents(_ stream: Stream) throws {
        let bytes = stream.bytes
        let expected = try Harness.events(stream.text)
        for position in 0...bytes.count {
            let events = try Harness.events(Harness.split(bytes, at: position))
            #expect(events == expected, "split at byte \(position)")
        }
    }

    @Test(arguments: streams)
    func oneByteAtATimeGivesTheSameEvents(_ stream: Stream) throws {
        let expected = try Harness.events(stream.text)
        #expect(try Harness.events(Harness.bytewise(stream.bytes)) == expected)
    }

    @Test(arguments: streams)
    func eachEventComesOutWithItsLastByte(_ stream: Stream) throws {
        // Fed one byte at a time, no event may be held back waiting for later bytes.
        let parser = XMLStreamParser()
        var count = 0
        for byte in stream.bytes {
            let events = try parser.parse([byte])
            #expect(events.isEmpty || byte == UInt8(ascii: ">"), "an event came out before its closing '>'")
            #expect(events.count <= 1)
            count += events.count
        }
        #expect(count == stream.stanzaCount + 2)
    }

    @Test func contentSurvivesByteWiseFeeding() throws {
        let stream = Self.streams[0]
        let events = try Harness.events(Harness.bytewise(stream.bytes))
        let message = try #require(Harness.stanzas(events).last)
        #expect(message.child("body")?.text == "héllo ☃ 𝄞 𝄞 & more")
        let paragraph = message.child("html")?.child("body")?.child("p")
        #expect(paragraph?.text == "héllo  <raw> & ]] text")
        #expect(paragraph?.child("em")?.text == "☃")
        #expect(message[attribute: "title"] == "<'AA>")
        let presence = Harness.stanzas(events)[1]
        #expect(presence.child("status")?.text == "Tom & Jerry <3")
    }
}
