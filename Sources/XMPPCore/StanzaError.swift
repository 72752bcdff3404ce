/// A stanza error (RFC 6120 §8.3): a defined condition, its type and optional text.
public struct StanzaError: Error, Sendable, Hashable {
    public enum Condition: String, Sendable, CaseIterable {
        case badRequest = "bad-request"
        case conflict
        case featureNotImplemented = "feature-not-implemented"
        case forbidden
        case gone
        case internalServerError = "internal-server-error"
        case itemNotFound = "item-not-found"
        case jidMalformed = "jid-malformed"
        case notAcceptable = "not-acceptable"
        case notAllowed = "not-allowed"
        case notAuthorized = "not-authorized"
        case policyViolation = "policy-violation"
        case recipientUnavailable = "recipient-unavailable"
        case redirect
        case registrationRequired = "registration-required"
        case remoteServerNotFound = "remote-server-not-found"
        case remoteServerTimeout = "remote-server-timeout"
        case resourceConstraint = "resource-constraint"
        case serviceUnavailable = "service-unavailable"
        case subscriptionRequired = "subscription-required"
        case undefinedCondition = "undefined-condition"
        case unexpectedRequest = "unexpected-request"

        /// The error type RFC 6120 §8.3.3 gives as usual for the condition.
        public var defaultType: ErrorType {
            switch self {
            case .badRequest, .jidMalformed, .notAcceptable, .policyViolation, .redirect: .modify
            case .forbidden, .notAuthorized, .registrationRequired, .subscriptionRequired: .auth
            case .recipientUnavailable, .remoteServerTimeout, .resourceConstraint, .unexpectedRequest: .wait
            default: .cancel
            }
        }
    }

    public enum ErrorType: String, Sendable {
        case auth, cancel, `continue`, modify, wait
    }

    public var condition: Condition
    public var type: ErrorType
    public var text: String?
    /// The entity that found the error (the `by` attribute).
    public var by: JID?

    public init(_ condition: Condition, type: ErrorType? = nil, text: String? = nil, by: JID? = nil) {
        self.condition = condition
        self.type = type ?? condition.defaultType
        self.text = text
        self.by = by
    }

    /// The `<error/>` child of an error stanza.
    public var element: XMLElement {
        var error = XMLElement("error", namespace: Namespace.client, ["type": type.rawValue])
        if let by { error[attribute: "by"] = by.description }
        error.append(XMLElement(condition.rawValue, namespace: Namespace.stanzas))
        if let text {
            error.append(XMLElement("text", namespace: Namespace.stanzas, ["xml:lang": "en"], text: text))
        }
        return error
    }
}

extension XMLElement {
    /// The error reply to this stanza: addresses swapped, `type='error'`, the `id`
    /// kept, the error condition as the only child.
    public func errorReply(_ error: StanzaError) -> XMLElement {
        var reply = XMLElement(name: name, namespace: namespace)
        if let id = self[attribute: "id"] { reply[attribute: "id"] = id }
        if let from = self[attribute: "from"] { reply[attribute: "to"] = from }
        if let to = self[attribute: "to"] { reply[attribute: "from"] = to }
        reply[attribute: "type"] = "error"
        reply.append(error.element)
        return reply
    }

    /// The stanza error this error stanza carries, if any.
    public var stanzaError: StanzaError? {
        guard let error = child("error") else { return nil }
        for child in error.elements where child.namespace == Namespace.stanzas && child.name != "text" {
            guard let condition = StanzaError.Condition(rawValue: child.name) else { continue }
            let type = error[attribute: "type"].flatMap(StanzaError.ErrorType.init(rawValue:))
            return StanzaError(
                condition,
                type: type,
                text: error.child("text", namespace: Namespace.stanzas)?.text,
                by: error[attribute: "by"].flatMap { try? JID($0) }
            )
        }
        return nil
    }
}
