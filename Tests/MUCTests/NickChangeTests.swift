import MUC
import Testing
import XMPPCore

/// XEP-0045 §7.6: changing nickname.
@Suite struct NickChangeTests {
    @Test func othersSee303WithTheNewNickThenTheNewPresence() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.presence(from: Cast.juliet, to: "Jules"), from: Cast.juliet)
        let seen = effects.presences(to: Cast.romeo)
        try #require(seen.count == 2)
        #expect(seen[0].type == "unavailable")
        #expect(seen[0].from == "\(Cast.room)/Juliet")
        #expect(seen[0].mucUserLayout == ["status 303", "item"])
        #expect(seen[0].mucItem?[attribute: "nick"] == "Jules")
        #expect(seen[0].mucItem?[attribute: "jid"] == Cast.juliet.description, "Romeo is a moderator")
        #expect(seen[1].type == nil)
        #expect(seen[1].from == "\(Cast.room)/Jules")
        #expect(seen[1].mucUserLayout == ["item"])
        #expect(seen[1].mucItem?[attribute: "nick"] == nil)
    }

    @Test func theChangerGetsBothWith110() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.presence(from: Cast.juliet, to: "Jules"), from: Cast.juliet)
        let own = effects.presences(to: Cast.juliet)
        try #require(own.count == 2)
        #expect(own[0].mucUserLayout == ["status 303", "item", "status 110"])
        #expect(own[0].mucItem?[attribute: "nick"] == "Jules")
        #expect(own[1].from == "\(Cast.room)/Jules")
        #expect(own[1].mucUserLayout == ["item", "status 110"])
        #expect(effects.stanzas.count == 4)
    }

    @Test func theRoleIsKeptAcrossTheChange() throws {
        var test = TestRoom.twoInside { $0.moderated = true }
        test.join(Cast.mercutio, nick: "Mercutio")
        let effects = test.send(Build.presence(from: Cast.mercutio, to: "Benvolio"), from: Cast.mercutio)
        let seen = effects.presences(to: Cast.romeo)
        #expect(seen.map { $0.mucItem?[attribute: "role"] } == ["visitor", "visitor"])
        #expect(test.room.occupant(nick: "Benvolio")?.role == .visitor)
        #expect(test.room.occupant(nick: "Mercutio") == nil)
    }

    @Test func laterMessagesComeFromTheNewNick() throws {
        var test = TestRoom.twoInside()
        test.send(Build.presence(from: Cast.juliet, to: "Jules"), from: Cast.juliet)
        let message = try #require(test.say(Cast.juliet, "Call me but love").messages(to: Cast.romeo).first)
        #expect(message.from == "\(Cast.room)/Jules")
    }

    @Test func theOldNickIsFreeAfterwards() {
        var test = TestRoom.twoInside()
        test.send(Build.presence(from: Cast.juliet, to: "Jules"), from: Cast.juliet)
        let effects = test.join(Cast.mercutio, nick: "Juliet")
        #expect(effects.presences(to: Cast.mercutio).last?.statusCodes == [110])
        #expect(test.room.occupants.map(\.nick) == ["Romeo", "Jules", "Juliet"])
    }

    @Test func takingAnotherOccupantsNickIsAConflict() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.presence(from: Cast.juliet, to: "Romeo"), from: Cast.juliet)
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error[attribute: "to"] == Cast.juliet.description)
        #expect(error.from == "\(Cast.room)/Romeo")
        #expect(error.errorCondition == .conflict)
        #expect(error.errorType == .cancel)
        #expect(test.room.occupants.map(\.nick) == ["Romeo", "Juliet"])
    }

    @Test func aChangeCarriesTheNewShowAndStatus() throws {
        var test = TestRoom.twoInside()
        let presence = Build.presence(
            from: Cast.juliet, to: "Jules",
            children: [XMLElement("status", namespace: Namespace.client, text: "Disguised")]
        )
        let seen = test.send(presence, from: Cast.juliet).presences(to: Cast.romeo)
        try #require(seen.count == 2)
        #expect(seen[0].child("status") == nil, "the 303 presence is bare")
        #expect(seen[1].child("status")?.text == "Disguised")
    }

    @Test func participantsSeeTheNewNickButNoRealJID() throws {
        var test = TestRoom.twoInside()
        test.join(Cast.mercutio, nick: "Mercutio")
        let seen = test.send(Build.presence(from: Cast.romeo, to: "Montague"), from: Cast.romeo).presences(
            to: Cast.juliet)
        try #require(seen.count == 2)
        #expect(seen[0].mucItem?[attribute: "nick"] == "Montague")
        #expect(seen[0].mucItem?[attribute: "jid"] == nil)
        #expect(seen[1].mucItem?[attribute: "role"] == "moderator")
    }
}
