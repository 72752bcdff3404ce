import MUC
import Testing
import XMPPCore

/// Issue 13: rooms enforce nicknames with RFC 8266, so that no occupant hides invisible
/// or direction-changing characters in its nick, and no occupied or reserved nick can
/// be imitated by one that only looks different to the server.
@Suite struct NicknameEnforcementTests {
    @Test(arguments: ["Rom\u{200B}eo", "\u{202E}oileJ", "Juliet\u{0600}", "❤\u{FE0F}", "👨\u{200D}👩"])
    func aForbiddenNickIsRefusedWithJIDMalformed(_ nick: String) throws {
        var test = TestRoom.open()
        let effects = test.join(Cast.juliet, nick: nick)
        #expect(effects.recipients == [Cast.juliet.description], "the occupants hear nothing")
        let reply = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(reply.type == "error")
        #expect(reply.errorCondition == .jidMalformed)
        #expect(reply.errorType == .modify)
        #expect(reply.stanzaError?.text?.contains("U+") == true, "the text says which character")
        #expect(reply.child("x", namespace: Namespace.muc) != nil)
        #expect(test.room.occupant(real: Cast.juliet) == nil)
    }

    /// As Prosody: "Invisible Nicknames are forbidden".
    @Test func aNickOfOnlySpacesIsNotAllowed() throws {
        var test = TestRoom.open()
        let reply = try #require(test.join(Cast.juliet, nick: "\u{3000} \u{00A0}").stanzas.first)
        #expect(reply.errorCondition == .notAllowed)
        #expect(test.room.occupant(real: Cast.juliet) == nil)
    }

    @Test func aRoomIsNotCreatedByAJoinWithAForbiddenNick() {
        var test = TestRoom(Room(jid: Cast.room, locked: true))
        let effects = test.join(Cast.romeo, nick: "Romeo\u{2066}", isNew: true)
        #expect(effects.stanzas.map(\.errorCondition) == [.jidMalformed])
        #expect(effects.changes.isEmpty, "nothing about the room is stored")
        #expect(test.room.isEmpty)
    }

    @Test(arguments: ["romeo", "ROMEO", "Ｒｏｍｅｏ", " Romeo ", "Romeo\u{00A0}"])
    func aLookAlikeOfAnOccupiedNickIsAConflict(_ nick: String) throws {
        var test = TestRoom.open()
        let effects = test.join(Cast.juliet, nick: nick)
        #expect(effects.stanzas.map(\.errorCondition) == [.conflict])
        #expect(effects.recipients == [Cast.juliet.description])
        #expect(test.room.occupants.map(\.nick) == ["Romeo"])
    }

