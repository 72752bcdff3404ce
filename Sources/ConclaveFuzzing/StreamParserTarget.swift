import XMPPCore
import XMPPXMLParser

/// The stream parser fed arbitrary bytes in arbitrary pieces.
///
/// The network cuts a stream anywhere, so the parser's answer must not depend on where:
/// the same bytes fed whole and fed in pieces must give the same events, or fail with
/// the same stream error condition. A failed parser must keep failing with its first
/// error. And nothing may trap, whatever the bytes (libFuzzer with AddressSanitizer
/// also catches memory errors in libxml2's use).
///
/// Input: byte 0 chooses the options and whether the stream prologue is prepended
/// (otherwise the bytes are the whole stream, header included); bytes 1–5 choose the
/// piece sizes; the rest is the stream.
public enum StreamParserTarget {
    public static func run(_ data: [UInt8]) throws(FuzzFinding) {
        var input = FuzzInput(data)
        let mode = input.byte()
        var seed: UInt64 = 0
        for _ in 0..<4 { seed = seed << 8 | UInt64(input.byte()) }
        let largestPiece = [1, 2, 3, 7, 64, 512, 4095, 5000][Int(input.byte() % 8)]
        let payload = input.rest()
        let stream = (mode & 0x4 == 0 ? Array(StanzaText.prologue.utf8) : []) + payload
        let options = Self.options(mode)

        let whole = feed(stream, pieces: [stream.count], options: options)
        var generator = SplitMix(seed: seed)
        var pieces: [Int] = []
        var total = 0
        while total < stream.count {
            let size = min(stream.count - total, 1 + Int(generator.next() % UInt64(largestPiece)))
            pieces.append(size)
            total += size
        }
        let split = feed(stream, pieces: pieces, options: options)
        try compare(whole, split, "whole", "in pieces \(pieces.prefix(40))", stream: stream, options: options)

        if mode & 0x8 != 0 {
            // A reset parser is a new parser: the same bytes give the same answer.
            let parser = XMLStreamParser(options: options)
            _ = try? parser.parse(Array(payload.prefix(100)))
            parser.reset()
            let again = feed(stream, pieces: [stream.count], options: options, parser: parser)
            try compare(whole, again, "whole", "whole after reset()", stream: stream, options: options)
        }
    }

    /// Default options, small limits (to reach every limit with short inputs), or
    /// namespace declarations reported (as the spec runner parses).
    static func options(_ mode: UInt8) -> XMLStreamParser.Options {
        var options = XMLStreamParser.Options()
        switch mode & 0x3 {
        case 2:
            options.maxStanzaBytes = 600
            options.maxDepth = 6
            options.maxElementsPerStanza = 24
            options.maxAttributesPerElement = 5
            options.maxHeaderBytes = 400
        case 3:
            options.reportsNamespaceDeclarations = true
        default:
            break
        }
        return options
    }

    /// What one parser made of the bytes: every event until it failed, and its error.
    struct Outcome {
        var events: [XMLStreamEvent] = []
        var error: XMLStreamParserError?
        /// What the parser did wrong after failing, if anything.
        var afterError: String?
    }

    static func feed(
        _ bytes: [UInt8], pieces: [Int], options: XMLStreamParser.Options,
        parser: XMLStreamParser? = nil
    ) -> Outcome {
        let parser = parser ?? XMLStreamParser(options: options)
        var outcome = Outcome()
        var offset = 0
        for size in pieces {
            do {
                outcome.events += try parser.parse(Array(bytes[offset..<(offset + size)]))
            } catch {
                outcome.error = error
                // A failed parser keeps failing, with its first error.
                do {
                    _ = try parser.parse("<message/>")
                    outcome.afterError = "accepted bytes after failing with \(error)"
                } catch let again {
                    if again != error { outcome.afterError = "failed with \(error), then with \(again)" }
                }
                return outcome
            }
            offset += size
        }
        return outcome
    }

