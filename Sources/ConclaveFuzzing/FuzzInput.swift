/// The fuzzer's bytes read as a sequence of decisions: which occupant acts, which
/// stanza it sends, which text goes into it.
///
/// Why a reader rather than a parser of some format: every byte string, however
/// mutated, must mean *something*, so that libFuzzer's mutations move between nearby
/// behaviours instead of being thrown away as invalid. Past the end every read gives
/// zero, so a short input is a valid (short) program too.
public struct FuzzInput {
    private let bytes: [UInt8]
    private var position = 0

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    public var isAtEnd: Bool { position >= bytes.count }

    /// Bytes not read yet.
    public var remaining: Int { max(0, bytes.count - position) }

    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// A number in `0..<bound` (`bound` at most 65,536), from one or two bytes.
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0 && bound <= 65_536)
        if bound <= 256 { return Int(byte()) % bound }
        return (Int(byte()) << 8 | Int(byte())) % bound
    }

    public mutating func bool() -> Bool { byte() & 1 == 1 }

    public mutating func pick<T>(_ values: [T]) -> T { values[below(values.count)] }

    /// The next `count` bytes (fewer at the end).
    public mutating func bytes(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, position + max(0, count))
        guard position < end else { return [] }
        defer { position = end }
        return Array(bytes[position..<end])
    }

    /// Everything not read yet.
    public mutating func rest() -> [UInt8] { bytes(remaining) }

    /// Text that XML can carry: from a dictionary of strings that matter to the code
    /// under test (nicks that differ only in case or width, bidi controls, JID
    /// separators, roles and affiliations, numbers around limits), raw bytes decoded as
    /// UTF-8, or a piece repeated up to `maxRepeat` times to reach the size limits.
    public mutating func text(_ dictionary: [String] = FuzzInput.words, maxRepeat: Int = 3000) -> String {
        switch byte() % 8 {
        case 0, 1, 2, 3:
            return pick(dictionary)
        case 4, 5:
            return Self.xmlSafe(String(decoding: bytes(Int(byte() % 48)), as: UTF8.self))
        case 6:
            return pick(dictionary) + pick(Self.words)
        default:
            let piece = pick(dictionary)
            let times = 1 + below(max(1, min(maxRepeat, 65_536)))
            return String(repeating: piece.isEmpty ? "x" : piece, count: times)
        }
    }

    /// `text` without the characters XML 1.0 cannot carry (§2.2: controls other than
    /// tab, line feed and carriage return; U+FFFE, U+FFFF). Whatever the parser hands
    /// over contains none of them; generated stanzas must not either, or a failed
    /// round trip would be the generator's fault.
    public static func xmlSafe(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { !isXMLCharacter($0) }) else { return text }
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars where isXMLCharacter(scalar) { scalars.append(scalar) }
        return String(scalars)
    }

    public static func isXMLCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x9, 0xA, 0xD, 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: true
        default: false
        }
    }

    /// Strings worth trying wherever text goes.
    public static let words: [String] = [
        "", " ", "a", "Romeo", "romeo", "ROMEO", "Ｒｏｍｅｏ", "Romeo ", " Romeo", "Rom eo", "Rom\u{200B}eo",
        "\u{202E}oemoR", "Juliet", "juliet", "Nurse", "nurse", "ﬁ", "ß", "ss", "ΣΑΣ", "σας", "❤", "❤️", "👨‍👩‍👧",
        "x/y", "x@y", "@", "/", "a@b/c", "&", "<", ">", "'", "\"", "]]>", "&amp;", "&#38;", "\r", "\n", "\t", "\r\n",
        "owner", "admin", "member", "outcast", "none", "moderator", "participant", "visitor",
        "0", "1", "-1", "true", "false", "10", "20", "1000", "1001", "9999999999999999999999", "none", "anyone",
        "moderators", "participants", "2026-01-01T00:00:00Z", "1970-01-01T00:00:00.5+01:00", "é", "日本", "𝄞",
        "verona@conference.example", "verona@conference.example/Romeo", "romeo@montague.example",
        "juliet@capulet.example/chamber", "mallory@evil.example", "conference.example", "muc~~", "muc~AAAA~x",
        "muc~cm9tZW9AbW9udGFndWUuZXhhbXBsZS9iYWxjb255~id",
    ]
}
