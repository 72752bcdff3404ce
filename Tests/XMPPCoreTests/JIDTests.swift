import Testing
import XMPPCore

@Suite struct JIDTests {
    @Test func parsesAFullJID() throws {
        let jid = try JID("juliet@example.com/balcony")
        #expect(jid.localpart == "juliet")
        #expect(jid.domainpart == "example.com")
        #expect(jid.resourcepart == "balcony")
        #expect(jid.isFull && !jid.isBare)
        #expect(jid.description == "juliet@example.com/balcony")
    }

    @Test func parsesABareJID() throws {
        let jid = try JID("juliet@example.com")
        #expect(jid.localpart == "juliet")
        #expect(jid.resourcepart == nil)
        #expect(jid.isBare)
        #expect(jid.description == "juliet@example.com")
    }

    @Test func parsesADomainOnlyJID() throws {
        let jid = try JID("example.com")
        #expect(jid.localpart == nil)
        #expect(jid.domainpart == "example.com")
        #expect(jid.resourcepart == nil)
        #expect(jid.description == "example.com")
        let withResource = try JID("example.com/admin")
        #expect(withResource.localpart == nil && withResource.resourcepart == "admin")
    }

    @Test(
        arguments: [
            ("a@d/r/s", "a", "r/s"),
            ("a@d/r@x", "a", "r@x"),
            ("a@d/@/@/", "a", "@/@/"),
            ("d/r@x", nil, "r@x"),
            ("a@d/ spaced  resource ", "a", " spaced  resource "),
        ] as [(String, String?, String)])
    func everythingAfterTheFirstSlashIsTheResource(input: String, local: String?, resource: String) throws {
        let jid = try JID(input)
        #expect(jid.localpart == local)
        #expect(jid.domainpart == "d")
        #expect(jid.resourcepart == resource)
    }

    @Test func localpartAndDomainAreLowercasedButNotTheResource() throws {
        let jid = try JID("Juliet@Example.COM/Balcony")
        #expect(jid.description == "juliet@example.com/Balcony")
        #expect(try JID("ÉLODIE@example.com").localpart == "élodie")
        #expect(try JID("a@d/R") != JID("a@d/r"))
    }

    @Test func trailingDotOnTheDomainIsDropped() throws {
        #expect(try JID("a@example.com.").domainpart == "example.com")
        #expect(try JID("example.com./r").description == "example.com/r")
    }

    @Test func equalAfterNormalisation() throws {
        let a = try JID("ROMEO@Example.net./orchard")
        let b = try JID("romeo@example.net/orchard")
        #expect(a == b)
        #expect(Set([a, b]).count == 1)
        #expect(try JID(localpart: "Romeo", domainpart: "EXAMPLE.net", resourcepart: "orchard") == b)
    }

    @Test func bareDomainAndWithResource() throws {
        let full = try JID("juliet@example.com/balcony")
        #expect(full.bare == (try JID("juliet@example.com")))
        #expect(full.domain == (try JID("example.com")))
        #expect(try full.bare.with(resource: "Chamber") == JID("juliet@example.com/Chamber"))
        #expect(throws: JIDError.self) { try full.with(resource: "") }
    }

    @Test func ordersByStringForm() throws {
        let sorted = try ["b@x", "a@y", "a@x/r", "a@x"].map { try JID($0) }.sorted()
        #expect(sorted.map(\.description) == ["a@x", "a@x/r", "a@y", "b@x"])
    }

    @Test(arguments: ["[::1]", "[2001:db8::1]", "[::ffff:192.0.2.1]"])
    func ipv6LiteralDomain(literal: String) throws {
        let jid = try JID("admin@\(literal)/r")
        #expect(jid.domainpart == literal)
        #expect(jid.resourcepart == "r")
        #expect(try JID(literal.uppercased()).domainpart == literal)
    }

    @Test(arguments: [
        ("@example.com", JIDError.Reason.emptyLocalpart),
        ("@example.com/r", .emptyLocalpart),
        ("juliet@", .emptyDomainpart),
        ("", .emptyDomainpart),
        ("/r", .emptyDomainpart),
        ("a@.", .emptyDomainpart),
        ("juliet@example.com/", .emptyResourcepart),
        ("a\"b@d", .forbiddenCharacter),
        ("a&b@d", .forbiddenCharacter),
        ("a'b@d", .forbiddenCharacter),
        ("a:b@d", .forbiddenCharacter),
        ("a<b@d", .forbiddenCharacter),
        ("a>b@d", .forbiddenCharacter),
        ("a b@d", .forbiddenCharacter),
        ("a\u{00A0}b@d", .forbiddenCharacter),
        ("a\tb@d", .forbiddenCharacter),
        ("a@d/r\u{7}", .forbiddenCharacter),
        ("a@exa mple.com", .invalidDomain),
        ("a@-example.com", .invalidDomain),
        ("a@example-.com", .invalidDomain),
        ("a@example..com", .invalidDomain),
        ("a@b@c", .invalidDomain),
        ("a@exa:mple.com", .invalidDomain),
        ("a@[::g]", .invalidDomain),
        ("a@[::1", .invalidDomain),
        ("a@[]", .invalidDomain),
    ])
    func invalidJIDsThrow(input: String, reason: JIDError.Reason) {
        let error = #expect(throws: JIDError.self) { try JID(input) }
        #expect(error?.reason == reason)
    }

    @Test(arguments: ["/", "@"])
    func slashAndAtAreForbiddenInALocalpartGivenAsAPart(character: String) {
        let error = #expect(throws: JIDError.self) { try JID(localpart: "a\(character)b", domainpart: "d") }
        #expect(error?.reason == .forbiddenCharacter)
    }

    @Test func partsUpTo1023BytesAreAccepted() throws {
        let local = String(repeating: "a", count: 1023)
        let resource = String(repeating: "r", count: 1023)
        let domain = Array(repeating: String(repeating: "d", count: 63), count: 16).joined(separator: ".")
        #expect(domain.utf8.count == 1023)
        let jid = try JID("\(local)@\(domain)/\(resource)")
        #expect(jid.description.utf8.count == 3071)
    }

    @Test(arguments: [
        String(repeating: "a", count: 1024) + "@d",
        String(repeating: "é", count: 512) + "@d",
        "a@" + Array(repeating: String(repeating: "d", count: 63), count: 16).joined(separator: ".") + "d",
        "a@d/" + String(repeating: "r", count: 1024),
        "a@d/" + String(repeating: "☃", count: 342),
    ])
    func partsOver1023BytesThrow(input: String) {
        let error = #expect(throws: JIDError.self) { try JID(input) }
        #expect(error?.reason == .tooLong)
    }
}

/// A node reads the recipients another node wrote as they are (`JID(normalized:)`).
@Suite struct JIDFromAPeerTests {
    @Test(arguments: ["romeo@localhost/a b", "localhost", "juliet@localhost", "conference.localhost/x/y@z", "nurse@localhost"])
    func aJIDsDescriptionGivesItBack(_ text: String) throws {
        let jid = try JID(text)
        #expect(JID(normalized: jid.description) == jid)
    }
}
