import MUC
import Testing
import XMPPCore

/// XEP-0045 §8.2–§8.5 and §9.6–§9.7: kicking, voice, moderators, and the role lists.
@Suite struct RoleTests {

    static func role(_ nick: String, _ role: String, reason: String? = nil) -> XMLElement {
        Build.item(["nick": nick, "role": role], reason: reason)
    }

    @Test func aKickSays307WithActorAndReason() throws {
        var test = TestRoom.twoInside()
        let effects = test.admin(Cast.romeo, [Self.role("Juliet", "none", reason: "Thou art a villain")], id: "kick3")
        #expect(effects.to(Cast.romeo).map(\.name) == ["presence", "iq"])
        let seen = try #require(effects.presences(to: Cast.romeo).first)
        #expect(seen.type == "unavailable")
        #expect(seen.from == "\(Cast.room)/Juliet")
        #expect(seen.mucUserLayout == ["status 307", "item"])
        #expect(seen.mucItem?[attribute: "role"] == "none")
        #expect(seen.mucItem?[attribute: "affiliation"] == "none")
        #expect(seen.mucItem?.child("actor", namespace: Namespace.mucUser)?[attribute: "nick"] == "Romeo")
        #expect(seen.mucItem?.child("actor", namespace: Namespace.mucUser)?[attribute: "jid"] == Cast.romeo.description)
        #expect(seen.mucItem?.child("reason", namespace: Namespace.mucUser)?.text == "Thou art a villain")
        let own = try #require(effects.presences(to: Cast.juliet).first)
        #expect(own.mucUserLayout == ["status 307", "item", "status 110"])
        #expect(own.mucItem?.child("actor", namespace: Namespace.mucUser)?[attribute: "jid"] == nil)
        #expect(effects.iqs(to: Cast.romeo).first?.id == "kick3")
        #expect(effects.changes.isEmpty, "a kick is not stored")
        #expect(test.room.occupants.map(\.nick) == ["Romeo"])
    }

    @Test func aKickedOccupantIsOutButMayComeBack() {
        var test = TestRoom.twoInside()
        test.admin(Cast.romeo, [Self.role("Juliet", "none")])
        #expect(test.say(Cast.juliet, "Let me in").stanzas.first?.errorCondition == .notAcceptable)
        #expect(test.join(Cast.juliet, nick: "Juliet").presences(to: Cast.juliet).last?.statusCodes == [110])
    }

