public import XMPPCore

/// Matches a received stanza against an expected one by the rules of SCANSION.md:
/// names and resolved namespaces always; then, per element, strict (same attributes,
/// same children in order, same text) or non-strict (expected attributes present,
/// expected children found among the received ones in any order, expected text if any).
public struct StanzaMatcher: Sendable {
    /// Why a stanza did not match: where, and what differed.
    public struct Mismatch: Error, Sendable, Hashable, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "at \(path): \(reason)" }
    }

    public static let anyValue = "{scansion:any}"
    public static let capturePrefix = "{scansion:capture:"
    public static let scansionNamespace = "https://matthewwild.co.uk/projects/scansion"

    /// Values captured by `{scansion:capture:KEY}`, shared across one script run.
    public var captures: [String: String] = [:]

    public init() {}

    /// Matches, and on success records new captures.
    public mutating func match(expected: XMLElement, received: XMLElement) -> Mismatch? {
        var trial = captures
        if let mismatch = Self.compare(
            expected, received, strict: Self.isStrict(expected, parentNamespace: Namespace.client, parentStrict: false),
            path: Self.label(expected), captures: &trial
        ) {
            return mismatch
        }
        captures = trial
        return nil
    }

    /// Whether `expected` is compared strictly (SCANSION.md, "the mode of each expected element").
    static func isStrict(_ expected: XMLElement, parentNamespace: String, parentStrict: Bool) -> Bool {
        if let mode = expected[attribute: "scansion:strict"] {
            return mode == "true" || mode == "1"
        }
        if expected.namespace == Namespace.client { return false }
        if expected.namespace != parentNamespace || expected[attribute: "xmlns"] != nil { return true }
        return parentStrict
    }

    static func label(_ element: XMLElement) -> String {
        element.namespace == Namespace.client ? element.name : "\(element.name){\(element.namespace)}"
    }

    /// Attributes that are part of the comparison: not namespace declarations, not
    /// the runner's own `scansion:` directives.
    public static func comparable(_ attributes: [XMLAttribute]) -> [XMLAttribute] {
        attributes.filter { $0.name != "xmlns" && !$0.name.hasPrefix("xmlns:") && !$0.name.hasPrefix("scansion:") }
    }

    /// What identifies an attribute: its namespace and local name when it is prefixed
    /// (`p:flag` bound to `urn:example:p` is the same attribute whatever prefix a server
    /// writes for that namespace), its name otherwise (`xml:lang` included).
    static func identity(_ attribute: XMLAttribute) -> String {
        guard !attribute.namespace.isEmpty, let colon = attribute.name.firstIndex(of: ":") else { return attribute.name }
        return "{\(attribute.namespace)}" + attribute.name[attribute.name.index(after: colon)...]
    }

    static func compare(
        _ expected: XMLElement,
        _ received: XMLElement,
        strict: Bool,
        path: String,
        captures: inout [String: String]
    ) -> Mismatch? {
        guard expected.name == received.name, expected.namespace == received.namespace else {
            return Mismatch(
                path: path,
                reason: "expected <\(expected.name)> in '\(expected.namespace)', got <\(received.name)> in '\(received.namespace)'"
            )
        }
        let receivedAttributes = comparable(received.attributes)
        for attribute in comparable(expected.attributes) {
            guard let value = receivedAttributes.first(where: { identity($0) == identity(attribute) })?.value else {
                return Mismatch(path: path, reason: "missing attribute \(attribute.name)='\(attribute.value)'")
            }
            if let problem = compareValue(attribute.value, value, captures: &captures) {
                return Mismatch(path: path, reason: "attribute \(attribute.name): \(problem)")
            }
        }
        if strict {
            let expectedNames = Set(comparable(expected.attributes).map(identity))
            if let extra = receivedAttributes.first(where: { !expectedNames.contains(identity($0)) }) {
                return Mismatch(path: path, reason: "unexpected attribute \(extra.name)='\(extra.value)' (strict)")
            }
        }
        let expectedText = trimmed(expected.text)
        let receivedText = trimmed(received.text)
        if strict || !expectedText.isEmpty {
            if let problem = compareValue(expectedText, receivedText, captures: &captures) {
                return Mismatch(path: path, reason: "text: \(problem)")
            }
        }
        let expectedChildren = expected.elements
        let receivedChildren = received.elements
        if strict {
            guard expectedChildren.count == receivedChildren.count else {
                return Mismatch(
                    path: path,
                    reason: "expected \(expectedChildren.count) child element(s), got \(receivedChildren.count) (strict): "
                        + receivedChildren.map { "<\($0.name)>" }.joined(separator: " ")
                )
            }
            for (index, (child, other)) in zip(expectedChildren, receivedChildren).enumerated() {
                let childStrict = isStrict(child, parentNamespace: expected.namespace, parentStrict: strict)
                if let mismatch = compare(
                    child, other, strict: childStrict, path: "\(path)/\(label(child))[\(index + 1)]", captures: &captures
                ) {
                    return mismatch
                }
            }
            return nil
        }
        return matchUnordered(
            expectedChildren[...], available: receivedChildren.indices.map { $0 }, in: receivedChildren,
            parent: expected, path: path, captures: &captures
        )
    }

    /// Non-strict children: each expected child matches a distinct received child.
    private static func matchUnordered(
        _ expected: ArraySlice<XMLElement>,
        available: [Int],
        in received: [XMLElement],
        parent: XMLElement,
        path: String,
        captures: inout [String: String]
    ) -> Mismatch? {
        guard let child = expected.first else { return nil }
        let childStrict = isStrict(child, parentNamespace: parent.namespace, parentStrict: false)
        let childPath = "\(path)/\(label(child))"
        var closest: Mismatch?
        for (position, index) in available.enumerated() {
            var trial = captures
            if let mismatch = compare(child, received[index], strict: childStrict, path: childPath, captures: &trial) {
                if received[index].name == child.name, closest == nil { closest = mismatch }
                continue
            }
            var rest = available
            rest.remove(at: position)
            if let mismatch = matchUnordered(
                expected.dropFirst(), available: rest, in: received, parent: parent, path: path, captures: &trial
            ) {
                if closest == nil { closest = mismatch }
                continue
            }
            captures = trial
            return nil
        }
        let shown = StanzaTemplate.plain(child).serialized(parentNamespace: parent.namespace)
        return closest ?? Mismatch(path: path, reason: "missing child \(shown)")
    }

    /// Compares one value, honouring `{scansion:any}` and `{scansion:capture:KEY}`.
    private static func compareValue(_ expected: String, _ received: String, captures: inout [String: String]) -> String? {
        if expected == anyValue { return nil }
        if expected.hasPrefix(capturePrefix), expected.hasSuffix("}") {
            let key = String(expected.dropFirst(capturePrefix.count).dropLast())
            if let previous = captures[key] {
                return previous == received ? nil : "expected captured \(key) '\(previous)', got '\(received)'"
            }
            captures[key] = received
            return nil
        }
        return expected == received ? nil : "expected '\(expected)', got '\(received)'"
    }

    private static func trimmed(_ text: String) -> String {
        var text = Substring(text)
        while let first = text.first, first.isWhitespace { text.removeFirst() }
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return String(text)
    }
}
