/// An XML element as XMPP uses it: a name in a resolved namespace, attributes in
/// document order, and children that are elements or text.
///
/// `XMPPCore` is the pure heart of Conclave: no I/O, no Foundation. Stanzas, stream
/// errors and data forms are all built from this one tree type.
public struct XMLElement: Sendable, Hashable {
    /// The local name, without a prefix.
    public var name: String
    /// The resolved namespace URI (never a prefix); empty when the element has none.
    public var namespace: String
    /// Attributes in document order. Names are qualified for prefixed attributes
    /// (`xml:lang`); namespace declarations are not attributes.
    public var attributes: [XMLAttribute]
    public var children: [XMLNode]

    public init(
        name: String,
        namespace: String = "",
        attributes: [XMLAttribute] = [],
        children: [XMLNode] = []
    ) {
        self.name = name
        self.namespace = namespace
        self.attributes = attributes
        self.children = children
    }

    /// Builds an element from attribute pairs, keeping their order.
    public init(
        _ name: String,
        namespace: String = "",
        _ attributes: KeyValuePairs<String, String> = [:],
        children: [XMLElement] = [],
        text: String? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.attributes = attributes.map { XMLAttribute(name: $0.key, value: $0.value) }
        self.children = children.map { .element($0) }
        if let text { self.children.append(.text(text)) }
    }

    /// The value of the attribute `name`, if present.
    public subscript(attribute name: String) -> String? {
        get { attributes.first { $0.name == name }?.value }
        set {
            if let index = attributes.firstIndex(where: { $0.name == name }) {
                if let newValue {
                    attributes[index].value = newValue
                } else {
                    attributes.remove(at: index)
                }
            } else if let newValue {
                attributes.append(XMLAttribute(name: name, value: newValue))
            }
        }
    }

    /// Child elements, skipping text.
    public var elements: [XMLElement] {
        children.compactMap {
            if case .element(let element) = $0 { return element }
            return nil
        }
    }

    /// The first child element with this name and (when given) namespace.
    public func child(_ name: String, namespace: String? = nil) -> XMLElement? {
        for case .element(let element) in children
        where element.name == name && (namespace == nil || element.namespace == namespace) {
            return element
        }
        return nil
    }

    /// Every child element with this name and (when given) namespace.
    public func children(_ name: String, namespace: String? = nil) -> [XMLElement] {
        elements.filter { $0.name == name && (namespace == nil || $0.namespace == namespace) }
    }

    /// The concatenated text content of this element (not of descendants).
    public var text: String {
        var result = ""
        for case .text(let text) in children { result += text }
        return result
    }

    /// UTF-8 bytes of the element's names, namespaces, attributes and text, its
    /// descendants' included: what it holds, counted without serializing it (a bound
    /// on history, say, costs no extra serialization per message).
    public var contentBytes: Int {
        var total = name.utf8.count + namespace.utf8.count
        for attribute in attributes { total += attribute.name.utf8.count + attribute.value.utf8.count }
        for child in children {
            switch child {
            case .element(let element): total += element.contentBytes
            case .text(let text): total += text.utf8.count
            }
        }
        return total
    }

    public mutating func append(_ element: XMLElement) {
        children.append(.element(element))
    }

    public mutating func append(text: String) {
        children.append(.text(text))
    }

    /// Returns a copy with `element` appended.
    public func appending(_ element: XMLElement) -> XMLElement {
        var copy = self
        copy.append(element)
        return copy
    }
}

public struct XMLAttribute: Sendable, Hashable {
    /// The name as written, with its prefix if it has one (`xml:lang`, `p:flag`).
    public var name: String
    public var value: String
    /// The namespace URI a prefixed attribute's prefix was bound to where it was parsed
    /// (empty for unprefixed attributes and for `xml:`, which is bound by definition).
    /// The serializer declares the prefix again from it.
    public var namespace: String

    public init(name: String, value: String, namespace: String = "") {
        self.name = name
        self.value = value
        self.namespace = namespace
    }
}

public enum XMLNode: Sendable, Hashable {
    case element(XMLElement)
    case text(String)
}

extension String {
    /// The string without leading and trailing whitespace (as in XML character data).
    public func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