    @Test func changingToALookAlikeOfAnotherOccupantsNickIsAConflict() {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.presence(from: Cast.juliet, to: "ｒｏｍｅｏ"), from: Cast.juliet)
        #expect(effects.stanzas.map(\.errorCondition) == [.conflict])
        #expect(test.room.occupant(real: Cast.juliet)?.nick == "Juliet")
    }

    @Test func changingToAForbiddenNickIsJIDMalformed() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.presence(from: Cast.juliet, to: "Jul\u{200B}iet"), from: Cast.juliet)
        let reply = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(reply.errorCondition == .jidMalformed)
        #expect(reply.child("x", namespace: Namespace.muc) == nil, "not a join")
        #expect(test.room.occupant(real: Cast.juliet)?.nick == "Juliet")
    }

    @Test func aLookAlikeOfAReservedNickIsAConflict() {
        var test = TestRoom.open(affiliations: [Cast.juliet: .member])
        test.room.affiliations[Cast.juliet.bare]?.nick = "Jules"
        for nick in ["jules", "JULES", "Ｊｕｌｅｓ", "Jules "] {
            #expect(test.join(Cast.mercutio, nick: nick).stanzas.map(\.errorCondition) == [.conflict], "\(nick)")
        }
        #expect(test.room.occupant(real: Cast.mercutio) == nil)
        let holder = test.join(Cast.juliet, nick: "jules")
        #expect(holder.presences(to: Cast.juliet).last?.type == nil, "the holder may use any form of it")
    }

    @Test func registeringALookAlikeOfAReservedNickIsAConflict() {
        var test = TestRoom.open(affiliations: [Cast.juliet: .member, Cast.mercutio: .member])
        test.room.affiliations[Cast.juliet.bare]?.nick = "Jules"
        let effects = Self.reserve(&test, "ＪＵＬＥＳ", as: Cast.mercutio)
        #expect(effects.stanzas.map(\.errorCondition) == [.conflict])
        #expect(test.room.affiliations[Cast.mercutio.bare]?.nick == nil)
    }

    @Test func registeringAForbiddenNickIsABadRequestThatSaysWhy() throws {
        var test = TestRoom.open(affiliations: [Cast.juliet: .member])
        let reply = try #require(Self.reserve(&test, "Jul\u{202E}es", as: Cast.juliet).stanzas.first)
        #expect(reply.errorCondition == .badRequest)
        #expect(reply.stanzaError?.text?.contains("U+202E") == true)
        #expect(test.room.affiliations[Cast.juliet.bare]?.nick == nil)
    }

    @Test func aNickIsReservedInItsEnforcedForm() {
        var test = TestRoom.open(affiliations: [Cast.juliet: .member])
        Self.reserve(&test, "  Ｊｕｌｅｓ ", as: Cast.juliet)
        #expect(test.room.affiliations[Cast.juliet.bare]?.nick == "Jules")
    }

    /// XEP-0045 §7.2.9: the room changed the nick asked for, and says so with 210.
    @Test func aMappedNickIsUsedAndAnnouncedWith210() throws {
        var test = TestRoom.open()
        let effects = test.join(Cast.juliet, nick: " Ｊｕｌｉｅｔ ")
        let own = try #require(effects.presences(to: Cast.juliet).last)
        #expect(own.from == "\(Cast.room)/Juliet")
        #expect(own.statusCodes == [210, 110])
        #expect(effects.presences(to: Cast.romeo).last?.from == "\(Cast.room)/Juliet")
        #expect(test.room.occupant(real: Cast.juliet)?.nick == "Juliet")

        let unchanged = test.join(Cast.mercutio, nick: "Mercutio")
        #expect(unchanged.presences(to: Cast.mercutio).last?.statusCodes == [110], "no 210 when nothing changed")
    }

    /// A presence to the same nick in another form is an update, not a change.
    @Test func aPresenceToTheMappedFormOfOnesNickIsAnUpdate() throws {
        var test = TestRoom.twoInside()
        let away = Build.presence(
            from: Cast.juliet, to: "Ｊｕｌｉｅｔ", children: [XMLElement("show", namespace: Namespace.client, text: "away")])
        let effects = test.send(away, from: Cast.juliet)
        let seen = try #require(effects.presences(to: Cast.romeo).first)
        #expect(effects.presences(to: Cast.romeo).count == 1)
        #expect(seen.statusCodes.isEmpty, "no 303")
        #expect(seen.child("show", namespace: Namespace.client)?.text == "away")
    }

    /// Changing the case of one's own nick is a nick change, not a conflict with oneself.
    @Test func anOccupantMayChangeTheCaseOfItsOwnNick() {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.presence(from: Cast.juliet, to: "JULIET"), from: Cast.juliet)
        #expect(effects.presences(to: Cast.romeo).first?.statusCodes == [303])
        #expect(test.room.occupant(real: Cast.juliet)?.nick == "JULIET")
    }

    @Test func aPrivateMessageToAnotherFormOfANickReachesItsOccupant() {
        var test = TestRoom.twoInside()
        let effects = test.send(
            Build.message(from: Cast.romeo, to: "ｊｕｌｉｅｔ", type: "chat", body: "Wilt thou be gone?"), from: Cast.romeo)
        #expect(effects.messages(to: Cast.juliet).count == 1)
    }

    @discardableResult
    static func reserve(_ test: inout TestRoom, _ nick: String, as real: JID) -> RoomEffects {
        let form = DataForm(
            type: "submit",
            fields: [
                .init("FORM_TYPE", values: ["http://jabber.org/protocol/muc#register"]),
                .init("muc#register_roomnick", values: [nick]),
            ]
        )
        let request = Build.iq("set", from: real, id: "reg", payload: Build.query(Namespace.register, [form.element]))
        return test.send(request, from: real)
    }
}
