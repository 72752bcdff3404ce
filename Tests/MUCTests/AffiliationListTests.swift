import MUC
import Testing
import XMPPCore

/// XEP-0045 §9.2, §9.5, §10.5, §10.8: retrieving affiliation lists through muc#admin.
@Suite struct AffiliationListTests {
    /// Romeo owns the room; Nurse is an admin, Juliet a member, Tybalt banned.
    static func populated(_ configure: (inout RoomConfiguration) -> Void = { _ in }) -> TestRoom {
        TestRoom.open(
            configure,
            affiliations: [Cast.nurse: .admin, Cast.juliet: .member, Cast.mercutio: .member, Cast.tybalt: .outcast],
            occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")]
        )
    }

    static func list(_ test: inout TestRoom, _ affiliation: String, as real: JID) -> XMLElement? {
        let request = Build.iq(
            "get", from: real, id: "list-\(affiliation)",
            payload: Build.query(Namespace.mucAdmin, [Build.item(["affiliation": affiliation])])
        )
        let effects = test.send(request, from: real)
        #expect(effects.stanzas.count == 1)
        #expect(effects.stanzas.first?[attribute: "to"] == real.description)
        #expect(effects.stanzas.first?.id == "list-\(affiliation)")
        return effects.stanzas.first
    }

    static func jids(_ reply: XMLElement?) -> [String?] {
        let query = reply?.child("query", namespace: Namespace.mucAdmin)
        return (query?.children("item", namespace: Namespace.mucAdmin) ?? []).map { $0[attribute: "jid"] }
    }

    @Test(arguments: [
        ("owner", ["romeo@montague.example"]), ("admin", ["nurse@capulet.example"]),
        ("member", ["juliet@capulet.example", "mercutio@montague.example"]), ("outcast", ["tybalt@capulet.example"]),
    ])
    func anOwnerSeesEveryList(affiliation: String, expected: [String]) throws {
        var test = Self.populated()
        let reply = try #require(Self.list(&test, affiliation, as: Cast.romeo))
        #expect(reply.type == "result")
        #expect(Self.jids(reply) == expected)
        let items = reply.child("query", namespace: Namespace.mucAdmin)?.children("item", namespace: Namespace.mucAdmin)
        #expect(items?.allSatisfy { $0[attribute: "affiliation"] == affiliation } == true)
    }

    @Test func anEmptyListIsAnEmptyResult() throws {
        var test = TestRoom.open()
        let reply = try #require(Self.list(&test, "outcast", as: Cast.romeo))
        #expect(reply.type == "result")
        #expect(Self.jids(reply).isEmpty)
    }

    @Test(arguments: ["admin", "member", "outcast"])
    func anAdminSeesListsUpToItsOwnRank(affiliation: String) throws {
        var test = Self.populated()
        #expect(try #require(Self.list(&test, affiliation, as: Cast.nurse)).type == "result")
    }

    @Test func anAdminCannotListTheOwners() throws {
        var test = Self.populated()
        let reply = try #require(Self.list(&test, "owner", as: Cast.nurse))
        #expect(reply.errorCondition == .forbidden)
        #expect(reply.errorType == .auth)
    }

    @Test(arguments: ["owner", "admin", "member", "outcast"])
    func aParticipantIsForbidden(affiliation: String) throws {
        var test = Self.populated()
        test.join(Cast.benvolio, nick: "Benvolio")
        let reply = try #require(Self.list(&test, affiliation, as: Cast.benvolio))
        #expect(reply.errorCondition == .forbidden)
        #expect(reply.errorType == .auth)
    }

    @Test func aMemberIsForbiddenInAnOpenRoom() throws {
        var test = Self.populated()
        #expect(try #require(Self.list(&test, "member", as: Cast.juliet)).errorCondition == .forbidden)
    }

    @Test func membersSeeTheListsOfANonAnonymousMembersOnlyRoom() throws {
        var test = Self.populated {
            $0.membersOnly = true
            $0.whois = .anyone
        }
        let reply = try #require(Self.list(&test, "member", as: Cast.juliet))
        #expect(reply.type == "result")
        #expect(Self.jids(reply) == ["juliet@capulet.example", "mercutio@montague.example"])
    }

    @Test func aQueryWithoutAnItemIsABadRequest() throws {
        var test = Self.populated()
        let request = Build.iq("get", from: Cast.romeo, id: "l1", payload: Build.query(Namespace.mucAdmin))
        let reply = try #require(test.send(request, from: Cast.romeo).stanzas.first)
        #expect(reply.errorCondition == .badRequest)
    }

    @Test(arguments: [["affiliation": "friend"], ["nick": "Juliet"]] as [[String: String]])
    func anItemNamingNoKnownListIsABadRequest(attributes: [String: String]) throws {
        var test = Self.populated()
        var item = XMLElement("item", namespace: Namespace.mucAdmin)
        for (name, value) in attributes { item[attribute: name] = value }
        let request = Build.iq("get", from: Cast.romeo, id: "l2", payload: Build.query(Namespace.mucAdmin, [item]))
        let reply = try #require(test.send(request, from: Cast.romeo).stanzas.first)
        #expect(reply.errorCondition == .badRequest)
        #expect(reply.errorType == .modify)
    }

    /// XEP-0045 §9.2 (example 109): each item carries the reason it was set with.
    @Test func aListGivesTheReasonsTheAffiliationsWereSetWith() throws {
        var test = Self.populated()
        test.room.affiliations[Cast.tybalt.bare] = AffiliationEntry(.outcast, reason: "Treason")
        let reply = try #require(Self.list(&test, "outcast", as: Cast.romeo))
        let item = reply.child("query", namespace: Namespace.mucAdmin)?.child("item", namespace: Namespace.mucAdmin)
        #expect(item?.child("reason", namespace: Namespace.mucAdmin)?.text == "Treason")
        let members = try #require(Self.list(&test, "member", as: Cast.romeo))
        #expect(members.child("query", namespace: Namespace.mucAdmin)?.children("item", namespace: Namespace.mucAdmin)
            .allSatisfy { $0.child("reason", namespace: Namespace.mucAdmin) == nil } == true)
    }
}
