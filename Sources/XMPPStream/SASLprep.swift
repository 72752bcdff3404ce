import Foundation

/// SASLprep (RFC 4013, the stringprep profile for user names and passwords): what a
/// client applies to a password before it hashes it, so the server must apply the same
/// when it derives stored keys and when it checks a PLAIN password, or a password with
/// a non-ASCII space or a compatibility character would never match.
///
/// Mapping: non-ASCII spaces become U+0020, characters "commonly mapped to nothing"
/// (soft hyphen, zero-width joiners, variation selectors…) are removed; then NFKC.
/// Refused: control characters, private use, non-characters, surrogates, characters
/// inappropriate for plain text, tagging characters, and mixed-direction text that
/// breaks the bidi rule. ASCII text without controls passes unchanged.
enum SASLprep {
    static func prepare(_ input: String) -> String? {
        if input.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return input }
        var mapped = String.UnicodeScalarView()
        for scalar in input.unicodeScalars {
            if isMappedToNothing(scalar) { continue }
            if scalar.properties.generalCategory == .spaceSeparator {
                mapped.append(" ")
            } else {
                mapped.append(scalar)
            }
        }
        let normalized = String(mapped).precomposedStringWithCompatibilityMapping
        var hasRandAL = false
        var hasL = false
        for scalar in normalized.unicodeScalars {
            if isProhibited(scalar) { return nil }
            if isRightToLeft(scalar) {
                hasRandAL = true
            } else if scalar.properties.isAlphabetic {
                hasL = true
            }
        }
        if hasRandAL {
            // RFC 3454 §6: no L characters, and R/AL first and last.
            let scalars = Array(normalized.unicodeScalars)
            if hasL || !isRightToLeft(scalars.first!) || !isRightToLeft(scalars.last!) { return nil }
        }
        return normalized
    }

    /// Bidi classes R and AL, by the blocks of the right-to-left scripts (the standard
    /// library does not expose bidi classes; this covers every assigned R/AL letter).
    private static func isRightToLeft(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x0590...0x08FF, 0xFB1D...0xFDFF, 0xFE70...0xFEFE, 0x10800...0x10FFF, 0x1E800...0x1EFFF:
            return scalar.properties.isAlphabetic || scalar.properties.generalCategory == .otherPunctuation
        default: return false
        }
    }

    private static func isMappedToNothing(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00AD, 0x034F, 0x1806, 0x180B...0x180D, 0x200B...0x200D, 0x2060, 0xFE00...0xFE0F, 0xFEFF: return true
        default: return false
        }
    }

    private static func isProhibited(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        switch scalar.properties.generalCategory {
        case .control, .privateUse, .surrogate, .unassigned: return true
        case .format:
            // Format characters other than the bidi marks handled by the bidi rule.
            return !(value == 0x200E || value == 0x200F)
        default: break
        }
        if scalar.properties.isNoncharacterCodePoint { return true }
        switch value {
        case 0xFFF9...0xFFFD, 0x2FF0...0x2FFB, 0xE0001, 0xE0020...0xE007F, 0x0340, 0x0341, 0x200E, 0x200F,
            0x202A...0x202E, 0x206A...0x206F:
            return true
        default: return false
        }
    }
}
