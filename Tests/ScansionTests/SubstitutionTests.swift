import Scansion
import Testing
import XMPPCore

/// `${Name's JID}` / `${Name's full JID}` substitution, and how a block becomes elements.
@Suite struct SubstitutionTests {
    static let addresses: [String: (bare: String, full: String)] = [
        "Romeo": ("user@localhost", "user@localhost/r"),
        "Juliet": ("user2@localhost", "user2@localhost/j"),
        "Juliet's phone": ("juliet@localhost", "juliet@localhost/phone"),
        "Romeo Montague": ("montague@localhost", "montague@localhost/verona"),
        "Evil": ("e'v\"il&<x>@localhost", "evil@localhost/a'b\"c<d>&e"),
    ]

    static func substitute(_ text: String) throws(StanzaTemplate.TemplateError) -> String {
        try StanzaTemplate.substitute(text) { name, full in
            addresses[name].map { full ? $0.full : $0.bare }
        }
    }

    static func templateError(_ text: String) -> StanzaTemplate.TemplateError? {
        do {
            _ = try substitute(text)
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [
        ("${Romeo's JID}", "user@localhost"),
        ("${Romeo's full JID}", "user@localhost/r"),
        ("${Juliet's phone's JID}", "juliet@localhost"),
        ("${Juliet's phone's full JID}", "juliet@localhost/phone"),
        ("${Romeo Montague's full JID}", "montague@localhost/verona"),
        ("to='${Juliet's JID}' from=\"${Romeo's full JID}\"", "to='user2@localhost' from=\"user@localhost/r\""),
        ("${Romeo's JID}${Juliet's JID}", "user@localhostuser2@localhost"),
        ("no variables, a $ and a {brace}", "no variables, a $ and a {brace}"),
        ("{scansion:any} {scansion:capture:id}", "{scansion:any} {scansion:capture:id}"),
        ("", ""),
    ])
    func substitutesJIDs(template: String, result: String) throws {
        #expect(try Self.substitute(template) == result)
    }

    @Test func lookupIsAskedForTheNameAndWhichJID() throws {
        var asked: [String] = []
        _ = try StanzaTemplate.substitute("${Juliet's phone's full JID} ${Romeo's JID}") { name, full in
            asked.append("\(name)|\(full)")
            return "x"
        }
        #expect(asked == ["Juliet's phone|true", "Romeo|false"])
    }

    @Test func valuesAreXMLEscaped() throws {
        let text = try Self.substitute("${Evil's full JID}")
        #expect(text == "evil@localhost/a&apos;b&quot;c&lt;d&gt;&amp;e")
        #expect(try Self.substitute("${Evil's JID}") == "e&apos;v&quot;il&amp;&lt;x&gt;@localhost")
    }

    @Test(arguments: ["<message to='${Evil's full JID}'/>", "<message to=\"${Evil's full JID}\"/>"])
    func escapedValuesRoundTripThroughTheParser(template: String) throws {
        let message = try Fixture.expected(try Self.substitute(template))
        #expect(message[attribute: "to"] == "evil@localhost/a'b\"c<d>&e")
    }

    @Test func escapedValuesInTextRoundTrip() throws {
        let body = try Fixture.expected(try Self.substitute("<body>${Evil's JID}</body>"))
        #expect(body.text == "e'v\"il&<x>@localhost")
    }

    @Test(arguments: [
        "${Romeo's password}", "${Romeo}", "${JID}", "${full JID}", "${Romeo's bare JID}", "${}",
        "${Juliet's phone JID}",
    ])
    func unknownVariableIsAnError(template: String) throws {
        let error = try #require(Self.templateError("<a x='\(template)'/>"))
        #expect(error.message.contains("unknown variable"), "\(error)")
        #expect(error.description == error.message)
    }

    @Test(arguments: ["${Mercutio's JID}", "${Mercutio's full JID}", "${romeo's JID}", "${ Romeo's JID}"])
    func unknownClientIsAnError(template: String) throws {
        let error = try #require(Self.templateError(template))
        #expect(error.message.contains("no such client"), "\(error)")
    }

    @Test func unterminatedVariableIsAnError() throws {
        let error = try #require(Self.templateError("<a to='${Romeo's JID'/>"))
        #expect(error.message.contains("${"))
    }

    // MARK: - Parsing a block

    @Test func defaultNamespaceIsJabberClientAndDeclarationsAreRecorded() throws {
        let presence = try Fixture.expected(
            """
            <presence to='room@conference.localhost/Romeo'>
                <x xmlns='http://jabber.org/protocol/muc'><password>p</password></x>
            </presence>
            """)
        #expect(presence.namespace == Namespace.client)
        #expect(presence[attribute: "xmlns"] == nil)
        let x = try #require(presence.elements.first)
        #expect(x.namespace == Fixture.muc)
        #expect(x[attribute: "xmlns"] == Fixture.muc)
        let password = try #require(x.elements.first)
        #expect(password.namespace == Fixture.muc)
        #expect(password[attribute: "xmlns"] == nil)
    }

    @Test func redundantDeclarationIsRecordedToo() throws {
        let message = try Fixture.expected("<message xmlns='jabber:client'><body xmlns='jabber:client'/></message>")
        #expect(message.namespace == Namespace.client && message[attribute: "xmlns"] == Namespace.client)
        #expect(message.elements.first?[attribute: "xmlns"] == Namespace.client)
    }

    @Test func scansionPrefixNeedsNoDeclaration() throws {
        let x = try Fixture.expected("<x xmlns='urn:example' scansion:strict='false' a='{scansion:any}'/>")
        #expect(x[attribute: "scansion:strict"] == "false")
        #expect(x[attribute: "a"] == StanzaMatcher.anyValue)
    }

    @Test func prefixedElementsResolveTheirNamespace() throws {
        let iq = try Fixture.expected("<iq type='get'><q:query xmlns:q='jabber:iq:roster'/></iq>")
        let query = try #require(iq.elements.first)
        #expect(query.name == "query" && query.namespace == "jabber:iq:roster")
        #expect(query[attribute: "xmlns:q"] == "jabber:iq:roster")
    }

    @Test func blockWithTwoElementsGivesBoth() throws {
        let elements = try StanzaTemplate.elements("\t<presence/>\n\n\t<message><body>hi</body></message>\n")
        #expect(elements.map(\.name) == ["presence", "message"])
    }

    @Test(arguments: ["<presence>", "<presence></message>", "", "   \n\t", "just text", "<a b='1' b='2'/>", "<p:x/>"])
    func malformedBlocksAreTemplateErrors(block: String) {
        #expect(throws: StanzaTemplate.TemplateError.self) { try StanzaTemplate.elements(block) }
    }
}
