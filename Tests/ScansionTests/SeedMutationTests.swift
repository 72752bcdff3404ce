import Scansion
import Testing
import XMPPCore

/// The seed's expectations for Romeo against what a correct server (Prosody) sends,
/// written by hand from XEP-0045; each mutation of an expectation must then fail.
///
/// Prosody's muc#user payloads carry the status codes its caller adds (321, 307, 201)
/// before the <item>, and the self-presence code 110 after it, which is the order the
/// seed expects; `<x xmlns='…muc#user'>` declares a namespace, so it is strict.
@Suite struct SeedMutationTests {
    /// Romeo is user@localhost/r, Juliet user2@localhost/j (see `Fixture.addresses`).
    static let kickPresence = """
        <presence type='unavailable' from='room@conference.localhost/Juliet' to='user@localhost/r'>\
        <x xmlns='http://jabber.org/protocol/muc#user'>\
        <status code='321'/>\
        <item affiliation='none' role='none' jid='user2@localhost/j'>\
        <actor jid='user@localhost/r' nick='Romeo'/>\
        </item>\
        </x>\
        </presence>
        """

    static let memberMessage = """
        <message from='room@conference.localhost' to='user@localhost/r' id='lx09df'>\
        <x xmlns='http://jabber.org/protocol/muc#user'>\
        <item affiliation='member' jid='user2@localhost'/>\
        </x>\
        </message>
        """

    static let ownerJoinPresence = """
        <presence from='room@conference.localhost/Romeo' to='user@localhost/r'>\
        <x xmlns='http://jabber.org/protocol/muc#user'>\
        <status code='201'/>\
        <item role='moderator' jid='user@localhost/r' affiliation='owner'/>\
        <status code='110'/>\
        </x>\
        </presence>
        """

    static func kickBlock() throws -> String {
        try Seed.receivesBlock(of: "Romeo", containing: ["code='321'"])
    }

    static func memberBlock() throws -> String {
        try Seed.receivesBlock(of: "Romeo", containing: ["<message", "affiliation='member'"])
    }

    /// Matches `block` (a seed expectation, variables not yet substituted) against `received`.
    static func mismatch(_ block: String, _ received: String) throws -> StanzaMatcher.Mismatch? {
        try Fixture.mismatch(try Fixture.substitute(block), received)
    }

    /// `block` with `original` (which must occur exactly once) replaced by `replacement`.
    static func mutate(_ block: String, _ original: String, _ replacement: String) throws -> String {
        try #require(block.ranges(of: original).count == 1, "'\(original)' is not once in the seed block")
        return block.replacing(original, with: replacement)
    }

    @Test func unmutatedExpectationsMatchWhatProsodySends() throws {
        let kick = try Self.mismatch(try Self.kickBlock(), Self.kickPresence)
        #expect(kick == nil, "\(kick?.description ?? "")")
        let member = try Self.mismatch(try Self.memberBlock(), Self.memberMessage)
        #expect(member == nil, "\(member?.description ?? "")")
        let joinBlock = try Seed.receivesBlock(of: "Romeo", containing: ["code='201'"])
        let join = try Self.mismatch(joinBlock, Self.ownerJoinPresence)
        #expect(join == nil, "\(join?.description ?? "")")
    }

    @Test(arguments: [
        ("status code 321 → 307", "code='321'", "code='307'"),
        ("affiliation none → member", "affiliation='none'", "affiliation='member'"),
        ("extra expected <status code='110'/>", "<status code='321'/>", "<status code='321'/><status code='110'/>"),
        ("wrong actor nick", "nick='Romeo'", "nick='Juliet'"),
        ("role none → visitor", "role='none'", "role='visitor'"),
        ("actor is Juliet", "jid=\"${Romeo's full JID}\"", "jid=\"${Juliet's full JID}\""),
        ("item jid bare instead of full", "${Juliet's full JID}", "${Juliet's JID}"),
        ("no status expected (strict children)", "<status code='321'/>", ""),
        ("presence from Romeo's occupant", "localhost/Juliet'", "localhost/Romeo'"),
        ("reason expected inside item", "</item>", "<reason/></item>"),
    ])
    func kickMutationFails(mutation: String, original: String, replacement: String) throws {
        let block = try Self.mutate(try Self.kickBlock(), original, replacement)
        #expect(try Self.mismatch(block, Self.kickPresence) != nil, "\(mutation)")
    }

