public import XMPPCore
public import XMPPXMLParser

/// Parsing and comparing stanzas the way the fuzz targets need it.
public enum StanzaText {
    /// What a client sends before its first stanza: everything the stream parser
    /// needs to be in a `jabber:client` stream.
    public static let prologue =
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
        + " to='localhost' version='1.0'>"

    /// Parser options with room for anything the serializer may write (it declares a
    /// prefix again on every element that uses it, so its text can be longer than what
    /// was parsed): a round trip checks correctness, not the limits.
    public static let generous: XMLStreamParser.Options = {
        var options = XMLStreamParser.Options()
        options.maxStanzaBytes = 64 * 1024 * 1024
        options.maxDepth = 1024
        options.maxElementsPerStanza = 1_000_000
        options.maxAttributesPerElement = 100_000
        return options
    }()

    /// The stanzas (depth-1 elements) in `events`.
    public static func stanzas(_ events: [XMLStreamEvent]) -> [XMLElement] {
        events.compactMap {
            if case .element(let element) = $0 { return element }
            return nil
        }
    }

    /// Parses `text` (stanzas, serialized) in a fresh `jabber:client` stream.
    public static func parse(
        _ text: String,
        options: XMLStreamParser.Options = generous
    ) throws(XMLStreamParserError) -> [XMLElement] {
        let parser = XMLStreamParser(options: options)
        return stanzas(try parser.parse(prologue + text))
    }

    /// The element as a parser would give it back: no empty text nodes, adjacent text
    /// nodes joined. A room builds some elements with an empty text child
    /// (`<subject></subject>`), which means the same as none.
    public static func normalized(_ element: XMLElement) -> XMLElement {
        var copy = element
        var children: [XMLNode] = []
        children.reserveCapacity(element.children.count)
        for child in element.children {
            switch child {
            case .element(let inner):
                children.append(.element(normalized(inner)))
            case .text(let text):
                guard !text.isEmpty else { continue }
                if case .text(let previous)? = children.last {
                    children[children.count - 1] = .text(previous + text)
                } else {
                    children.append(.text(text))
                }
            }
        }
        copy.children = children
        return copy
    }

    /// Checks that every one of `elements`, serialized in a `jabber:client` stream,
    /// parses back equal (after `normalized`). `context` says where they came from.
    static func checkRoundTrip(_ elements: [XMLElement], _ context: @autoclosure () -> String) throws(FuzzFinding) {
        guard !elements.isEmpty else { return }
        var text = ""
        for element in elements { element.serialize(into: &text, parentNamespace: Namespace.client) }
        let parsed: [XMLElement]
        do {
            parsed = try parse(text)
        } catch {
            throw FuzzFinding("\(context()): the serialized stanzas do not parse (\(error)):\n\(text)")
        }
        try FuzzFinding.check(
            parsed.count == elements.count,
            "\(context()): \(elements.count) stanzas serialized, \(parsed.count) parsed back:\n\(text)"
        )
        for (original, again) in zip(elements, parsed) {
            let expected = normalized(original)
            try FuzzFinding.check(
                again == expected,
                "\(context()): a stanza changed through serialize → parse:\n  before: \(debug(expected))\n"
                    + "  after:  \(debug(again))\n  text:   \(original.serialized(parentNamespace: Namespace.client))"
            )
        }
    }

    /// The element's structure, with namespaces of attributes (which the serialized
    /// text does not show directly).
    static func debug(_ element: XMLElement) -> String {
        var out = "{\(element.namespace)}\(element.name)"
        for attribute in element.attributes {
            out += " \(attribute.name)"
            if !attribute.namespace.isEmpty { out += "{\(attribute.namespace)}" }
            out += "=\(String(reflecting: attribute.value))"
        }
        out += " ["
        for (index, child) in element.children.enumerated() {
            if index > 0 { out += ", " }
            switch child {
            case .element(let inner): out += debug(inner)
            case .text(let text): out += String(reflecting: text)
            }
        }
        return out + "]"
    }
}