    static func compare(
        _ a: Outcome, _ b: Outcome, _ aName: String, _ bName: String, stream: [UInt8],
        options: XMLStreamParser.Options
    ) throws(FuzzFinding) {
        for outcome in [a, b] {
            if let broken = outcome.afterError { throw FuzzFinding("stream parser: \(broken)") }
        }
        switch (a.error, b.error) {
        case (nil, nil):
            guard a.events != b.events else { return }
            let common = min(a.events.count, b.events.count)
            let first = (0..<common).first { a.events[$0] != b.events[$0] } ?? common
            throw FuzzFinding(
                "stream parser: \(a.events.count) events fed \(aName), \(b.events.count) fed \(bName); "
                    + "first difference at event \(first):\n  \(aName): \(describe(a.events, first))\n"
                    + "  \(bName): \(describe(b.events, first))"
            )
        case (let x?, let y?):
            try FuzzFinding.check(
                x.condition == y.condition || (isMarkupError(x) && isMarkupError(y)),
                "stream parser: fed \(aName) it failed with \(x); fed \(bName) with \(y)"
            )
        case (let x?, nil):
            try FuzzFinding.check(
                isNotYetSeen(x), "stream parser: fed \(aName) it failed with \(x); fed \(bName) it did not"
            )
            try checkNothingBeyondError(b, bName, stream: stream, options: options)
        case (nil, let y?):
            try FuzzFinding.check(
                isNotYetSeen(y), "stream parser: fed \(bName) it failed with \(y); fed \(aName) it did not"
            )
            try checkNothingBeyondError(a, aName, stream: stream, options: options)
        }
    }

    /// The feeding that has not failed (yet) must not have reported anything the
    /// stream does not hold before its error: its events are at most those of the same
    /// bytes fed one at a time (which reports everything up to the failing byte).
    static func checkNothingBeyondError(
        _ outcome: Outcome, _ name: String, stream: [UInt8], options: XMLStreamParser.Options
    ) throws(FuzzFinding) {
        let reference = feed(stream, pieces: Array(repeating: 1, count: stream.count), options: options)
        let consistent =
            reference.error == nil
            ? reference.events == outcome.events : reference.events.starts(with: outcome.events)
        try FuzzFinding.check(
            consistent,
            "stream parser: fed \(name) it reported \(outcome.events.count) events without failing; fed byte by byte "
                + "\(reference.events.count) events\(reference.error.map { ", then \($0)" } ?? "")"
        )
    }

    /// Whether the other feeding may simply not have reached `error` yet. libxml2 keeps
    /// a start tag back until it has seen a '>' that may end it, and text until the next
    /// '<', so malformed bytes at the end of the input may be reported by one feeding and
    /// still be waiting in the other (which reports them when more bytes arrive); the
    /// same goes for a byte-size limit near its bound.
    static func isNotYetSeen(_ error: XMLStreamParserError) -> Bool {
        error.condition == .notWellFormed || isSizeLimit(error)
    }

    /// Errors in the markup: which of two is reported first may depend on the pieces.
    /// Undeclared prefixes are noticed only after libxml2 returns from a piece, while
    /// restricted XML (a comment) is refused as libxml2 reports it, within the piece;
    /// limits are checked as bytes arrive (see `isSizeLimit`). All of them end the
    /// stream; an encoding error must be the same whatever the pieces.
    static func isMarkupError(_ error: XMLStreamParserError) -> Bool {
        error.condition == .notWellFormed || error.condition == .restrictedXML || error.condition == .policyViolation
    }

    /// Limits are checked as bytes arrive (the attribute count on the raw bytes of each
    /// piece before libxml2 sees them; stanza and header sizes on bytes received), while
    /// libxml2 parses some bytes only when more arrive. So when the bytes break both a
    /// limit and well-formedness, which is reported first depends on the pieces (both
    /// close the stream); and near a byte-size limit (stanza, stream header), whether it
    /// is hit at all may. Every other outcome must not depend on the pieces.
    static func isSizeLimit(_ error: XMLStreamParserError) -> Bool {
        error.condition == .policyViolation && error.detail.contains("larger than")
    }

    private static func describe(_ events: [XMLStreamEvent], _ index: Int) -> String {
        guard index < events.count else { return "(no event)" }
        switch events[index] {
        case .streamOpen(let header, let namespace): return "stream open \(header) default \(namespace ?? "-")"
        case .element(let element): return StanzaText.debug(element)
        case .streamClose: return "stream close"
        }
    }
}