    @Test func kickingAnUnknownNickIsItemNotFound() throws {
        var test = TestRoom.twoInside()
        let effects = test.admin(Cast.romeo, [Self.role("Tybalt", "none")])
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error.errorCondition == .itemNotFound)
        #expect(error.errorType == .modify)
    }

    @Test func aParticipantMayNotKick() throws {
        var test = TestRoom.twoInside()
        let effects = test.admin(Cast.juliet, [Self.role("Romeo", "none")])
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error[attribute: "to"] == Cast.juliet.description)
        #expect(error.errorCondition == .notAllowed)
        #expect(error.errorType == .cancel)
        #expect(test.room.occupants.count == 2)
    }

    @Test func aModeratorWithoutAffiliationMayNotKickAnOwner() {
        var test = TestRoom.twoInside()
        test.admin(Cast.romeo, [Self.role("Juliet", "moderator")])
        #expect(test.room.occupant(real: Cast.juliet)?.role == .moderator)
        let effects = test.admin(Cast.juliet, [Self.role("Romeo", "none")])
        #expect(effects.stanzas.first?.errorCondition == .notAllowed)
        #expect(test.room.occupants.count == 2)
    }

    @Test func voiceIsGrantedAndRevokedInAModeratedRoom() throws {
        var test = TestRoom.twoInside { $0.moderated = true }
        let granted = test.admin(Cast.romeo, [Self.role("Juliet", "participant")], id: "voice1")
        #expect(granted.to(Cast.romeo).map(\.name) == ["presence", "iq"])
        let seen = try #require(granted.presences(to: Cast.romeo).first)
        #expect(seen.type == nil)
        #expect(seen.statusCodes == [])
        #expect(seen.mucItem?[attribute: "role"] == "participant")
        #expect(seen.mucItem?.child("actor", namespace: Namespace.mucUser)?[attribute: "nick"] == "Romeo")
        #expect(granted.presences(to: Cast.juliet).first?.mucUserLayout == ["item", "status 110"])
        #expect(test.say(Cast.juliet, "Ay me!").stanzas.count == 2)

        let revoked = test.admin(Cast.romeo, [Self.role("Juliet", "visitor", reason: "Hush")], id: "voice2")
        let own = try #require(revoked.presences(to: Cast.juliet).first)
        #expect(own.mucItem?[attribute: "role"] == "visitor")
        #expect(own.mucItem?.child("reason", namespace: Namespace.mucUser)?.text == "Hush")
        #expect(test.say(Cast.juliet, "Ay me!").stanzas.first?.errorCondition == .forbidden)
    }

    @Test func aParticipantMayNotGrantVoice() {
        var test = TestRoom.twoInside { $0.moderated = true }
        test.room.affiliations[Cast.nurse.bare] = AffiliationEntry(.member)
        test.join(Cast.nurse, nick: "Nurse")
        let effects = test.admin(Cast.nurse, [Self.role("Juliet", "participant")])
        #expect(effects.stanzas.first?.errorCondition == .notAllowed)
        #expect(test.room.occupant(real: Cast.juliet)?.role == .visitor)
    }

    @Test func onlyAnAdminMayMakeOrUnmakeModerators() {
        var test = TestRoom.twoInside()
        test.join(Cast.mercutio, nick: "Mercutio")
        test.admin(Cast.romeo, [Self.role("Juliet", "moderator")])
        let grant = test.admin(Cast.juliet, [Self.role("Mercutio", "moderator")])
        #expect(grant.stanzas.first?.errorCondition == .notAllowed)
        let revoke = test.admin(Cast.juliet, [Self.role("Romeo", "participant")])
        #expect(revoke.stanzas.first?.errorCondition == .notAllowed)
        let byOwner = test.admin(Cast.romeo, [Self.role("Juliet", "participant")])
        #expect(byOwner.stanzas.last?.type == "result")
        #expect(test.room.occupant(real: Cast.juliet)?.role == .participant)
    }

    @Test func oneRefusedItemRefusesTheWholeRequest() {
        var test = TestRoom.twoInside()
        let effects = test.admin(Cast.romeo, [Self.role("Juliet", "none"), Self.role("Tybalt", "none")])
        #expect(effects.stanzas.count == 1)
        #expect(effects.stanzas.first?.errorCondition == .itemNotFound)
        #expect(test.room.occupants.count == 2)
    }

    static func roleList(_ test: inout TestRoom, _ role: String, as real: JID) -> XMLElement? {
        let request = Build.iq(
            "get", from: real, id: "roles", payload: Build.query(Namespace.mucAdmin, [Build.item(["role": role])])
        )
        return test.send(request, from: real).stanzas.first
    }

    @Test func aModeratorListsOccupantsByRole() throws {
        var test = TestRoom.twoInside()
        let reply = try #require(Self.roleList(&test, "participant", as: Cast.romeo))
        #expect(reply.type == "result")
        let items = reply.child("query", namespace: Namespace.mucAdmin)?.children("item", namespace: Namespace.mucAdmin)
        #expect(items?.count == 1)
        let item = try #require(items?.first)
        #expect(item[attribute: "nick"] == "Juliet")
        #expect(item[attribute: "jid"] == Cast.juliet.description)
        #expect(item[attribute: "affiliation"] == "none")
        #expect(item[attribute: "role"] == "participant")
        let moderators = try #require(Self.roleList(&test, "moderator", as: Cast.romeo))
        let nicks = moderators.child("query")?.children("item").map { $0[attribute: "nick"] }
        #expect(nicks == ["Romeo"])
    }

    @Test func aParticipantMayNotListRoles() throws {
        var test = TestRoom.twoInside()
        let reply = try #require(Self.roleList(&test, "participant", as: Cast.juliet))
        #expect(reply.errorCondition == .forbidden)
        #expect(reply.errorType == .auth)
    }
}
