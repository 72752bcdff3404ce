import Scansion
import Testing
import XMPPCore

/// A failed `receives` prints why each passed-over stanza did not match: the path to
/// the element that differs, and what differs.
@Suite struct MismatchDescriptionTests {
    static let muc = "{\(Fixture.mucUser)}"

    struct Case: Sendable, CustomTestStringConvertible {
        var testDescription: String
        var expected: String
        var received: String
        var path: String
        /// Fragments the reason must contain.
        var reason: [String]
    }

    static let cases: [Case] = [
        Case(
            testDescription: "wrong attribute value", expected: "<iq type='result' id='a1'/>",
            received: "<iq type='error' id='a1'/>", path: "iq", reason: ["type", "result", "error"]),
        Case(
            testDescription: "missing attribute", expected: "<iq type='result' id='a1'/>", received: "<iq id='a1'/>",
            path: "iq", reason: ["missing", "type", "result"]),
        Case(
            testDescription: "missing child", expected: "<message><body>hi</body><subject/></message>",
            received: "<message><body>hi</body></message>", path: "message", reason: ["missing child", "subject"]),
        Case(
            testDescription: "text of a non-strict child", expected: "<message><body>hi</body></message>",
            received: "<message><body>bye</body></message>", path: "message/body", reason: ["text", "hi", "bye"]),
        Case(
            testDescription: "element name", expected: "<message/>", received: "<presence/>", path: "message",
            reason: ["message", "presence"]),
        Case(
            testDescription: "namespace", expected: "<presence><x xmlns='urn:a'/></presence>",
            received: "<presence><x xmlns='urn:b'/></presence>", path: "presence/x{urn:a}", reason: ["urn:a", "urn:b"]),
        Case(
            testDescription: "strict extra attribute", expected: "<iq><query xmlns='urn:q' a='1'/></iq>",
            received: "<iq><query xmlns='urn:q' a='1' ver='9'/></iq>", path: "iq/query{urn:q}",
            reason: ["unexpected attribute", "ver", "9"]),
        Case(
            testDescription: "strict extra child", expected: "<iq><query xmlns='urn:q'><item/></query></iq>",
            received: "<iq><query xmlns='urn:q'><item/><group/></query></iq>", path: "iq/query{urn:q}",
            reason: ["expected 1 child", "got 2", "<group>"]),
        Case(
            testDescription: "strict order", expected: "<iq><query xmlns='urn:q'><a/><b/></query></iq>",
            received: "<iq><query xmlns='urn:q'><b/><a/></query></iq>", path: "iq/query{urn:q}/a{urn:q}[1]",
            reason: ["<a>", "<b>"]),
        Case(
            testDescription: "strict text", expected: "<iq><query xmlns='urn:q'><v>1.0</v></query></iq>",
            received: "<iq><query xmlns='urn:q'><v>2.0</v></query></iq>", path: "iq/query{urn:q}/v{urn:q}[1]",
            reason: ["text", "1.0", "2.0"]),
    ]

    @Test(arguments: cases)
    func namesThePathAndTheDifference(_ test: Case) throws {
        let mismatch = try #require(try Fixture.mismatch(test.expected, test.received))
        #expect(mismatch.path == test.path, "\(mismatch)")
        for fragment in test.reason {
            #expect(mismatch.reason.contains(fragment), "\(mismatch) lacks \(fragment)")
        }
        #expect(mismatch.description == "at \(mismatch.path): \(mismatch.reason)")
    }

    @Test func deepPathInTheKickPresence() throws {
        let expected = """
            <presence type='unavailable'>
                <x xmlns='http://jabber.org/protocol/muc#user'>
                    <status code='321'/>
                    <item role='none'><actor nick='Romeo'/></item>
                </x>
            </presence>
            """
        let received = """
            <presence type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'>
            <status code='321'/><item role='none'><actor nick='Mercutio'/></item></x></presence>
            """
        let mismatch = try #require(try Fixture.mismatch(expected, received))
        #expect(mismatch.path == "presence/x\(Self.muc)/item\(Self.muc)[2]/actor\(Self.muc)[1]")
        #expect(mismatch.reason.contains("nick"))
        #expect(mismatch.reason.contains("Romeo") && mismatch.reason.contains("Mercutio"))
    }

    @Test func closestCandidateIsReportedForANonStrictChild() throws {
        // The <body> is the only received child with the expected name: its difference is shown.
        let mismatch = try #require(
            try Fixture.mismatch("<message><body>hi</body></message>", "<message><thread/><body>ho</body></message>"))
        #expect(mismatch.path == "message/body")
        #expect(mismatch.reason.contains("ho"))
    }

    @Test func missingChildShowsTheExpectedElementOnce() throws {
        let mismatch = try #require(
            try Fixture.mismatch("<message><x xmlns='urn:x' a='1'/></message>", "<message><body/></message>"))
        #expect(mismatch.reason.contains("missing child"))
        #expect(mismatch.reason.contains("urn:x") && mismatch.reason.contains("a=\"1\""))
        #expect(mismatch.reason == "missing child <x xmlns=\"urn:x\" a=\"1\"/>")
    }
}
