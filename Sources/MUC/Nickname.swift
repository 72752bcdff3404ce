public import XMPPCore

/// A room nickname enforced by the PRECIS Nickname profile (RFC 8266), and the form it
/// is compared in.
///
/// Why: a nickname is all other occupants see of someone. Without the profile, one
/// occupant can take a nick that looks exactly like another's or like a reserved one
/// ("romeo", "Ｒｏｍｅｏ", "Romeo" with a zero-width space), or hide text direction
/// overrides and invisible characters in it. So a room enforces nicks on entry, on a
/// nick change and on registration, and compares them only in the profile's
/// comparison form.
///
/// Enforcement (RFC 8266 §2.3), as far as Swift's standard library allows without
/// Foundation or Unicode tables of our own:
/// - additional mapping: every non-ASCII space (category Zs) becomes U+0020, spaces at
///   either end go, runs of spaces become one;
/// - normalization: fullwidth ASCII (U+FF01–FF5E) becomes ASCII, the part of NFKC that
///   matters most for look-alikes. Other characters that NFKC would change
///   (ligatures, circled, superscript, mathematical or halfwidth forms…) cannot be
///   mapped without NFKC tables, so they are refused rather than left to imitate their
///   plain forms. Canonical equivalents need no mapping: Swift compares strings by
///   canonical equivalence;
/// - the FreeformClass (RFC 8264 §4.3, derived as in §9): letters, marks, digits,
///   symbols, punctuation and spaces are allowed; controls (Cc), format characters
///   (Cf), default-ignorable code points, noncharacters, private use, unassigned code
///   points, line and paragraph separators, conjoining Hangul jamo and the exceptions
///   RFC 5892 §2.6 disallows are not. Default-ignorable code points include the
///   emoji variation selectors (U+FE0E, U+FE0F), so "❤️" is refused and "❤" allowed.
///   The join controls (ZWNJ, ZWJ, CONTEXTJ) are allowed only after a virama, which
///   also refuses ZWJ emoji sequences; the Joining_Type rule for ZWNJ needs a table
///   Swift does not expose, so that use of ZWNJ is refused. Of the CONTEXTO rules,
///   the middle dot (between two "l") and the Arabic-Indic digits (not mixed with
///   extended ones) are checked; the Greek keraia, Hebrew geresh and gershayim and
///   the katakana middle dot are allowed without their context (their rules need the
///   Script property, which Swift does not expose).
///
/// Comparison (RFC 8266 §2.4): the same mapping, then Unicode toLowerCase (Swift's
/// `lowercased()`, full case mappings). "ß" and "ss" stay different, as the profile
/// wants (it lowercases; it does not case-fold). Final sigma is compared as sigma,
/// since Swift's lowercasing ignores its context.
public struct Nickname: Sendable, Hashable, CustomStringConvertible {
    /// The nick as the room uses it: what the client asked for, after enforcement.
    public let value: String
    /// The comparison form: two nicks with the same key are the same nick.
    public let key: String

    /// Enforces the profile on `raw`; throws why it is not a nickname.
    public init(_ raw: String) throws(Violation) {
        let mapped = Self.mapped(raw)
        guard !mapped.isEmpty else { throw Violation(.empty, nil) }
        try Self.checkFreeform(mapped)
        value = mapped
        key = Self.comparisonKey(of: mapped)
    }

    public var description: String { value }

    /// The comparison form of any string, enforced or not (a nick stored before
    /// enforcement existed, one looked up in a request): never fails.
    public static func comparisonKey(of nick: String) -> String {
        // Swift's lowercasing has no Final_Sigma context ("ΣΟΣ" gives "σοσ", not "σος"),
        // so final and other sigmas compare the same: stricter than the profile (two
        // nicks that differ only in that sigma conflict), never laxer.
        var key = String.UnicodeScalarView()
        for scalar in mapped(nick).lowercased().unicodeScalars {
            key.append(scalar == "\u{03C2}" ? "\u{03C3}" : scalar)
        }
        return String(key)
    }

    /// Whether two nicks are the same nick for the profile.
    public static func same(_ a: String, _ b: String) -> Bool {
        comparisonKey(of: a) == comparisonKey(of: b)
    }

    // MARK: - Mapping

