/// A byte-level look at markup before libxml2 sees it: counts the attributes of each
/// start tag, however the bytes are split, so that a tag with thousands of attributes
/// is refused before libxml2 spends quadratic time checking them for duplicates.
///
/// It recognises just enough XML to stay in step: tags with quoted attribute values,
/// CDATA sections (whose text is not markup) and other `<!…>`/`<?…?>` constructs.
/// Anything it gets wrong is still parsed (and judged) by libxml2 afterwards.
struct MarkupScanner {
    private enum State {
        case text
        /// Just after `<`.
        case open
        /// Inside a start or end tag, outside quotes.
        case tag
        case quoted(UInt8)
        /// Just after `<!`.
        case bang
        /// Inside `<![…`, ending at `]]>`; the count of `]` just seen.
        case cdata(Int)
        /// Inside another `<!…>` or `<?…?>`, ending at `>`.
        case declaration
    }

    private var state = State.text
    private var attributes = 0

    /// Scans `bytes`; returns why the input is refused, or `nil`.
    mutating func scan(_ bytes: UnsafeRawBufferPointer, maxAttributes: Int) -> String? {
        for byte in bytes {
            switch state {
            case .text:
                if byte == UInt8(ascii: "<") { state = .open }
            case .open:
                switch byte {
                case UInt8(ascii: "!"): state = .bang
                case UInt8(ascii: "?"): state = .declaration
                default:
                    attributes = 0
                    state = byte == UInt8(ascii: ">") ? .text : .tag
                }
            case .tag:
                switch byte {
                case UInt8(ascii: ">"): state = .text
                case UInt8(ascii: "'"), UInt8(ascii: "\""): state = .quoted(byte)
                case UInt8(ascii: "="):
                    attributes += 1
                    if attributes > maxAttributes {
                        return "more than \(maxAttributes) attributes on one element"
                    }
                default: break
                }
            case .quoted(let quote):
                if byte == quote { state = .tag }
            case .bang:
                state = byte == UInt8(ascii: "[") ? .cdata(0) : .declaration
            case .cdata(let brackets):
                if byte == UInt8(ascii: "]") {
                    state = .cdata(brackets + 1)
                } else if byte == UInt8(ascii: ">"), brackets >= 2 {
                    state = .text
                } else {
                    state = .cdata(0)
                }
            case .declaration:
                if byte == UInt8(ascii: ">") { state = .text }
            }
        }
        return nil
    }
}
