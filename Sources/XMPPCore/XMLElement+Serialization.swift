extension XMLElement {
    /// The element as XML text. A namespace is declared (`xmlns='…'`) wherever it
    /// differs from the enclosing namespace, `parentNamespace`.
    public func serialized(parentNamespace: String = "") -> String {
        var out = ""
        serialize(into: &out, parentNamespace: parentNamespace)
        return out
    }

    public func serialize(into out: inout String, parentNamespace: String) {
        // Stream-level elements (`stream:features`, `stream:error`) only ever appear
        // inside a stream header that declares the `stream` prefix.
        let qualifiedName = namespace == Namespace.stream ? "stream:" + name : name
        out += "<"
        out += qualifiedName
        if namespace != parentNamespace && namespace != Namespace.stream {
            out += " xmlns=\""
            XMLEscaping.appendAttribute(namespace, to: &out)
            out += "\""
        }
        for attribute in attributes {
            out += " "
            out += attribute.name
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
                    parentNamespace: namespace == Namespace.stream ? parentNamespace : namespace
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
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\n": out += "&#10;"
            case "\r": out += "&#13;"
            case "\t": out += "&#9;"
            default: out.unicodeScalars.append(scalar)
            }
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
