import MUC
import Testing

/// XEP-0082 date-time stamps as `<delay/>` and `<history since=…/>` use them.
@Suite struct TimestampTests {
    static let known: [(Double, String)] = [
        (0, "1970-01-01T00:00:00.000Z"),
        (951_782_400, "2000-02-29T00:00:00.000Z"),
        (1_709_164_800.5, "2024-02-29T00:00:00.500Z"),
        (1_709_251_199, "2024-02-29T23:59:59.000Z"),
        (1_709_251_200, "2024-03-01T00:00:00.000Z"),
        (4_107_542_400, "2100-03-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.000Z"),
    ]

    @Test(arguments: known)
    func formatsUTCWithMilliseconds(seconds: Double, text: String) {
        #expect(Timestamp.format(seconds) == text)
    }

    @Test(arguments: known)
    func parsesWhatItFormats(seconds: Double, text: String) {
        #expect(Timestamp.parse(text) == seconds)
    }

    @Test func parsesWithoutFractionOrWithAnOffset() {
        #expect(Timestamp.parse("2024-02-29T12:00:00Z") == 1_709_208_000)
        #expect(Timestamp.parse("2024-02-29T14:30:00+02:30") == 1_709_208_000)
        #expect(Timestamp.parse("2024-02-29T07:00:00-05:00") == 1_709_208_000)
        #expect(Timestamp.parse("2024-02-29T12:00:00.25Z") == 1_709_208_000.25)
    }

    @Test(arguments: ["", "yesterday", "2024-02-29", "2024-02-29T12:00Z", "2024-0a-29T12:00:00Z"])
    func refusesWhatIsNotADateTime(text: String) {
        #expect(Timestamp.parse(text) == nil)
    }

    /// Whole seconds around the leap days of the 400- and 100-year rules, before and after 1970.
    @Test(arguments: [
        "1900-02-28T23:59:59.000Z", "1900-03-01T00:00:00.000Z", "1969-12-31T23:59:59.000Z", "2000-02-29T12:00:00.000Z",
        "2023-12-31T23:59:59.000Z", "2024-02-29T23:59:59.000Z", "2100-02-28T00:00:00.000Z", "2400-02-29T00:00:00.000Z",
    ])
    func wholeSecondsRoundTripAcrossCalendarRules(text: String) throws {
        let seconds = try #require(Timestamp.parse(text))
        #expect(seconds == seconds.rounded())
        #expect(Timestamp.format(seconds) == text)
    }

    @Test func theDayAfterFebruary28OfA100YearIsMarch1() throws {
        let february28 = try #require(Timestamp.parse("1900-02-28T00:00:00Z"))
        #expect(Timestamp.format(february28 + 86_400) == "1900-03-01T00:00:00.000Z")
        let leap = try #require(Timestamp.parse("2000-02-28T00:00:00Z"))
        #expect(Timestamp.format(leap + 86_400) == "2000-02-29T00:00:00.000Z")
    }

    @Test func extraFractionDigitsAreRead() {
        #expect(Timestamp.parse("1970-01-01T00:00:01.5Z") == 1.5)
        #expect(Timestamp.parse("1970-01-01T00:00:01.250000Z") == 1.25)
    }

    @Test(arguments: [0.0009, 59.9999, 1_709_208_000.000_4, -0.5])
    func aFormattedStampIsWithinAMillisecondOfTheInstant(seconds: Double) throws {
        let text = Timestamp.format(seconds)
        #expect(text.hasSuffix("Z") && text.count == 24)
        #expect(abs(try #require(Timestamp.parse(text)) - seconds) < 0.001)
    }

    /// A stamp read from a client and written back must not move: every millisecond
    /// of a second round-trips.
    @Test func everyMillisecondRoundTrips() {
        let drifted = (0..<1000).compactMap { millis -> String? in
            let text = "2024-02-29T12:34:56.\(String(millis + 1000).dropFirst())Z"
            guard let seconds = Timestamp.parse(text) else { return text }
            return Timestamp.format(seconds) == text ? nil : text
        }
        let examples = drifted.prefix(3).joined(separator: ", ")
        #expect(drifted.count == 0, "e.g. \(examples)")
    }
}
