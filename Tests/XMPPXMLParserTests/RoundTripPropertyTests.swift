import Testing
import XMPPCore
import XMPPXMLParser

/// parse(serialize(e)) == e for generated elements: whatever the tree holds (prefixed
/// attributes, namespaces changing at every level, text full of markup characters), the
/// serializer writes well-formed, namespace-correct XML. Replayable: the seed is in the
/// test's arguments.
@Suite struct RoundTripPropertyTests {
    @Test(arguments: 0..<20)
    func generatedElementsSurviveSerializeThenParse(seed: Int) throws {
        var generator = ElementGenerator(seed: UInt64(seed))
        for index in 0..<50 {
            let element = generator.element(depth: 0)
            let text = element.serialized(parentNamespace: "jabber:client")
            let parsed: [XMLElement]
            do {
                parsed = Harness.stanzas(try Harness.events(Harness.prologue + text))
            } catch {
                Issue.record("seed \(seed) element \(index): \(error) for \(text)")
                continue
            }
            #expect(parsed == [element], "seed \(seed) element \(index): \(text)")
        }
    }
}

/// Random but replayable XML trees as the parser could have produced them: no adjacent
/// or empty text nodes, unique attribute names, prefixed attributes with their URI.
struct ElementGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    mutating func pick<T>(_ values: [T]) -> T { values[below(values.count)] }

    static let names = ["message", "body", "x", "item", "é", "日本", "a-b", "a.b", "_z", "query"]
    static let namespaces = [
        "jabber:client", "", "urn:a", "urn:b", "http://jabber.org/protocol/muc#user",
        "urn:x?a=1;b=2", "http://etherx.jabber.org/streams",
    ]
    static let prefixes = ["p", "q", "ns0", "stream", "a1"]
    static let pieces = ["a", " ", "<", ">", "&", "\"", "'", "\r", "\n", "\t", "é", "𝄞", "]]>", "&amp;", "x=1"]

    mutating func text() -> String {
        (0...below(6)).map { _ in pick(Self.pieces) }.joined()
    }

    mutating func element(depth: Int) -> XMLElement {
        var namespace = pick(Self.namespaces)
        if depth == 0 && namespace == "http://etherx.jabber.org/streams" { namespace = "jabber:client" }
        var element = XMLElement(name: pick(Self.names), namespace: namespace)
        var used = Set<String>()
        var bound: [String: String] = [:]
        for _ in 0..<below(5) {
            let local = pick(["id", "to", "type", "flag", "v"])
            if below(2) == 0 {
                guard used.insert(local).inserted else { continue }
                element.attributes.append(XMLAttribute(name: local, value: text()))
            } else {
                let prefix = pick(Self.prefixes)
                // An element in the stream namespace is written as `stream:…`, which
                // takes the prefix (the serializer renames such an attribute's prefix).
                if prefix == "stream" && namespace == "http://etherx.jabber.org/streams" { continue }
                let uri = bound[prefix] ?? pick(["urn:p", "urn:q", "urn:x:y"])
                // Two prefixes bound to one URI with the same local name are one attribute.
                let key = uri + " " + local
                guard used.insert(key).inserted else { continue }
                bound[prefix] = uri
                element.attributes.append(XMLAttribute(name: prefix + ":" + local, value: text(), namespace: uri))
            }
        }
        if below(3) == 0 {
            element.attributes.append(XMLAttribute(name: "xml:lang", value: pick(["en", "de-CH"])))
        }
        guard depth < 4 else { return element }
        var lastWasText = false
        for _ in 0..<below(5) {
            if !lastWasText && below(3) == 0 {
                element.children.append(.text(text()))
                lastWasText = true
            } else {
                element.children.append(.element(self.element(depth: depth + 1)))
                lastWasText = false
            }
        }
        return element
    }
}