    @Test(arguments: [
        ("affiliation member → none", "affiliation='member'", "affiliation='none'"),
        ("extra expected <status code='110'/>", "</x>", "<status code='110'/></x>"),
        ("full instead of bare JID", "${Juliet's JID}", "${Juliet's full JID}"),
        ("Romeo instead of Juliet", "${Juliet's JID}", "${Romeo's JID}"),
        ("role expected too (strict item)", "affiliation='member'", "affiliation='member' role='none'"),
        ("from another room", "from='room@conference.localhost'", "from='hall@conference.localhost'"),
        ("muc instead of muc#user", "protocol/muc#user'", "protocol/muc'"),
    ])
    func memberMutationFails(mutation: String, original: String, replacement: String) throws {
        let block = try Self.mutate(try Self.memberBlock(), original, replacement)
        #expect(try Self.mismatch(block, Self.memberMessage) != nil, "\(mutation)")
    }

    @Test func expectedOrderMattersInsideMucUser() throws {
        // The same children, status moved after item: strict, so it no longer matches Prosody's order.
        let moved = try Self.mutate(
            try Self.mutate(try Self.kickBlock(), "<status code='321'/>", ""), "</item>", "</item><status code='321'/>")
        let mismatch = try #require(try Self.mismatch(moved, Self.kickPresence))
        #expect(mismatch.path.hasSuffix("[1]"))
    }

    @Test func kickMutationsNameWhatDiffers() throws {
        let block = try Self.kickBlock()
        let code = try #require(
            try Self.mismatch(try Self.mutate(block, "code='321'", "code='307'"), Self.kickPresence))
        #expect(code.path.hasSuffix("/status{\(Fixture.mucUser)}[1]") && code.reason.contains("307"))
        let nick = try #require(
            try Self.mismatch(try Self.mutate(block, "nick='Romeo'", "nick='Juliet'"), Self.kickPresence))
        #expect(nick.path.hasSuffix("/actor{\(Fixture.mucUser)}[1]") && nick.reason.contains("nick"))
        let extra = try #require(
            try Self.mismatch(
                try Self.mutate(block, "<status code='321'/>", "<status code='321'/><status code='110'/>"),
                Self.kickPresence))
        #expect(extra.reason.contains("expected 3 child element(s), got 2"))
    }

    /// What a wrong server might send instead, against the unmutated expectation.
    @Test(arguments: [
        ("item before status", "<status code='321'/><item", "<item", "</item>", "</item><status code='321'/>"),
        ("kick code 307", "code='321'", "code='307'", "", ""),
        ("affiliation member kept", "affiliation='none'", "affiliation='member'", "", ""),
        ("extra status 110", "</x>", "<status code='110'/></x>", "", ""),
        ("extra attribute on x's item", "role='none'", "role='none' nick='Juliet'", "", ""),
        ("no actor", "<actor jid='user@localhost/r' nick='Romeo'/>", "", "", ""),
        ("available presence", "type='unavailable' ", "", "", ""),
    ])
    func wrongServerKickFails(name: String, from1: String, to1: String, from2: String, to2: String) throws {
        var received = Self.kickPresence.replacing(from1, with: to1)
        if !from2.isEmpty { received = received.replacing(from2, with: to2) }
        try #require(received != Self.kickPresence)
        #expect(try Self.mismatch(try Self.kickBlock(), received) != nil, "\(name)")
    }

    @Test func harmlessDifferencesFromProsodyStillMatch() throws {
        // Extra attributes and children on the non-strict <presence>, and layout whitespace.
        let received = Self.kickPresence
            .replacing("to='user@localhost/r'>", with: "to='user@localhost/r' id='k1' xml:lang='en'>\n  ")
            .replacing("</presence>", with: "<c xmlns='http://jabber.org/protocol/caps' ver='v'/>\n</presence>")
            .replacing("<status code='321'/>", with: "\n    <status code='321'/>\n    ")
        #expect(try Self.mismatch(try Self.kickBlock(), received) == nil)
    }
}
