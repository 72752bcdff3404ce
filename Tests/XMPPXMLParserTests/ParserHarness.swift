import Testing
import XMPPCore
import XMPPXMLParser

/// Shared inputs and feeding helpers for the stream parser tests.
enum Harness {
    static let streamNS = "http://etherx.jabber.org/streams"

    /// A c2s stream header as a client sends it after the XML declaration.
    static let header =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
        + " to='example.com' version='1.0' xml:lang='en'>"

    static let declaration = "<?xml version='1.0'?>"

    /// Declaration plus header: everything before the first stanza.
    static let prologue = declaration + header

    /// Parses `chunks` in order with one parser and returns every event.
    static func events(
        _ chunks: [ArraySlice<UInt8>],
        options: XMLStreamParser.Options = .init()
    ) throws(XMLStreamParserError) -> [XMLStreamEvent] {
        let parser = XMLStreamParser(options: options)
        var all: [XMLStreamEvent] = []
        for chunk in chunks { all += try parser.parse(Array(chunk)) }
        return all
    }

    static func events(
        _ input: String,
        options: XMLStreamParser.Options = .init()
    ) throws(XMLStreamParserError) -> [XMLStreamEvent] {
        try events([ArraySlice(input.utf8)], options: options)
    }

    /// The input in two chunks, split before byte `position`.
    static func split(_ bytes: [UInt8], at position: Int) -> [ArraySlice<UInt8>] {
        [bytes[..<position], bytes[position...]]
    }

    /// The input one byte per chunk.
    static func bytewise(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        bytes.indices.map { bytes[$0...$0] }
    }

    /// Feeds `chunks` to one parser and returns the error it throws, checking that
    /// the parser keeps throwing that error afterwards. `nil` when nothing threw.
    static func failure(
        _ chunks: [ArraySlice<UInt8>],
        options: XMLStreamParser.Options = .init()
    ) -> XMLStreamParserError? {
        let parser = XMLStreamParser(options: options)
        for chunk in chunks {
            do {
                _ = try parser.parse(Array(chunk))
            } catch {
                let again = #expect(throws: XMLStreamParserError.self) { try parser.parse("<message/>") }
                #expect(again == error, "a failed parser must keep reporting its first error")
                return error
            }
        }
        return nil
    }

    static func failure(_ input: String, options: XMLStreamParser.Options = .init()) -> XMLStreamParserError? {
        failure([ArraySlice(input.utf8)], options: options)
    }

    /// The stanzas (depth-1 elements) among `events`.
    static func stanzas(_ events: [XMLStreamEvent]) -> [XMLElement] {
        events.compactMap {
            if case .element(let element) = $0 { return element }
            return nil
        }
    }

    /// The single stanza the prologue plus `stanza` produces.
    static func stanza(_ stanza: String) throws -> XMLElement {
        let found = stanzas(try events(prologue + stanza))
        try #require(found.count == 1)
        return found[0]
    }

    /// Options with a small stanza limit and nesting depth, for limit tests.
    static func options(maxStanzaBytes: Int = 256 * 1024, maxDepth: Int = 64) -> XMLStreamParser.Options {
        var options = XMLStreamParser.Options()
        options.maxStanzaBytes = maxStanzaBytes
        options.maxDepth = maxDepth
        return options
    }

    /// A `<message/>` stanza of exactly `bytes` bytes (at least 32).
    static func message(bytes: Int) -> String {
        let open = "<message><body>"
        let close = "</body></message>"
        return open + String(repeating: "a", count: bytes - open.utf8.count - close.utf8.count) + close
    }

    /// A stanza whose innermost element sits at `depth` (the stanza itself is depth 1).
    static func nested(depth: Int) -> String {
        "<message>" + String(repeating: "<x>", count: depth - 1) + String(repeating: "</x>", count: depth - 1)
            + "</message>"
    }
}
