import MUC
import Testing
import XMPPCore

/// XEP-0045 §7.2: what an entrant and the occupants see when someone enters.
@Suite struct JoinTests {
    /// Romeo (owner) and Juliet in the room; Mercutio about to enter.

    @Test func theEntrantSeesOccupantsThenItselfThenHistoryThenTheSubject() throws {
        var test = TestRoom.twoInside()
        test.say(Cast.romeo, "But soft")
        let effects = test.join(Cast.mercutio, nick: "Mercutio")
        let received = effects.to(Cast.mercutio)
        #expect(received.map(\.name) == ["presence", "presence", "presence", "message", "message"])
        #expect(received.prefix(3).map(\.from) == ["Romeo", "Juliet", "Mercutio"].map { "\(Cast.room)/\($0)" })
        #expect(received[2].statusCodes == [110])
        #expect(received[3].body == "But soft")
        #expect(received[4].child("subject") != nil)
    }

    @Test func theSubjectOfAFreshRoomIsEmptyAndFromTheRoom() throws {
        var test = TestRoom.twoInside()
        let subject = try #require(test.join(Cast.mercutio, nick: "Mercutio").to(Cast.mercutio).last)
        #expect(subject.name == "message")
        #expect(subject.type == "groupchat")
        #expect(subject.from == Cast.room.description)
        let element = try #require(subject.child("subject", namespace: Namespace.client))
        #expect(element.children.isEmpty)
        #expect(subject.child("delay", namespace: Namespace.delay) == nil)
    }

    @Test func everyOccupantIsToldOfTheEntrantOnce() {
        var test = TestRoom.twoInside()
        let effects = test.join(Cast.mercutio, nick: "Mercutio")
        for occupant in [Cast.romeo, Cast.juliet] {
            let told = effects.to(occupant)
            #expect(told.count == 1)
            #expect(told.first?.from == "\(Cast.room)/Mercutio")
            #expect(told.first?.statusCodes == [])
            #expect(told.first?.mucItem?[attribute: "role"] == "participant")
        }
    }

    @Test func semiAnonymousRoomsShowRealJIDsToModeratorsOnly() throws {
        var test = TestRoom.twoInside()
        let effects = test.join(Cast.mercutio, nick: "Mercutio")
        #expect(effects.presences(to: Cast.romeo).first?.mucItem?[attribute: "jid"] == Cast.mercutio.description)
        #expect(effects.presences(to: Cast.juliet).first?.mucItem?[attribute: "jid"] == nil)
        let seen = effects.presences(to: Cast.mercutio)
        #expect(seen.map { $0.mucItem?[attribute: "jid"] } == [nil, nil, Cast.mercutio.description])
        #expect(seen[2].statusCodes == [110], "no 100 in a semi-anonymous room")
    }

    @Test func aModeratorEntrantSeesTheRealJIDsOfOccupants() {
        var test = TestRoom.open({ _ in }, affiliations: [Cast.mercutio: .admin], occupants: [(Cast.juliet, "Juliet")])
        let effects = test.join(Cast.mercutio, nick: "Mercutio")
        let seen = effects.presences(to: Cast.mercutio)
        #expect(seen.first?.mucItem?[attribute: "jid"] == Cast.juliet.description)
        #expect(seen.last?.mucItem?[attribute: "role"] == "moderator")
        #expect(seen.last?.mucItem?[attribute: "affiliation"] == "admin")
    }

    @Test func nonAnonymousRoomsShowRealJIDsToAllAndSay100() throws {
        var test = TestRoom.twoInside { $0.whois = .anyone }
        let effects = test.join(Cast.mercutio, nick: "Mercutio")
        #expect(effects.presences(to: Cast.juliet).first?.mucItem?[attribute: "jid"] == Cast.mercutio.description)
        let seen = effects.presences(to: Cast.mercutio)
        #expect(
            seen.map { $0.mucItem?[attribute: "jid"] } == [Cast.romeo, Cast.juliet, Cast.mercutio].map(\.description))
        #expect(seen[2].mucUserLayout == ["status 100", "item", "status 110"])
        #expect(seen[0].statusCodes == [] && seen[1].statusCodes == [], "100 goes to the entrant only")
    }

    @Test func aModeratedRoomLetsUnaffiliatedUsersInAsVisitors() {
        var test = TestRoom.twoInside { $0.moderated = true }
        let effects = test.join(Cast.mercutio, nick: "Mercutio")
        #expect(effects.presences(to: Cast.mercutio).last?.mucItem?[attribute: "role"] == "visitor")
        #expect(effects.presences(to: Cast.romeo).first?.mucItem?[attribute: "role"] == "visitor")
        #expect(test.room.occupant(nick: "Mercutio")?.role == .visitor)
    }

    @Test(arguments: [(Affiliation.member, Role.participant), (.admin, .moderator), (.owner, .moderator)])
    func aModeratedRoomGivesVoiceByAffiliation(affiliation: Affiliation, role: Role) {
        var test = TestRoom.open({ $0.moderated = true }, affiliations: [Cast.mercutio: affiliation])
        let effects = test.join(Cast.mercutio, nick: "Mercutio")
        #expect(effects.presences(to: Cast.mercutio).last?.mucItem?[attribute: "role"] == role.rawValue)
        #expect(effects.presences(to: Cast.mercutio).last?.mucItem?[attribute: "affiliation"] == affiliation.rawValue)
    }

    @Test func theEntrantsShowAndStatusReachTheOthers() throws {
        var test = TestRoom.twoInside()
        let away = Build.presence(
            from: Cast.mercutio, to: "Mercutio",
            children: [
                XMLElement("x", namespace: Namespace.muc),
                XMLElement("show", namespace: Namespace.client, text: "away"),
                XMLElement("status", namespace: Namespace.client, text: "Queen Mab"),
            ]
        )
        let told = try #require(test.send(away, from: Cast.mercutio).presences(to: Cast.juliet).first)
        #expect(told.child("show")?.text == "away")
        #expect(told.child("status")?.text == "Queen Mab")
        #expect(told.child("x", namespace: Namespace.muc) == nil, "the join's muc <x/> is not passed on")
        #expect(told.child("occupant-id", namespace: Namespace.occupantID)?[attribute: "id"] == "mercutio@verona")
    }

    /// A join from someone inside: its client lost track of the room (a missed
    /// disconnect). As Prosody, it gets the room again: the others, itself, the subject.
    @Test func joiningAgainWithTheSameNickSendsTheRoomAgain() {
        var test = TestRoom.twoInside()
        let effects = test.join(Cast.juliet, nick: "Juliet")
        let toJuliet = effects.to(Cast.juliet)
        #expect(toJuliet.map(\.name) == ["presence", "presence", "message"])
        #expect(toJuliet.first?[attribute: "from"]?.hasSuffix("/Romeo") == true, "the others first")
        #expect(toJuliet.dropFirst().first?[attribute: "from"]?.hasSuffix("/Juliet") == true)
        #expect(toJuliet.last?.child("subject") != nil)
        #expect(effects.to(Cast.romeo).map(\.name) == ["presence"], "the others see a presence update")
        #expect(test.room.occupants.map(\.nick) == ["Romeo", "Juliet"])
    }

    /// A presence to the room's bare JID is not a join: Prosody answers
    /// service-unavailable (spec/muc_join_without_nick.scs).
    @Test func aPresenceWithoutANickIsRefused() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.presence(from: Cast.mercutio, to: nil), from: Cast.mercutio)
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error.errorCondition == .serviceUnavailable)
        #expect(error.errorType == .cancel)
        #expect(test.room.occupants.count == 2)
    }
}