    /// The additional mapping rule and the fullwidth part of NFKC.
    static func mapped(_ raw: String) -> String {
        var scalars = String.UnicodeScalarView()
        var pendingSpace = false
        for scalar in raw.unicodeScalars {
            if scalar.properties.generalCategory == .spaceSeparator {
                pendingSpace = !scalars.isEmpty
                continue
            }
            if pendingSpace {
                scalars.append(" ")
                pendingSpace = false
            }
            scalars.append(widthMapped(scalar))
        }
        return String(scalars)
    }

    /// Fullwidth ASCII variants (U+FF01–FF5E) as ASCII (their NFKC mapping).
    static func widthMapped(_ scalar: Unicode.Scalar) -> Unicode.Scalar {
        guard (0xFF01...0xFF5E).contains(scalar.value) else { return scalar }
        return Unicode.Scalar(scalar.value - 0xFEE0) ?? scalar
    }

    // MARK: - FreeformClass

    private static func checkFreeform(_ nick: String) throws(Violation) {
        let scalars = Array(nick.unicodeScalars)
        var arabicIndic = false
        var extendedArabicIndic = false
        for (index, scalar) in scalars.enumerated() {
            let properties = scalar.properties
            let value = scalar.value
            // RFC 8264 §9 derivation order: exceptions, unassigned, ASCII, join
            // controls, old Hangul jamo, ignorable properties, controls, then classes.
            if let allowed = exception(scalar, at: index, in: scalars) {
                guard allowed else { throw Violation(.disallowed, scalar) }
                if (0x0660...0x0669).contains(value) { arabicIndic = true }
                if (0x06F0...0x06F9).contains(value) { extendedArabicIndic = true }
                continue
            }
            if properties.isNoncharacterCodePoint { throw Violation(.noncharacter, scalar) }
            switch properties.generalCategory {
            case .unassigned: throw Violation(.unassigned, scalar)
            case .control: throw Violation(.control, scalar)
            case .privateUse, .surrogate: throw Violation(.privateUse, scalar)
            case .lineSeparator, .paragraphSeparator: throw Violation(.separator, scalar)
            default: break
            }
            if (0x21...0x7E).contains(value) || value == 0x20 { continue }
            if properties.isJoinControl {
                let afterVirama = index > 0 && scalars[index - 1].properties.canonicalCombiningClass == .virama
                guard afterVirama else { throw Violation(.joinControl, scalar) }
                continue
            }
            if (0x1100...0x11FF).contains(value) || (0xA960...0xA97F).contains(value) || (0xD7B0...0xD7FF).contains(value)
            {
                throw Violation(.oldHangulJamo, scalar)
            }
            if properties.isBidiControl { throw Violation(.bidiControl, scalar) }
            if properties.isDefaultIgnorableCodePoint { throw Violation(.ignorable, scalar) }
            if properties.generalCategory == .format { throw Violation(.format, scalar) }
            if isCompatibilityVariant(scalar) { throw Violation(.compatibility, scalar) }
        }
        if arabicIndic && extendedArabicIndic { throw Violation(.mixedDigits, nil) }
    }

    /// RFC 5892 §2.6 exceptions: `true` allowed here, `false` disallowed, `nil` not an
    /// exception.
    private static func exception(_ scalar: Unicode.Scalar, at index: Int, in scalars: [Unicode.Scalar]) -> Bool? {
        switch scalar.value {
        case 0x00DF, 0x03C2, 0x06FD, 0x06FE, 0x0F0B, 0x3007: return true
        case 0x0640, 0x07FA, 0x302E, 0x302F, 0x3031...0x3035, 0x303B: return false
        case 0x00B7:
            // MIDDLE DOT: only between two "l" (Catalan l·l).
            return index > 0 && index + 1 < scalars.count && scalars[index - 1] == "l" && scalars[index + 1] == "l"
        case 0x0660...0x0669, 0x06F0...0x06F9: return true  // mixing is checked over the whole nick
        default: return nil
        }
    }

