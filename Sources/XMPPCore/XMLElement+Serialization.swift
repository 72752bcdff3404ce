extension XMLElement {
    /// The element as XML text. A namespace is declared (`xmlns='…'`) wherever it
    /// differs from the enclosing namespace, `parentNamespace`.
    public func serialized(parentNamespace: String = "") -> String {
        var out = ""
        serialize(into: &out, parentNamespace: parentNamespace)
        return out
    }

    public func serialize(into out: inout String, parentNamespace: String) {
        serialize(into: &out, parentNamespace: parentNamespace, nested: false)
    }

    /// Whatever the parser accepts is written as well-formed, namespace-correct XML:
    /// every prefix used is declared on the element that uses it.
    private func serialize(into out: inout String, parentNamespace: String, nested: Bool) {
        // Stream-level elements (`stream:features`, `stream:error`) at the top appear
        // inside a stream header that declares the `stream` prefix; one inside a stanza
        // (anybody may send one) declares it itself, since the stanza may be stored or
        // forwarded to places where no stream header declares it.
        let inStream = namespace == Namespace.stream
        // The XML namespace may not be declared as a default namespace (Namespaces in
        // XML §3); its prefix `xml` is bound by definition.
        let inXML = namespace == Namespace.xml
        let qualifiedName = inStream ? "stream:" + name : inXML ? "xml:" + name : name
        out += "<"
        out += qualifiedName
        if inStream {
            if nested {
                out += " xmlns:stream=\""
                out += Namespace.stream
                out += "\""
            }
        } else if inXML {
            // Nothing to declare; the default namespace stays the enclosing one.
        } else if namespace != parentNamespace {
            out += " xmlns=\""
            XMLEscaping.appendAttribute(namespace, to: &out)
            out += "\""
        }
        var declared: [(prefix: Substring, uri: String)] = []
        for attribute in attributes {
            var name = Substring(attribute.name)
            if !attribute.namespace.isEmpty, let colon = name.firstIndex(of: ":") {
                let prefix = name[..<colon]
                let reserved = prefix == "xmlns" || prefix == "xml" || (prefix == "stream" && inStream)
                if let known = declared.first(where: { $0.prefix == prefix }), known.uri == attribute.namespace {
                    // Declared already for an earlier attribute.
                } else if !reserved, !declared.contains(where: { $0.prefix == prefix }) {
                    declare(prefix, attribute.namespace, into: &out, &declared)
                } else {
                    // A prefix that cannot be declared here, or one prefix bound to two
                    // URIs (only a program builds either): a fresh prefix.
                    let fresh = freshPrefix(avoiding: declared)
                    declare(fresh, attribute.namespace, into: &out, &declared)
                    name = fresh + name[colon...]
                }
            }
            out += " "
            out += name
            out += "=\""
            XMLEscaping.appendAttribute(attribute.value, to: &out)
            out += "\""
        }
        if children.isEmpty {
            out += "/>"
            return
        }
        out += ">"
        for child in children {
            switch child {
            case .element(let element):
                element.serialize(
                    into: &out,
                    parentNamespace: inStream || inXML ? parentNamespace : namespace,
                    nested: true
                )
            case .text(let text):
                XMLEscaping.appendText(text, to: &out)
            }
        }
        out += "</"
        out += qualifiedName
        out += ">"
    }
}

/// A prefix no attribute of this element uses and none declared here.
extension XMLElement {
    fileprivate func freshPrefix(avoiding declared: [(prefix: Substring, uri: String)]) -> Substring {
        var index = declared.count
        while true {
            let candidate = Substring("ns\(index)")
            let taken =
                declared.contains { $0.prefix == candidate }
                || attributes.contains { $0.name.hasPrefix(candidate + ":") }
            if !taken { return candidate }
            index += 1
        }
    }
}

private func declare(
    _ prefix: Substring,
    _ uri: String,
    into out: inout String,
    _ declared: inout [(prefix: Substring, uri: String)]
) {
    out += " xmlns:"
    out += prefix
    out += "=\""
    XMLEscaping.appendAttribute(uri, to: &out)
    out += "\""
    declared.append((prefix, uri))
}

extension XMLElement: CustomStringConvertible {
    public var description: String { serialized() }
}

/// Escaping for character data and attribute values (XML 1.0 §2.4, §3.3.3).
public enum XMLEscaping {
    public static func appendText(_ text: String, to out: inout String) {
        guard
            text.utf8.contains(where: {
                $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">")
                    || $0 == UInt8(ascii: "\r")
            })
        else {
            out += text
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            // A literal CR would be normalised to LF by the receiving parser.
            case "\r": out += "&#13;"
            default: out.unicodeScalars.append(scalar)
            }
        }
    }

    public static func appendAttribute(_ value: String, to out: inout String) {
        guard
            value.utf8.contains(where: {
                $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">")
                    || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "'") || $0 < 0x20
            })
        else {
            out += value
            return
        }
        for scalar in value.unicodeScalars {
            if scalar.isASCII, let entity = attributeEntity(UInt8(scalar.value)) {
                out += entity.description
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }

    /// The entity for `byte` (ASCII) inside an attribute value, if it needs one: what
    /// `appendAttribute` and a prepared stanza's recipient address use.
    public static func attributeEntity(_ byte: UInt8) -> StaticString? {
        switch byte {
        case UInt8(ascii: "&"): "&amp;"
        case UInt8(ascii: "<"): "&lt;"
        case UInt8(ascii: ">"): "&gt;"
        case UInt8(ascii: "\""): "&quot;"
        case UInt8(ascii: "'"): "&apos;"
        case UInt8(ascii: "\n"): "&#10;"
        case UInt8(ascii: "\r"): "&#13;"
        case UInt8(ascii: "\t"): "&#9;"
        default: nil
        }
    }

    public static func escapeText(_ text: String) -> String {
        var out = ""
        appendText(text, to: &out)
        return out
    }

    public static func escapeAttribute(_ value: String) -> String {
        var out = ""
        appendAttribute(value, to: &out)
        return out
    }
}
