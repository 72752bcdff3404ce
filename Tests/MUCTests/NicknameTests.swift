import MUC
import Testing
import XMPPCore

/// The PRECIS Nickname profile (RFC 8266) as rooms enforce it: what is a nickname, what
/// it becomes, and which nicks are the same.
@Suite struct NicknameTests {
    /// Nicknames the profile accepts, and their enforced form.
    static let accepted: [(String, String)] = [
        ("Romeo", "Romeo"),
        ("  Romeo  ", "Romeo"),
        ("Romeo   Montague", "Romeo Montague"),
        ("Romeo\u{00A0}\u{2003}Montague", "Romeo Montague"),  // non-ASCII spaces become one ASCII space
        ("\u{3000}Juliet\u{3000}", "Juliet"),  // ideographic space
        ("Ｒｏｍｅｏ", "Romeo"),  // fullwidth forms become ASCII
        ("Zoë", "Zoë"),
        ("Zoe\u{0308}", "Zoe\u{0308}"),  // decomposed: canonically the same as the line above
        ("Straße", "Straße"),
        ("Σίσυφος", "Σίσυφος"),
        ("Ромео", "Ромео"),
        ("ロミオ", "ロミオ"),
        ("한국", "한국"),  // precomposed Hangul syllables
        ("Col·lecció", "Col·lecció"),  // a middle dot between two "l"
        ("\u{0915}\u{094D}\u{200D}\u{0937}", "\u{0915}\u{094D}\u{200D}\u{0937}"),  // ZWJ after a virama
        ("\u{0958}", "\u{0958}"),  // a composition exclusion: only canonically different
        ("❤", "❤"),
        ("👍🏽", "👍🏽"),  // a skin tone modifier is a symbol, not invisible
        ("🇫🇷", "🇫🇷"),
        ("R&J <3", "R&J <3"),
        ("\u{0661}\u{0662}", "\u{0661}\u{0662}"),
    ]

    @Test(arguments: accepted)
    func isANickname(_ input: String, _ enforced: String) throws {
        let nick = try Nickname(input)
        #expect(nick.value == enforced)
        #expect(Array(nick.value.unicodeScalars) == Array(enforced.unicodeScalars), "mapped, not just equivalent")
    }

    /// What the profile refuses, and why.
    static let refused: [(String, Nickname.Violation.Reason, UInt32?)] = [
        ("", .empty, nil),
        ("   ", .empty, nil),
        ("\u{3000}\u{00A0}", .empty, nil),
        ("Rom\u{0007}eo", .control, 0x07),
        ("Romeo\u{007F}", .control, 0x7F),
        ("\u{202E}oemoR", .bidiControl, 0x202E),
        ("Romeo\u{200F}", .bidiControl, 0x200F),
        ("Rom\u{200B}eo", .ignorable, 0x200B),  // zero-width space
        ("Romeo\u{00AD}", .ignorable, 0xAD),  // soft hyphen
        ("\u{3164}", .ignorable, 0x3164),  // Hangul filler: a letter that shows nothing
        ("❤\u{FE0F}", .ignorable, 0xFE0F),  // an emoji variation selector
        ("👨\u{200D}👩", .joinControl, 0x200D),  // a ZWJ emoji sequence
        ("Romeo\u{2028}", .separator, 0x2028),
        ("\u{E000}", .privateUse, 0xE000),
        ("Romeo" + String(Unicode.Scalar(0xFDD0 as UInt32)!), .noncharacter, 0xFDD0),  // no literal for it
        ("\u{0378}", .unassigned, 0x378),
        ("\u{0600}1", .format, 0x600),  // ARABIC NUMBER SIGN: format, not ignorable
        ("\u{1100}\u{1161}", .oldHangulJamo, 0x1100),
        ("Romeo\u{0640}", .disallowed, 0x640),  // tatweel
        ("a·b", .disallowed, 0xB7),
        ("ﬁnn", .compatibility, 0xFB01),  // a ligature of "fi"
        ("Ⓡomeo", .compatibility, 0x24C7),
        ("Romeo²", .compatibility, 0xB2),
        ("𝐑omeo", .compatibility, 0x1D411),  // MATHEMATICAL BOLD CAPITAL R
        ("ﾛﾐｵ", .compatibility, 0xFF9B),  // halfwidth katakana
        ("\u{0661}\u{06F1}", .mixedDigits, nil),
    ]

    @Test(arguments: refused)
    func isNotANickname(_ input: String, _ reason: Nickname.Violation.Reason, _ codePoint: UInt32?) {
        let violation = #expect(throws: Nickname.Violation.self) { try Nickname(input) }
        #expect(violation?.reason == reason)
        #expect(violation?.scalar?.value == codePoint)
    }

    @Test func theErrorSaysWhichCharacterAndWhy() throws {
        let error = try #require(throws: Nickname.Violation.self) { try Nickname("❤\u{FE0F}") }
        #expect(error.stanzaError.condition == .jidMalformed)
        #expect(error.stanzaError.type == .modify)
        #expect(error.text.contains("U+FE0F"))
        #expect(error.text.contains("variation selector"))
        let invisible = try #require(throws: Nickname.Violation.self) { try Nickname("Rom\u{200B}eo") }
        #expect(invisible.text.contains("U+200B"))
        #expect(invisible.text.contains("invisible"))
    }

    /// Prosody refuses a nick of nothing but spaces with `not-allowed`.
    @Test func anInvisibleNickIsNotAllowed() throws {
        let error = try #require(throws: Nickname.Violation.self) { try Nickname("  ") }
        #expect(error.stanzaError.condition == .notAllowed)
        #expect(error.stanzaError.text?.isEmpty == false)
    }

    /// Pairs the profile compares as the same nick, and pairs it keeps apart.
    static let comparisons: [(String, String, Bool)] = [
        ("Romeo", "romeo", true),
        ("Romeo", "ROMEO", true),
        ("Romeo", "Ｒｏｍｅｏ", true),
        ("Romeo", "  Romeo ", true),
        ("Romeo Montague", "romeo\u{00A0}\u{00A0}montague", true),
        ("Zoë", "ZOE\u{0308}", true),
        ("Σίσυφος", "ΣΊΣΥΦΟΣ", true),
        ("Σίσυφος", "Σίσυφοσ", true),  // final sigma: stricter than the profile (see Nickname)
        ("K", "\u{212A}", true),  // KELVIN SIGN lowercases to "k"
        ("Straße", "Strasse", false),  // the profile lowercases; it does not case-fold
        ("Romeo", "Romeo2", false),
        ("Romeo", "Rorneo", false),
    ]

    @Test(arguments: comparisons)
    func compares(_ a: String, _ b: String, _ same: Bool) {
        #expect(Nickname.same(a, b) == same)
        #expect((Nickname.comparisonKey(of: a) == Nickname.comparisonKey(of: b)) == same)
    }

    @Test func anEnforcedNickKeepsItsCaseAndCarriesItsKey() throws {
        let nick = try Nickname(" Ｒｏｍｅｏ ")
        #expect(nick.value == "Romeo")
        #expect(nick.key == "romeo")
        #expect(nick.key == Nickname.comparisonKey(of: "ROMEO"))
    }
}