    /// Whether NFKC would change `scalar` beyond its lowercasing and canonical
    /// normalization: a compatibility form (ligature, circled or mathematical letter,
    /// superscript…) of a plainer one. Swift has no NFKC mapping but knows whether
    /// NFKC_Casefold changes a scalar; for the lowercased scalar that is NFKC, except
    /// for the letters that only case folding changes (the profile does not fold) and
    /// the composition exclusions, which only canonical normalization changes (Swift
    /// compares canonically). Checked against Python's NFKC for every code point of
    /// Unicode 14: the two singletons below are the only exclusions NFKC changes further.
    static func isCompatibilityVariant(_ scalar: Unicode.Scalar) -> Bool {
        for lower in scalar.properties.lowercaseMapping.unicodeScalars {
            let properties = lower.properties
            // GREEK DIALYTIKA AND OXIA, GREEK OXIA: canonically U+0385 and U+00B4, which
            // have compatibility decompositions.
            if lower.value == 0x1FEE || lower.value == 0x1FFD { return true }
            if properties.changesWhenNFKCCaseFolded && !properties.isDefaultIgnorableCodePoint
                && !properties.isFullCompositionExclusion && !changesOnlyWhenCaseFolded(lower)
            {
                return true
            }
        }
        return false
    }

    /// Lowercase letters that case folding changes but NFKC does not: sharp s, final
    /// sigma, ypogegrammeni and the Greek letters with it, Cherokee small letters
    /// (folded to capitals), and the Cyrillic small letter variants of U+1C80–1C88.
    private static func changesOnlyWhenCaseFolded(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00DF, 0x0345, 0x03C2, 0x13F8...0x13FD, 0x1C80...0x1C88, 0xAB70...0xABBF,
            0x1F80...0x1FAF, 0x1FB2...0x1FB4, 0x1FB7, 0x1FBC, 0x1FC2...0x1FC4, 0x1FC7, 0x1FCC,
            0x1FF2...0x1FF4, 0x1FF7, 0x1FFC:
            return true
        default:
            return false
        }
    }

    // MARK: - Violations

    /// Why a string is not a nickname; `text` is what the client is told.
    public struct Violation: Error, Sendable, Hashable, CustomStringConvertible {
        public enum Reason: Sendable, Hashable {
            /// Nothing but spaces (or nothing at all).
            case empty
            case control, bidiControl, ignorable, format, noncharacter, privateUse, unassigned, separator
            case joinControl, oldHangulJamo, disallowed, compatibility, mixedDigits
        }

        public let reason: Reason
        /// The offending character, when one is to blame.
        public let scalar: Unicode.Scalar?

        init(_ reason: Reason, _ scalar: Unicode.Scalar?) {
            self.reason = reason
            self.scalar = scalar
        }

        /// The stanza error a room answers with: `jid-malformed` (as Prosody for a nick
        /// that fails its validation), except an invisible (empty) nick, which Prosody
        /// refuses with `not-allowed`.
        public var stanzaError: StanzaError {
            reason == .empty
                ? StanzaError(.notAllowed, text: text)
                : StanzaError(.jidMalformed, text: text)
        }

        public var text: String {
            let character = scalar.map { " " + Self.codePoint($0) } ?? ""
            let why: String
            switch reason {
            case .empty: return "invisible nicknames are forbidden: the nickname is empty or only spaces"
            case .control: why = "the control character\(character)"
            case .bidiControl: why = "the text direction control\(character)"
            case .ignorable:
                why =
                    scalar?.properties.isVariationSelector == true
                    ? "the variation selector\(character) (send the symbol without it)"
                    : "the invisible character\(character)"
            case .format: why = "the format character\(character)"
            case .noncharacter: why = "the noncharacter\(character)"
            case .privateUse: why = "the private-use character\(character)"
            case .unassigned: why = "the unassigned code point\(character)"
            case .separator: why = "the line or paragraph separator\(character)"
            case .joinControl: why = "the joiner\(character) outside the script context that needs it"
            case .oldHangulJamo: why = "the conjoining Hangul jamo\(character) (use precomposed syllables)"
            case .disallowed: why = "the character\(character), which nicknames may not use here"
            case .compatibility:
                why = "the compatibility character\(character) (a stylised form of a plainer one: use that)"
            case .mixedDigits: return "invalid nickname (RFC 8266): Arabic-Indic and extended Arabic-Indic digits are mixed"
            }
            return "invalid nickname (RFC 8266): it contains \(why)"
        }

        public var description: String { text }

        static func codePoint(_ scalar: Unicode.Scalar) -> String {
            let hex = String(scalar.value, radix: 16, uppercase: true)
            return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        }
    }
}
