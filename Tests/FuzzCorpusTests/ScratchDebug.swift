import ConclaveFuzzing
import Testing
import XMPPXMLParser
import XMPPCore

@Test func scratchDebug() throws {
    for text in ["<message><x xmlns='&amp;a'/></message>", "<message xmlns='&amp;b'><x/></message>",
                 "<message xmlns='urn:x?a=1&amp;b'/>", "<m xmlns:p='&amp;c' p:a='1'/>"] {
        let parsed = try StanzaText.parse(text)
        print("DEBUG", text, "→", parsed.map { "\($0.namespace) \($0.elements.map(\.namespace)) \($0.attributes)" })
    }
}
