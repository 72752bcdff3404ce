public import XMPPCore
import XMPPXMLParser

/// The XML of a `sends` or `receives` block: variables substituted, then parsed
/// with `jabber:client` as the default namespace and the `scansion:` prefix declared.
public enum StanzaTemplate {
    public struct TemplateError: Error, Sendable, Hashable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Replaces `${Name's JID}` and `${Name's full JID}`; `lookup(name, full)` returns
    /// the address or `nil` when unknown. Values are XML-escaped.
    public static func substitute(
        _ text: String,
        lookup: (_ name: String, _ full: Bool) -> String?
    ) throws(TemplateError) -> String {
        var out = ""
        var rest = Substring(text)
        while let start = rest.firstRange(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw TemplateError(message: "'${' without '}'")
            }
            let variable = rest[start.upperBound..<end]
            let value: String?
            if variable.hasSuffix("'s full JID") {
                value = lookup(String(variable.dropLast("'s full JID".count)), true)
            } else if variable.hasSuffix("'s JID") {
                value = lookup(String(variable.dropLast("'s JID".count)), false)
            } else {
                throw TemplateError(message: "unknown variable ${\(variable)} (known: ${Name's JID}, ${Name's full JID})")
            }
            guard let value else {
                throw TemplateError(message: "${\(variable)}: no such client, or it has not connected yet")
            }
            out += XMLEscaping.escapeAttribute(value)
            rest = rest[rest.index(after: end)...]
        }
        out += rest
        return out
    }

    /// Parses the block into its top-level elements.
    public static func elements(_ text: String) throws(TemplateError) -> [XMLElement] {
        var options = XMLStreamParser.Options()
        options.reportsNamespaceDeclarations = true
        options.maxStanzaBytes = 16 * 1024 * 1024
        let parser = XMLStreamParser(options: options)
        let wrapper =
            "<stream:stream xmlns='\(Namespace.client)' xmlns:stream='\(Namespace.stream)' "
            + "xmlns:scansion='\(StanzaMatcher.scansionNamespace)'>"
        do {
            let events = try parser.parse(wrapper + text + "</stream:stream>")
            var elements: [XMLElement] = []
            var closed = false
            for event in events {
                switch event {
                case .element(let element): elements.append(element)
                case .streamClose: closed = true
                case .streamOpen: break
                }
            }
            guard closed else { throw TemplateError(message: "the XML is incomplete (an element is not closed)") }
            guard !elements.isEmpty else { throw TemplateError(message: "no XML element in the block") }
            return elements
        } catch let error as XMLStreamParserError {
            throw TemplateError(message: "not well-formed XML: \(error.detail)")
        } catch let error as TemplateError {
            throw error
        } catch {
            throw TemplateError(message: "\(error)")
        }
    }

    /// `element` without the recorded namespace declarations and `scansion:`
    /// directives: what goes on the wire for a `sends`, and what a report shows.
    public static func plain(_ element: XMLElement) -> XMLElement {
        var copy = element
        copy.attributes = StanzaMatcher.comparable(element.attributes)
        copy.children = element.children.map { child in
            if case .element(let inner) = child { return .element(plain(inner)) }
            return child
        }
        return copy
    }
}
