import Testing
import XMPPCore

@Suite struct SerializationTests {
    static let client = Namespace.client

    @Test(arguments: [
        ("a & b", "a &amp; b"),
        ("<tag>", "&lt;tag&gt;"),
        ("&amp;", "&amp;amp;"),
        ("\"quoted\" 'single'", "\"quoted\" 'single'"),
        ("héllo ☃ 𝄞", "héllo ☃ 𝄞"),
        ("", ""),
    ])
    func textEscaping(raw: String, escaped: String) {
        #expect(XMLEscaping.escapeText(raw) == escaped)
    }

    @Test(arguments: [
        ("a & b", "a &amp; b"),
        ("<>", "&lt;&gt;"),
        ("say \"hi\"", "say &quot;hi&quot;"),
        ("it's", "it&apos;s"),
        ("line1\nline2", "line1&#10;line2"),
        ("a\tb", "a&#9;b"),
        ("a\r\nb", "a&#13;&#10;b"),
        ("plain ☃", "plain ☃"),
    ])
    func attributeEscaping(raw: String, escaped: String) {
        #expect(XMLEscaping.escapeAttribute(raw) == escaped)
    }

    @Test func textAndAttributesAreEscapedInElements() {
        let element = XMLElement("message", namespace: Self.client, ["id": "a&\"b\"<'>"], text: "1 < 2 & 3 > 2")
        #expect(
            element.serialized(parentNamespace: Self.client)
                == "<message id=\"a&amp;&quot;b&quot;&lt;&apos;&gt;\">1 &lt; 2 &amp; 3 &gt; 2</message>")
    }

    @Test func emptyElementsAreSelfClosing() {
        let presence = XMLElement("presence", namespace: Self.client)
        #expect(presence.serialized(parentNamespace: Self.client) == "<presence/>")
        #expect(XMLElement("x").serialized() == "<x/>")
        #expect(XMLElement("x", ["a": "1"]).serialized() == "<x a=\"1\"/>")
    }

    @Test func attributesKeepTheirOrder() {
        let element = XMLElement("iq", ["type": "get", "id": "1", "to": "a@b", "from": "c@d", "xml:lang": "en"])
        #expect(element.serialized() == "<iq type=\"get\" id=\"1\" to=\"a@b\" from=\"c@d\" xml:lang=\"en\"/>")
    }

    @Test func namespaceIsDeclaredWhereItDiffersFromTheParent() {
        let iq = XMLElement(
            "iq",
            namespace: Self.client,
            ["type": "result"],
            children: [
                XMLElement(
                    "query",
                    namespace: "jabber:iq:roster",
                    children: [XMLElement("item", namespace: "jabber:iq:roster", ["jid": "a@b"])]
                ),
                XMLElement("x", namespace: Self.client),
            ]
        )
        #expect(
            iq.serialized(parentNamespace: Self.client)
                == "<iq type=\"result\"><query xmlns=\"jabber:iq:roster\"><item jid=\"a@b\"/></query><x/></iq>")
        #expect(iq.serialized().hasPrefix("<iq xmlns=\"jabber:client\" type=\"result\">"))
    }

    @Test func childWithoutNamespaceUndeclaresTheDefault() {
        let element = XMLElement("message", namespace: Self.client, children: [XMLElement("legacy")])
        #expect(element.serialized(parentNamespace: Self.client) == "<message><legacy xmlns=\"\"/></message>")
    }

    @Test func namespaceValueIsEscaped() {
        #expect(XMLElement("x", namespace: "urn:a&b").serialized() == "<x xmlns=\"urn:a&amp;b\"/>")
    }

    @Test func streamNamespaceElementsUseTheStreamPrefixWithoutXmlns() {
        let features = XMLElement(
            "features",
            namespace: Namespace.stream,
            children: [
                XMLElement(
                    "starttls",
                    namespace: Namespace.tls,
                    children: [XMLElement("required", namespace: Namespace.tls)]
                ),
                XMLElement("sm", namespace: Self.client),
            ]
        )
        let expected =
            "<stream:features><starttls xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"><required/></starttls>"
            + "<sm/></stream:features>"
        #expect(features.serialized(parentNamespace: Self.client) == expected)
        #expect(!features.serialized(parentNamespace: Self.client).contains("etherx"))
    }

    @Test func streamErrorSerialisesWithThePrefix() {
        let error = StreamError(.hostUnknown, text: "no such host")
        let expected =
            "<stream:error><host-unknown xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>"
            + "<text xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\" xml:lang=\"en\">no such host</text>"
            + "</stream:error>"
        #expect(error.element.serialized(parentNamespace: Self.client) == expected)
    }

    @Test func mixedContentKeepsOrder() {
        let p = XMLElement(
            name: "p",
            children: [.text("a "), .element(XMLElement("b", text: "bold")), .text(" & c")]
        )
        #expect(p.serialized() == "<p>a <b>bold</b> &amp; c</p>")
    }

    @Test func descriptionIsTheSerialisedForm() {
        let element = XMLElement("presence", namespace: Self.client, ["type": "unavailable"])
        #expect(element.description == "<presence xmlns=\"jabber:client\" type=\"unavailable\"/>")
        #expect("\(element)" == element.serialized())
    }

    @Test
    func carriageReturnInTextIsEscaped() {
        #expect(XMLEscaping.escapeText("a\rb") == "a&#13;b")
    }
}

/// `contentBytes` counts what an element holds without serializing it: a room's history
/// bound uses it once per kept message.
@Suite struct ContentBytesTests {
    @Test func countsNamesNamespacesAttributesAndTextOfEveryDescendant() {
        let body = XMLElement("body", namespace: "jabber:client", text: "héllo")
        let message = XMLElement("message", namespace: "jabber:client", ["id": "m1"], children: [body])
        // "message" 7 + "jabber:client" 13 + "id" 2 + "m1" 2 + "body" 4 + 13 + "héllo" 6
        #expect(message.contentBytes == 47)
        #expect(message.appending(XMLElement("x", namespace: "")).contentBytes == 48)
        // Escaping does not count: what the tree holds does.
        #expect(XMLElement("b", text: "<&>").contentBytes == 4)
    }
}
