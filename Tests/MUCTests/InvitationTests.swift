import MUC
import Testing
import XMPPCore

/// XEP-0045 §7.8.2: mediated invitations and declines.
@Suite struct InvitationTests {
    static let invitee = address("mercutio@montague.example")


    static func invite(from real: JID, to invitee: String = "mercutio@montague.example", reason: String? = nil)
        -> XMLElement
    {
        var invite = XMLElement("invite", namespace: Namespace.mucUser, ["to": invitee])
        if let reason { invite.append(XMLElement("reason", namespace: Namespace.mucUser, text: reason)) }
        return Build.message(
            from: real, id: "inv1", children: [XMLElement("x", namespace: Namespace.mucUser, children: [invite])])
    }

    @Test func theInviteeHearsFromTheRoomWithTheInvitersOccupantJID() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.invite(from: Cast.romeo, reason: "Come to the feast"), from: Cast.romeo)
        #expect(effects.recipients == [Self.invitee.description], "the inviter and the room hear nothing")
        let message = try #require(effects.stanzas.first)
        #expect(message.from == Cast.room.description)
        #expect(message.id == "inv1")
        let invite = try #require(message.mucUser?.child("invite", namespace: Namespace.mucUser))
        #expect(invite[attribute: "from"] == "\(Cast.room)/Romeo")
        #expect(invite[attribute: "to"] == nil)
        #expect(invite.child("reason", namespace: Namespace.mucUser)?.text == "Come to the feast")
        let conference = try #require(message.child("x", namespace: Namespace.conference))
        #expect(conference[attribute: "jid"] == Cast.room.description)
        #expect(conference.text == "Come to the feast")
        #expect(message.body?.contains(Cast.room.description) == true)
        #expect(message.body?.contains("Come to the feast") == true)
        #expect(effects.changes.isEmpty)
    }

    @Test func aNonAnonymousRoomGivesTheInvitersRealJID() throws {
        var test = TestRoom.twoInside { $0.whois = .anyone }
        let message = try #require(test.send(Self.invite(from: Cast.juliet), from: Cast.juliet).stanzas.first)
        #expect(message.mucUser?.child("invite")?[attribute: "from"] == Cast.juliet.description)
    }

    @Test func anInvitationWithoutReasonCarriesAnEmptyOne() throws {
        var test = TestRoom.twoInside()
        let message = try #require(test.send(Self.invite(from: Cast.juliet), from: Cast.juliet).stanzas.first)
        let reason = try #require(message.mucUser?.child("invite")?.child("reason", namespace: Namespace.mucUser))
        #expect(reason.children.isEmpty)
        #expect(message.body == "\(Cast.room)/Juliet invited you to the room \(Cast.room)")
    }

    @Test func aPasswordProtectedRoomPassesThePasswordOn() throws {
        var test = TestRoom.twoInside { $0.password = "nightingale" }
        let message = try #require(test.send(Self.invite(from: Cast.romeo), from: Cast.romeo).stanzas.first)
        #expect(message.mucUser?.child("password", namespace: Namespace.mucUser)?.text == "nightingale")
    }

    @Test func anInvitationIntoAMembersOnlyRoomMakesAMember() throws {
        var test = TestRoom.twoInside { $0.membersOnly = true }
        let effects = test.send(Self.invite(from: Cast.romeo), from: Cast.romeo)
        let announcement = try #require(effects.messages(to: Cast.romeo).first)
        #expect(announcement.mucItem?[attribute: "affiliation"] == "member")
        #expect(announcement.mucItem?[attribute: "jid"] == Self.invitee.description)
        #expect(effects.messages(to: Self.invitee).count == 1)
        let reason = "Invited by \(Cast.room)/Romeo"
        #expect(effects.changes == [.affiliation(Self.invitee, AffiliationEntry(.member, reason: reason))])
        let joined = test.join(Cast.mercutio, nick: "Mercutio")
        #expect(joined.presences(to: Cast.mercutio).last?.mucItem?[attribute: "affiliation"] == "member")
    }

    @Test func invitingSomeoneAlreadyAMemberChangesNoAffiliation() {
        var test = TestRoom.open({ $0.membersOnly = true }, affiliations: [Self.invitee: .member])
        let effects = test.send(Self.invite(from: Cast.romeo), from: Cast.romeo)
        #expect(effects.changes.isEmpty)
        #expect(effects.recipients == [Self.invitee.description])
    }

    /// Issue 13, finding 9: a member who may invite could lift an owner's ban by inviting
    /// the outcast, who became a member. The invitation is still delivered (Prosody does
    /// too, and refusing it would tell a member who is banned), the ban stays.
    @Test func invitingAnOutcastDoesNotLiftTheBan() throws {
        var test = TestRoom.open(
            {
                $0.membersOnly = true
                $0.allowInvites = true
            },
            affiliations: [Cast.juliet: .member, Self.invitee: .outcast],
            occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")]
        )
        let effects = test.send(Self.invite(from: Cast.juliet), from: Cast.juliet)
        #expect(effects.changes.isEmpty)
        #expect(effects.recipients == [Self.invitee.description], "no affiliation change is announced")
        #expect(test.room.affiliations[Self.invitee]?.affiliation == .outcast)
        // A members-only room refuses non-members first (outcasts included, as Prosody).
        let refused = test.join(Cast.mercutio, nick: "Mercutio")
        #expect(refused.stanzas.map(\.errorCondition) == [.registrationRequired])
        #expect(test.room.occupant(real: Cast.mercutio) == nil)

        // Not even an owner's invitation lifts it.
        let byOwner = test.send(Self.invite(from: Cast.romeo), from: Cast.romeo)
        #expect(byOwner.changes.isEmpty)
        #expect(test.room.affiliations[Self.invitee]?.affiliation == .outcast)
    }

    @Test func aMemberMayNotInviteIntoAMembersOnlyRoomUnlessAllowed() throws {
        var test = TestRoom.open({ $0.membersOnly = true }, affiliations: [Cast.juliet: .member])
        test.join(Cast.juliet, nick: "Juliet")
        let refused = test.send(Self.invite(from: Cast.juliet), from: Cast.juliet)
        #expect(refused.stanzas.count == 1)
        #expect(refused.stanzas.first?[attribute: "to"] == Cast.juliet.description)
        #expect(refused.stanzas.first?.errorCondition == .forbidden)
        #expect(refused.stanzas.first?.errorType == .auth)

        test.room.configuration.allowInvites = true
        let allowed = test.send(Self.invite(from: Cast.juliet), from: Cast.juliet)
        #expect(allowed.messages(to: Self.invitee).count == 1)
        #expect(test.room.affiliations[Self.invitee]?.affiliation == .member)
    }

    @Test func aVisitorMayNotInvite() throws {
        var test = TestRoom.twoInside { $0.moderated = true }
        let effects = test.send(Self.invite(from: Cast.juliet), from: Cast.juliet)
        #expect(effects.stanzas.map(\.errorCondition) == [.forbidden])
    }

    @Test func someoneWhoWouldEnterAsAVisitorMayNotInvite() {
        var test = TestRoom.twoInside { $0.moderated = true }
        let effects = test.send(Self.invite(from: Cast.benvolio), from: Cast.benvolio)
        #expect(effects.stanzas.map(\.errorCondition) == [.forbidden])
        #expect(effects.stanzas.first?[attribute: "to"] == Cast.benvolio.description)
    }

    /// A non-member has no role in a members-only room (Prosody's muc-get-default-role),
    /// so cannot invite; otherwise it could invite itself and so become a member.
    @Test func anOutsiderMayNotInviteIntoAMembersOnlyRoom() {
        var test = TestRoom.twoInside {
            $0.membersOnly = true
            $0.allowInvites = true
        }
        let effects = test.send(Self.invite(from: Cast.benvolio, to: "benvolio@montague.example"), from: Cast.benvolio)
        #expect(effects.stanzas.map(\.errorCondition) == [.forbidden])
        #expect(test.room.affiliations[Cast.benvolio.bare] == nil)
    }

    @Test func aMalformedInviteeIsJIDMalformed() {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.invite(from: Cast.romeo, to: "@capulet.example"), from: Cast.romeo)
        #expect(effects.stanzas.map(\.errorCondition) == [.jidMalformed])
        #expect(effects.stanzas.first?[attribute: "to"] == Cast.romeo.description)
    }

    @Test func aDeclineIsRelayedToTheInviter() throws {
        var test = TestRoom.twoInside()
        var decline = XMLElement("decline", namespace: Namespace.mucUser, ["to": Cast.romeo.description])
        decline.append(XMLElement("reason", namespace: Namespace.mucUser, text: "I dreamt a dream tonight"))
        let message = Build.message(
            from: Cast.mercutio, children: [XMLElement("x", namespace: Namespace.mucUser, children: [decline])])
        let effects = test.send(message, from: Cast.mercutio)
        let relayed = try #require(effects.stanzas.first)
        #expect(effects.recipients == [Cast.romeo.description])
        #expect(relayed.from == Cast.room.description)
        let element = try #require(relayed.mucUser?.child("decline", namespace: Namespace.mucUser))
        #expect(element[attribute: "from"] == Cast.mercutio.description)
        #expect(element[attribute: "to"] == nil)
        #expect(element.child("reason", namespace: Namespace.mucUser)?.text == "I dreamt a dream tonight")
    }

    /// Without an inviter to go back to, a decline is a bad request (as in Prosody).
    @Test func aDeclineWithoutInviterIsABadRequest() throws {
        var test = TestRoom.twoInside()
        let decline = XMLElement("decline", namespace: Namespace.mucUser)
        let message = Build.message(
            from: Cast.mercutio, children: [XMLElement("x", namespace: Namespace.mucUser, children: [decline])])
        let effects = test.send(message, from: Cast.mercutio)
        #expect(effects.stanzas.count == 1)
        #expect(try #require(effects.stanzas.first).errorCondition == .badRequest)
    }
}
