import Testing
import XMPPCore
import XMPPXMLParser

/// What the server serialises, a peer's parser must read back unchanged.
@Suite struct RoundTripTests {
    struct Sample: CustomTestStringConvertible, Sendable {
        let name: String
        let element: XMLElement
        var testDescription: String { name }
    }

    static let client = "jabber:client"

    static let samples: [Sample] = [
        Sample(name: "empty presence", element: XMLElement("presence", namespace: client)),
        Sample(
            name: "message with escaped text and attributes",
            element: XMLElement(
                "message",
                namespace: client,
                ["to": "juliet@example.com/balcony", "id": "<\"'>", "xml:lang": "en"],
                children: [XMLElement("body", namespace: client, text: "a < b > c \"d\" 'e' héllo ☃ 𝄞")]
            )
        ),
        Sample(
            name: "attribute with newline, tab and quotes",
            element: XMLElement("message", namespace: client, ["note": "line1\nline2\tx \"y\" 'z'"])
        ),
        Sample(
            name: "iq with payloads in several namespaces",
            element: XMLElement(
                "iq",
                namespace: client,
                ["type": "result", "id": "v1"],
                children: [
                    XMLElement(
                        "query",
                        namespace: "jabber:iq:version",
                        children: [
                            XMLElement("name", namespace: "jabber:iq:version", text: "Conclave"),
                            XMLElement("empty", namespace: ""),
                            XMLElement("x", namespace: "urn:a", children: [XMLElement("y", namespace: "urn:a")]),
                        ]
                    )
                ]
            )
        ),
        Sample(
            name: "mixed content",
            element: XMLElement(
                name: "p",
                namespace: "http://www.w3.org/1999/xhtml",
                children: [
                    .text("one "),
                    .element(XMLElement("b", namespace: "http://www.w3.org/1999/xhtml", text: "two")),
                    .text(" three"),
                ]
            )
        ),
        Sample(name: "stream error", element: StreamError(.policyViolation, text: "too big & <bad>").element),
        Sample(
            name: "stream features",
            element: XMLElement(
                "features",
                namespace: Namespace.stream,
                children: [XMLElement("bind", namespace: Namespace.bind), XMLElement("ver", namespace: "urn:ver")]
            )
        ),
    ]

    /// Parses `serialized` as the only stanza of a c2s stream.
    static func reparse(_ serialized: String) throws -> XMLElement {
        let events = try Harness.events(Harness.prologue + serialized + "</stream:stream>")
        let stanzas = Harness.stanzas(events)
        try #require(stanzas.count == 1, "\(serialized) gave \(events)")
        return stanzas[0]
    }

    @Test(arguments: samples)
    func serializeThenParseGivesAnEqualElement(_ sample: Sample) throws {
        #expect(try Self.reparse(sample.element.serialized()) == sample.element)
    }

    @Test(arguments: samples)
    func serializedInsideTheStreamNamespaceRoundTrips(_ sample: Sample) throws {
        let serialized = sample.element.serialized(parentNamespace: Self.client)
        #expect(try Self.reparse(serialized) == sample.element)
    }

    @Test(arguments: samples)
    func parseThenSerializeIsStable(_ sample: Sample) throws {
        let once = try Self.reparse(sample.element.serialized())
        #expect(once.serialized() == sample.element.serialized())
    }

    @Test func stanzaErrorSurvivesTheWire() throws {
        let request = XMLElement("iq", namespace: Self.client, ["from": "a@b/c", "to": "b", "id": "7", "type": "get"])
        let error = StanzaError(.itemNotFound, text: "no <such> item")
        let reply = try Self.reparse(request.errorReply(error).serialized())
        #expect(reply.stanzaError == error)
        #expect(reply[attribute: "to"] == "a@b/c")
    }

    @Test func streamErrorSurvivesTheWire() throws {
        let error = StreamError(.restrictedXML, text: "no comments")
        #expect(StreamError(element: try Self.reparse(error.element.serialized())) == error)
    }

    @Test
    func ampersandInAttributeRoundTrips() throws {
        let element = XMLElement("message", namespace: Self.client, ["id": "a&b"])
        let reparsed = try Self.reparse(element.serialized())
        #expect(reparsed == element)
    }

    @Test
    func carriageReturnInTextRoundTrips() throws {
        let element = XMLElement(
            "message", namespace: Self.client,
            children: [
                XMLElement("body", namespace: Self.client, text: "line1\r\nline2\rline3")
            ])
        let reparsed = try Self.reparse(element.serialized())
        #expect(reparsed == element)
    }
}
