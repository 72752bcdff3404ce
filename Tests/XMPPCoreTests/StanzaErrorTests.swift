import Testing
import XMPPCore

@Suite struct StanzaErrorTests {
    static let client = Namespace.client

    static let request = XMLElement(
        "iq",
        namespace: client,
        ["type": "get", "id": "disco1", "from": "romeo@example.net/orchard", "to": "example.com"],
        children: [XMLElement("query", namespace: Namespace.discoInfo)]
    )

    @Test func errorReplySwapsAddressesAndKeepsTheID() throws {
        let reply = Self.request.errorReply(StanzaError(.serviceUnavailable))
        #expect(reply.name == "iq")
        #expect(reply.namespace == Self.client)
        #expect(reply[attribute: "to"] == "romeo@example.net/orchard")
        #expect(reply[attribute: "from"] == "example.com")
        #expect(reply[attribute: "id"] == "disco1")
        #expect(reply[attribute: "type"] == "error")
        #expect(try reply.toJID() == JID("romeo@example.net/orchard"))
        #expect(reply.elements.map(\.name) == ["error"], "the request payload is not echoed")
    }

    @Test func errorReplyCarriesTheConditionInTheStanzasNamespace() throws {
        let reply = Self.request.errorReply(StanzaError(.itemNotFound))
        let error = try #require(reply.child("error"))
        #expect(error.namespace == Self.client)
        #expect(error[attribute: "type"] == "cancel")
        #expect(error.elements.count == 1)
        #expect(error.elements.first?.name == "item-not-found")
        #expect(error.elements.first?.namespace == "urn:ietf:params:xml:ns:xmpp-stanzas")
        #expect(
            reply.serialized(parentNamespace: Self.client)
                == "<iq id=\"disco1\" to=\"romeo@example.net/orchard\" from=\"example.com\" type=\"error\">"
                + "<error type=\"cancel\"><item-not-found xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/></error></iq>")
    }

    @Test func errorReplyToAStanzaWithoutAddressesOrIDHasNone() {
        let message = XMLElement("message", namespace: Self.client, children: [XMLElement("body", text: "hi")])
        let reply = message.errorReply(StanzaError(.notAllowed))
        #expect(reply.name == "message")
        #expect(reply.attributes.map(\.name) == ["type"])
        #expect(reply.type == "error")
    }

    @Test func errorReplyOverwritesTheOriginalType() {
        let message = XMLElement("message", namespace: Self.client, ["type": "chat", "to": "a@b"])
        let reply = message.errorReply(StanzaError(.recipientUnavailable))
        #expect(reply.type == "error")
        #expect(reply.children("error").count == 1)
        #expect(reply[attribute: "from"] == "a@b")
        #expect(reply[attribute: "to"] == nil)
    }

    @Test(arguments: [
        (StanzaError.Condition.badRequest, StanzaError.ErrorType.modify),
        (.conflict, .cancel),
        (.featureNotImplemented, .cancel),
        (.forbidden, .auth),
        (.gone, .cancel),
        (.internalServerError, .cancel),
        (.itemNotFound, .cancel),
        (.jidMalformed, .modify),
        (.notAcceptable, .modify),
        (.notAllowed, .cancel),
        (.notAuthorized, .auth),
        (.policyViolation, .modify),
        (.recipientUnavailable, .wait),
        (.redirect, .modify),
        (.registrationRequired, .auth),
        (.remoteServerNotFound, .cancel),
        (.remoteServerTimeout, .wait),
        (.resourceConstraint, .wait),
        (.serviceUnavailable, .cancel),
        (.subscriptionRequired, .auth),
        (.undefinedCondition, .cancel),
        (.unexpectedRequest, .wait),
    ])
    func defaultErrorTypePerCondition(condition: StanzaError.Condition, type: StanzaError.ErrorType) {
        let error = StanzaError(condition)
        #expect(error.type == type)
        #expect(error.element[attribute: "type"] == type.rawValue)
    }

    @Test func explicitTypeOverridesTheDefault() {
        let error = StanzaError(.serviceUnavailable, type: .wait)
        #expect(error.element[attribute: "type"] == "wait")
    }

    @Test func textAndByAreWritten() throws {
        let error = StanzaError(.forbidden, text: "not <yours>", by: try JID("Example.com"))
        let element = error.element
        #expect(element[attribute: "by"] == "example.com")
        let text = try #require(element.child("text", namespace: Namespace.stanzas))
        #expect(text.text == "not <yours>")
        #expect(text[attribute: "xml:lang"] == "en")
        #expect(element.elements.map(\.name) == ["forbidden", "text"])
    }

    @Test(arguments: StanzaError.Condition.allCases)
    func stanzaErrorReadsBackEveryCondition(condition: StanzaError.Condition) {
        let sent = StanzaError(condition, text: "because")
        let received = Self.request.errorReply(sent).stanzaError
        #expect(received == sent)
        #expect(received?.condition.rawValue == condition.rawValue)
    }

    @Test func stanzaErrorKeepsAnExplicitType() {
        let sent = StanzaError(.conflict, type: .modify)
        #expect(Self.request.errorReply(sent).stanzaError?.type == .modify)
    }

    @Test func stanzaWithoutAnErrorHasNoStanzaError() {
        #expect(Self.request.stanzaError == nil)
        let empty = XMLElement(
            "iq", namespace: Self.client, ["type": "error"],
            children: [
                XMLElement("error", namespace: Self.client, ["type": "cancel"])
            ])
        #expect(empty.stanzaError == nil)
    }

    @Test func unknownConditionsAreSkipped() {
        let error = XMLElement(
            "error", namespace: Self.client, ["type": "cancel"],
            children: [
                XMLElement("made-up", namespace: Namespace.stanzas),
                XMLElement("text", namespace: Namespace.stanzas, text: "why"),
                XMLElement("gone", namespace: "urn:other"),
                XMLElement("gone", namespace: Namespace.stanzas),
            ])
        let stanza = XMLElement("message", namespace: Self.client, children: [error])
        #expect(stanza.stanzaError == StanzaError(.gone, type: .cancel, text: "why"))
    }

    @Test func missingOrUnknownTypeFallsBackToTheDefault() {
        let error = XMLElement(
            "error", namespace: Self.client, ["type": "bogus"],
            children: [
                XMLElement("bad-request", namespace: Namespace.stanzas)
            ])
        let stanza = XMLElement("iq", namespace: Self.client, children: [error])
        #expect(stanza.stanzaError?.type == .modify)
    }

    @Test
    func stanzaErrorReadsBackBy() throws {
        let sent = StanzaError(.remoteServerNotFound, by: try JID("example.com"))
        let received = Self.request.errorReply(sent).stanzaError
        #expect(received?.by == sent.by)
    }
}
