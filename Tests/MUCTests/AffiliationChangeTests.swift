import MUC
import Testing
import XMPPCore

/// XEP-0045 §9.1–§9.4, §10.3–§10.7: changing affiliations, and who may.
@Suite struct AffiliationChangeTests {

    static func set(_ jid: JID, _ affiliation: String, reason: String? = nil) -> XMLElement {
        Build.item(["affiliation": affiliation, "jid": jid.bare.description], reason: reason)
    }

    @Test func membershipForAnOccupantIsBroadcastWithTheActor() throws {
        var test = TestRoom.twoInside()
        let effects = test.admin(Cast.romeo, [Self.set(Cast.juliet, "member")])
        #expect(effects.stanzas.map(\.name) == ["presence", "presence", "iq"], "the result comes last")
        let seen = try #require(effects.presences(to: Cast.romeo).first)
        #expect(seen.mucItem?[attribute: "affiliation"] == "member")
        #expect(seen.mucItem?[attribute: "role"] == "participant")
        #expect(seen.statusCodes == [])
        let actor = seen.mucItem?.child("actor", namespace: Namespace.mucUser)
        #expect(actor?[attribute: "nick"] == "Romeo")
        #expect(actor?[attribute: "jid"] == Cast.romeo.description, "a moderator sees the actor's JID")
        let own = try #require(effects.presences(to: Cast.juliet).first)
        #expect(own.mucUserLayout == ["item", "status 110"])
        #expect(own.mucItem?.child("actor", namespace: Namespace.mucUser)?.attributes.map(\.name) == ["nick"])
        #expect(effects.iqs(to: Cast.romeo).first?.type == "result")
        #expect(effects.changes == [.affiliation(Cast.juliet.bare, AffiliationEntry(.member))])
        #expect(test.room.affiliation(of: Cast.juliet, environment: test.environment) == .member)
    }

