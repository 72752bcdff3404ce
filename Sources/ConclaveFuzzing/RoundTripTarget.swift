import XMPPCore
import XMPPXMLParser

/// parse → serialize → parse: whatever the parser accepts, the serializer must write as
/// well-formed, namespace-correct XML that means the same.
///
/// A stanza is parsed on one connection and written to others (room occupants, the
/// node link, the history table), so a stanza the serializer gets wrong breaks every
/// stream it is written to. For every stanza the bytes give: its serialized text,
/// parsed again by a fresh parser, must be equal to it, and serializing that again must
/// give the same text.
///
/// Input: the bytes after the stream prologue; parsed with default limits, then (when
/// that fails) up to the error, so that a bad tail does not hide the stanzas before it.
public enum RoundTripTarget {
    public static func run(_ data: [UInt8]) throws(FuzzFinding) {
        let parser = XMLStreamParser()
        var stanzas: [XMLElement] = []
        do {
            stanzas = StanzaText.stanzas(try parser.parse(Array(StanzaText.prologue.utf8)))
            // Piece by piece, to keep the stanzas completed before an error.
            var offset = 0
            while offset < data.count {
                let end = min(data.count, offset + 256)
                stanzas += StanzaText.stanzas(try parser.parse(Array(data[offset..<end])))
                offset = end
            }
        } catch {
            // Not well-formed (or over a limit) from some point on: the stanzas before
            // it were accepted and must survive.
        }
        for (index, stanza) in stanzas.enumerated() {
            try check(stanza, index)
        }
    }

    static func check(_ stanza: XMLElement, _ index: Int) throws(FuzzFinding) {
        let text = stanza.serialized(parentNamespace: Namespace.client)
        let again: [XMLElement]
        do {
            again = try StanzaText.parse(text)
        } catch {
            throw FuzzFinding(
                "round trip: stanza \(index) serialized does not parse (\(error)):\n  \(text)\n"
                    + "  parsed as: \(StanzaText.debug(stanza))"
            )
        }
        try FuzzFinding.check(
            again.count == 1,
            "round trip: stanza \(index) serialized parses as \(again.count) stanzas:\n  \(text)"
        )
        try FuzzFinding.check(
            again[0] == stanza,
            "round trip: stanza \(index) changed through serialize → parse:\n  before: \(StanzaText.debug(stanza))\n"
                + "  after:  \(StanzaText.debug(again[0]))\n  text:   \(text)"
        )
        let second = again[0].serialized(parentNamespace: Namespace.client)
        try FuzzFinding.check(
            second == text,
            "round trip: stanza \(index) serializes differently the second time:\n  first:  \(text)\n"
                + "  second: \(second)"
        )
    }
}
