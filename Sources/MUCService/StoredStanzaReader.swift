public import XMPPCore
import XMPPXMLParser

/// Reads stanzas stored as text (history, occupants' last presence), one row at a time.
///
/// One parser serves every row of a room while the rows are well-formed; a row that
/// is not exactly one complete element (it fails to parse, is cut short, or holds
/// more) is skipped, and the parser starts afresh, so the rows after it are read as if
/// it had never been there. (A parser left failed, or in the middle of an element,
/// would otherwise lose every later row of the room.)
public struct StoredStanzaReader {
    private let parser: XMLStreamParser
    private var ready = false

    public init() {
        var options = XMLStreamParser.Options()
        // Rows are what this service wrote: as large as stanzas it accepted, plus what
        // the room adds (a delay, a stanza-id), under any configured stanza limit.
        options.maxStanzaBytes = 16 * 1024 * 1024
        parser = XMLStreamParser(options: options)
    }

    /// The row's element, or `nil` when the row is not exactly one element.
    public mutating func read(_ text: String) -> XMLElement? {
        if !ready {
            parser.reset()
            ready =
                (try? parser.parse("<stream:stream xmlns='jabber:client' xmlns:stream='\(Namespace.stream)'>")) != nil
        }
        guard ready, let events = try? parser.parse(text), events.count == 1, case .element(let element) = events[0]
        else {
            ready = false
            return nil
        }
        return element
    }
}
