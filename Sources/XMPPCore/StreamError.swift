/// A stream error (RFC 6120 §4.9): fatal to the stream it is sent on.
public struct StreamError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Condition: String, Sendable, CaseIterable {
        case badFormat = "bad-format"
        case badNamespacePrefix = "bad-namespace-prefix"
        case conflict
        case connectionTimeout = "connection-timeout"
        case hostGone = "host-gone"
        case hostUnknown = "host-unknown"
        case improperAddressing = "improper-addressing"
        case internalServerError = "internal-server-error"
        case invalidFrom = "invalid-from"
        case invalidNamespace = "invalid-namespace"
        case invalidXML = "invalid-xml"
        case notAuthorized = "not-authorized"
        case notWellFormed = "not-well-formed"
        case policyViolation = "policy-violation"
        case remoteConnectionFailed = "remote-connection-failed"
        case reset
        case resourceConstraint = "resource-constraint"
        case restrictedXML = "restricted-xml"
        case seeOtherHost = "see-other-host"
        case systemShutdown = "system-shutdown"
        case undefinedCondition = "undefined-condition"
        case unsupportedEncoding = "unsupported-encoding"
        case unsupportedFeature = "unsupported-feature"
        case unsupportedStanzaType = "unsupported-stanza-type"
        case unsupportedVersion = "unsupported-version"
    }

    public var condition: Condition
    public var text: String?

    public init(_ condition: Condition, text: String? = nil) {
        self.condition = condition
        self.text = text
    }

    /// The `<stream:error/>` element.
    public var element: XMLElement {
        var error = XMLElement("error", namespace: Namespace.stream)
        error.append(XMLElement(condition.rawValue, namespace: Namespace.streams))
        if let text {
            error.append(XMLElement("text", namespace: Namespace.streams, ["xml:lang": "en"], text: text))
        }
        return error
    }

    /// Reads a stream error from a received `<stream:error/>` element.
    public init?(element: XMLElement) {
        guard element.name == "error", element.namespace == Namespace.stream else { return nil }
        for child in element.elements where child.namespace == Namespace.streams && child.name != "text" {
            if let condition = Condition(rawValue: child.name) {
                self.init(condition, text: element.child("text", namespace: Namespace.streams)?.text)
                return
            }
        }
        self.init(.undefinedCondition)
    }

    public var description: String {
        text.map { "\(condition.rawValue): \($0)" } ?? condition.rawValue
    }
}
