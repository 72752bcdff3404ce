import Testing
import XMPPCore

@Suite struct StreamErrorTests {
    @Test func elementIsAStreamErrorWithTheConditionInTheStreamsNamespace() {
        let element = StreamError(.notWellFormed).element
        #expect(element.name == "error")
        #expect(element.namespace == "http://etherx.jabber.org/streams")
        #expect(element.elements.count == 1)
        #expect(element.elements.first?.name == "not-well-formed")
        #expect(element.elements.first?.namespace == "urn:ietf:params:xml:ns:xmpp-streams")
        #expect(
            element.serialized()
                == "<stream:error><not-well-formed xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></stream:error>")
    }

    @Test func textIsAddedInEnglish() throws {
        let element = StreamError(.policyViolation, text: "stanza too big").element
        let text = try #require(element.child("text", namespace: Namespace.streams))
        #expect(text.text == "stanza too big")
        #expect(text[attribute: "xml:lang"] == "en")
        #expect(element.elements.map(\.name) == ["policy-violation", "text"])
    }

    @Test(arguments: StreamError.Condition.allCases)
    func everyConditionRoundTrips(condition: StreamError.Condition) {
        let plain = StreamError(condition)
        #expect(StreamError(element: plain.element) == plain)
        let withText = StreamError(condition, text: "details & more")
        #expect(StreamError(element: withText.element) == withText)
    }

    @Test func otherElementsAreNotStreamErrors() {
        #expect(StreamError(element: XMLElement("error", namespace: Namespace.client)) == nil)
        #expect(StreamError(element: XMLElement("features", namespace: Namespace.stream)) == nil)
        #expect(StreamError(element: StanzaError(.badRequest).element) == nil)
    }

    @Test func unknownConditionReadsAsUndefined() {
        let element = XMLElement(
            "error", namespace: Namespace.stream,
            children: [
                XMLElement("made-up-condition", namespace: Namespace.streams)
            ])
        #expect(StreamError(element: element) == StreamError(.undefinedCondition))
    }

    @Test func conditionInTheWrongNamespaceIsIgnored() {
        let element = XMLElement(
            "error", namespace: Namespace.stream,
            children: [
                XMLElement("conflict", namespace: "urn:other"),
                XMLElement("text", namespace: Namespace.streams, text: "replaced"),
                XMLElement("conflict", namespace: Namespace.streams),
            ])
        #expect(StreamError(element: element) == StreamError(.conflict, text: "replaced"))
    }

    @Test func errorWithoutAnyConditionReadsAsUndefined() {
        let empty = XMLElement("error", namespace: Namespace.stream)
        #expect(StreamError(element: empty) == StreamError(.undefinedCondition))
    }

    @Test func textOutsideTheStreamsNamespaceIsIgnored() {
        let element = XMLElement(
            "error", namespace: Namespace.stream,
            children: [
                XMLElement("reset", namespace: Namespace.streams),
                XMLElement("text", namespace: "urn:other", text: "not this"),
            ])
        #expect(StreamError(element: element) == StreamError(.reset))
    }

    @Test func descriptionNamesTheCondition() {
        #expect(StreamError(.hostUnknown).description == "host-unknown")
        #expect(StreamError(.hostUnknown, text: "no such host").description == "host-unknown: no such host")
    }

    @Test func conditionRawValuesAreTheRFCNames() {
        let names = Set(StreamError.Condition.allCases.map(\.rawValue))
        #expect(names.count == 25)
        #expect(
            names.isSuperset(of: [
                "bad-format", "bad-namespace-prefix", "conflict", "connection-timeout", "host-gone", "host-unknown",
                "improper-addressing", "internal-server-error", "invalid-from", "invalid-namespace", "invalid-xml",
                "not-authorized", "not-well-formed", "policy-violation", "remote-connection-failed", "reset",
                "resource-constraint", "restricted-xml", "see-other-host", "system-shutdown", "undefined-condition",
                "unsupported-encoding", "unsupported-feature", "unsupported-stanza-type", "unsupported-version",
            ]))
    }
}