    @Test func affiliationsBelongToTheBareJID() {
        var test = TestRoom.twoInside()
        let item = Build.item(["affiliation": "member", "jid": "mercutio@montague.example/street"])
        let effects = test.admin(Cast.romeo, [item])
        #expect(effects.changes == [.affiliation(Cast.mercutio.bare, AffiliationEntry(.member))])
        #expect(effects.messages(to: Cast.romeo).first?.mucItem?[attribute: "jid"] == "mercutio@montague.example")
        #expect(
            test.room.affiliation(of: address("mercutio@montague.example/other"), environment: test.environment)
                == .member)
    }

    @Test(arguments: [(Affiliation.admin, Role.moderator), (.owner, .moderator), (.member, .participant)])
    func aPromotionRaisesTheRoleInAModeratedRoom(affiliation: Affiliation, role: Role) throws {
        var test = TestRoom.twoInside { $0.moderated = true }
        #expect(test.room.occupant(real: Cast.juliet)?.role == .visitor)
        let effects = test.admin(Cast.romeo, [Self.set(Cast.juliet, affiliation.rawValue)])
        #expect(effects.presences(to: Cast.juliet).first?.mucItem?[attribute: "role"] == role.rawValue)
        #expect(test.room.occupant(real: Cast.juliet)?.role == role)
    }

    @Test func aDemotedAdminLosesModeration() {
        var test = TestRoom.open(
            { _ in }, affiliations: [Cast.nurse: .admin], occupants: [(Cast.romeo, "Romeo"), (Cast.nurse, "Nurse")])
        #expect(test.room.occupant(real: Cast.nurse)?.role == .moderator)
        let effects = test.admin(Cast.romeo, [Self.set(Cast.nurse, "member")])
        #expect(effects.presences(to: Cast.nurse).first?.mucItem?[attribute: "role"] == "participant")
        #expect(test.room.occupant(real: Cast.nurse)?.role == .participant)
    }

    @Test func aChangeForSomeoneAbsentIsAnnouncedToModeratorsOnly() throws {
        var test = TestRoom.twoInside()
        let effects = test.admin(Cast.romeo, [Self.set(Cast.mercutio, "member")], id: "member1")
        #expect(effects.to(Cast.juliet).isEmpty)
        let received = effects.to(Cast.romeo)
        try #require(received.count == 2)
        #expect(received[0].name == "message")
        #expect(received[0].from == Cast.room.description)
        #expect(received[0].type == nil)
        #expect(received[0].mucUserLayout == ["item"])
        #expect(received[0].mucItem?[attribute: "affiliation"] == "member")
        #expect(received[0].mucItem?[attribute: "jid"] == "mercutio@montague.example")
        #expect(received[1].name == "iq")
        #expect(received[1].id == "member1")
    }

    @Test func aNonAnonymousRoomAnnouncesToEveryone() {
        var test = TestRoom.twoInside { $0.whois = .anyone }
        let effects = test.admin(Cast.romeo, [Self.set(Cast.mercutio, "member")])
        #expect(effects.messages(to: Cast.juliet).first?.mucItem?[attribute: "jid"] == "mercutio@montague.example")
    }

    @Test func banningAnOccupantRemovesItWith301ActorAndReason() throws {
        var test = TestRoom.twoInside()
        let effects = test.admin(Cast.romeo, [Self.set(Cast.juliet, "outcast", reason: "A Capulet")], id: "ban1")
        #expect(effects.to(Cast.romeo).map(\.name) == ["presence", "iq"])
        let seen = try #require(effects.presences(to: Cast.romeo).first)
        #expect(seen.type == "unavailable")
        #expect(seen.mucUserLayout == ["status 301", "item"])
        #expect(seen.mucItem?[attribute: "affiliation"] == "outcast")
        #expect(seen.mucItem?[attribute: "role"] == "none")
        #expect(seen.mucItem?.child("actor", namespace: Namespace.mucUser)?[attribute: "jid"] == Cast.romeo.description)
        #expect(seen.mucItem?.child("reason", namespace: Namespace.mucUser)?.text == "A Capulet")
        let own = try #require(effects.presences(to: Cast.juliet).first)
        #expect(own.mucUserLayout == ["status 301", "item", "status 110"])
        #expect(own.mucItem?.child("actor", namespace: Namespace.mucUser)?[attribute: "jid"] == nil)
        #expect(own.mucItem?.child("reason", namespace: Namespace.mucUser)?.text == "A Capulet")
        #expect(effects.changes == [.affiliation(Cast.juliet.bare, AffiliationEntry(.outcast, reason: "A Capulet"))])
        #expect(test.room.occupants.map(\.nick) == ["Romeo"])
        #expect(test.join(Cast.juliet, nick: "Juliet").stanzas.first?.errorCondition == .forbidden)
    }

    @Test func banningSomeoneAbsentIsAnnouncedWith301() {
        var test = TestRoom.twoInside()
        let effects = test.admin(Cast.romeo, [Self.set(Cast.benvolio, "outcast")])
        #expect(effects.messages(to: Cast.romeo).first?.mucUserLayout == ["status 301", "item"])
    }

    @Test func liftingABanIsAnnouncedWithoutStatus() {
        var test = TestRoom.open({ _ in }, affiliations: [Cast.juliet: .outcast])
        let effects = test.admin(Cast.romeo, [Self.set(Cast.juliet, "none")])
        let announcement = effects.messages(to: Cast.romeo).first
        #expect(announcement?.mucUserLayout == ["item"])
        #expect(announcement?.mucItem?[attribute: "affiliation"] == "none")
        #expect(test.room.affiliations[Cast.juliet.bare] == nil)
        #expect(test.join(Cast.juliet, nick: "Juliet").presences(to: Cast.juliet).last?.statusCodes == [110])
    }

    /// The seed muc_members_only_change.scs.
    @Test func losingMembershipInAMembersOnlyRoomRemovesWith321() throws {
        var test = TestRoom.open({ $0.membersOnly = true }, affiliations: [Cast.juliet: .member])
        test.join(Cast.juliet, nick: "Juliet")
        let effects = test.admin(Cast.romeo, [Self.set(Cast.juliet, "none")], id: "member2")
        #expect(effects.to(Cast.romeo).map(\.name) == ["presence", "iq"])
        let seen = try #require(effects.presences(to: Cast.romeo).first)
        #expect(seen.type == "unavailable")
        #expect(seen.mucUserLayout == ["status 321", "item"])
        #expect(seen.mucItem?[attribute: "affiliation"] == "none")
        #expect(seen.mucItem?[attribute: "role"] == "none")
        #expect(seen.mucItem?[attribute: "jid"] == Cast.juliet.description)
        let actor = seen.mucItem?.child("actor", namespace: Namespace.mucUser)
        #expect(actor?[attribute: "nick"] == "Romeo")
        #expect(actor?[attribute: "jid"] == Cast.romeo.description)
        #expect(effects.presences(to: Cast.juliet).first?.mucUserLayout == ["status 321", "item", "status 110"])
        #expect(test.room.occupants.map(\.nick) == ["Romeo"])
    }

    @Test func losingMembershipWhileAbsentIsAnnouncedWith321() {
        var test = TestRoom.open({ $0.membersOnly = true }, affiliations: [Cast.juliet: .member])
        let effects = test.admin(Cast.romeo, [Self.set(Cast.juliet, "none")])
        #expect(effects.messages(to: Cast.romeo).first?.mucUserLayout == ["status 321", "item"])
    }

    @Test func banningTheLastOccupantOfATemporaryRoomEndsIt() {
        var test = TestRoom.open({ _ in }, affiliations: [Cast.nurse: .admin], occupants: [(Cast.juliet, "Juliet")])
        let effects = test.admin(Cast.nurse, [Self.set(Cast.juliet, "outcast")])
        #expect(effects.roomEnded)
        #expect(effects.changes.last == .destroyed)
        #expect(effects.iqs(to: Cast.nurse).first?.type == "result")
    }
}
