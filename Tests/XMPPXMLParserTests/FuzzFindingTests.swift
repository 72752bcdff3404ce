import Testing
import XMPPCore
import XMPPXMLParser

/// What the fuzz targets (docs/fuzzing.md) found in the serializer, replayed.
@Suite struct FuzzFindingTests {
    /// `<xml:a/>` parses as `a` in the XML namespace; written as `<a xmlns="…XML…"/>` it
    /// is not namespace-well-formed (the XML namespace may not be a default namespace),
    /// so every stream it was written to (each occupant of a room, a node link) failed.
    @Test func anElementInTheXMLNamespaceIsWrittenWithItsPrefix() throws {
        let stanza = try Harness.stanza(
            "<message xmlns:p='urn:p'><xml:a xml:lang='en' p:x='1'><b/><xml:c/></xml:a></message>"
        )
        let a = try #require(stanza.elements.first)
        #expect(a.namespace == Namespace.xml)
        #expect(a.elements.map(\.namespace) == [Namespace.client, Namespace.xml])
        let text = stanza.serialized(parentNamespace: Namespace.client)
        #expect(!text.contains("xmlns=\"\(Namespace.xml)\""))
        #expect(try Harness.stanza(text) == stanza)
    }
}
