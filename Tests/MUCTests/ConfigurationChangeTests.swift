import MUC
import Testing
import XMPPCore

/// XEP-0045 §10.2.1: what occupants are told when the owner changes the configuration,
/// and the occupants a new configuration removes.
@Suite struct ConfigurationChangeTests {
    @Test func aChangeIsAnnouncedWith104AfterTheResult() throws {
        var test = TestRoom.twoInside()
        let effects = test.configure(Cast.romeo, [("muc#roomconfig_roomname", ["Capulet Hall"])], id: "config1")
        let received = effects.to(Cast.romeo)
        #expect(received.map(\.name) == ["iq", "message"])
        #expect(received.first?.id == "config1")
        for message in [received.last, effects.messages(to: Cast.juliet).first] {
            #expect(message?.type == "groupchat")
            #expect(message?.from == Cast.room.description)
            #expect(message?.statusCodes == [104])
            #expect(message?.body == nil)
        }
    }

    @Test func submittingWhatIsAlreadySetAnnouncesNothing() {
        var test = TestRoom.twoInside { $0.name = "Capulet Hall" }
        let effects = test.configure(Cast.romeo, [("muc#roomconfig_roomname", ["Capulet Hall"])])
        #expect(effects.stanzas.map(\.name) == ["iq"])
        #expect(effects.changes == [.configured(test.room.configuration)])
    }

    @Test(arguments: [(RoomConfiguration.Whois.anyone, 172), (.moderators, 173)])
    func changingWhoSeesRealJIDsSaysSoAndOnlySo(whois: RoomConfiguration.Whois, code: Int) {
        var test = TestRoom.twoInside { $0.whois = whois == .anyone ? .moderators : .anyone }
        let effects = test.configure(Cast.romeo, [("muc#roomconfig_whois", [whois.rawValue])])
        #expect(effects.messages(to: Cast.juliet).map(\.statusCodes) == [[code]])
        #expect(effects.messages(to: Cast.romeo).map(\.statusCodes) == [[code]])
    }

    @Test func aRoomMadeNonAnonymousShowsRealJIDsToLaterEntrants() throws {
        var test = TestRoom.twoInside()
        test.configure(Cast.romeo, [("muc#roomconfig_whois", ["anyone"])])
        let seen = test.join(Cast.mercutio, nick: "Mercutio").presences(to: Cast.mercutio)
        #expect(
            seen.map { $0.mucItem?[attribute: "jid"] } == [Cast.romeo, Cast.juliet, Cast.mercutio].map(\.description))
        #expect(seen.last?.statusCodes == [100, 110])
    }

    @Test func turningLoggingOnSays170AndEntrantsAreWarned() {
        var test = TestRoom.twoInside()
        let effects = test.configure(Cast.romeo, [("muc#roomconfig_enablelogging", ["1"])])
        #expect(effects.messages(to: Cast.juliet).map(\.statusCodes) == [[170]])
        #expect(
            test.join(Cast.mercutio, nick: "Mercutio").presences(to: Cast.mercutio).last?.statusCodes == [170, 110])
    }

    @Test func severalChangesAreOneMessage() {
        var test = TestRoom.twoInside()
        let effects = test.configure(
            Cast.romeo, [("muc#roomconfig_roomname", ["Capulet Hall"]), ("muc#roomconfig_whois", ["anyone"])]
        )
        #expect(effects.messages(to: Cast.juliet).map(\.statusCodes) == [[104, 172]])
    }

    @Test func goingMembersOnlyRemovesNonMembersWith322() throws {
        var test = TestRoom.twoInside()
        test.join(Cast.nurse, nick: "Nurse")
        test.room.affiliations[Cast.nurse.bare] = AffiliationEntry(.member)
        let effects = test.configure(Cast.romeo, [("muc#roomconfig_membersonly", ["1"])], id: "config6")
        #expect(effects.to(Cast.romeo).prefix(2).map(\.name) == ["iq", "message"])
        #expect(effects.messages(to: Cast.romeo).first?.statusCodes == [104])
        let removed = try #require(effects.presences(to: Cast.juliet).first)
        #expect(removed.type == "unavailable")
        #expect(removed.mucUserLayout == ["status 322", "item", "status 110"])
        #expect(removed.mucItem?[attribute: "role"] == "none")
        #expect(removed.mucItem?[attribute: "affiliation"] == "none")
        #expect(test.room.occupants.map(\.nick) == ["Romeo", "Nurse"])
        #expect(!effects.roomEnded)
    }

    /// muc_config.scs pins Prosody 0.12: the 322 goes to the removed occupant alone, who
    /// is gone before the 104 is sent.
    @Test func only322ReachesTheRemovedOccupant() {
        var test = TestRoom.twoInside()
        let effects = test.configure(Cast.romeo, [("muc#roomconfig_membersonly", ["1"])])
        #expect(effects.presences(to: Cast.romeo).isEmpty)
        #expect(effects.to(Cast.juliet).map(\.name) == ["presence"])
    }

    /// A temporary room lives while it has occupants (§10.1.3); Prosody drops an empty one
    /// when it is saved as temporary.
    @Test func makingAnEmptyRoomTemporaryEndsIt() {
        var test = TestRoom.open({ $0.persistent = true }, occupants: [])
        let effects = test.configure(Cast.romeo, [("muc#roomconfig_persistentroom", ["0"])])
        #expect(effects.iqs(to: Cast.romeo).first?.type == "result")
        #expect(effects.roomEnded)
        #expect(effects.changes.last == .destroyed)
    }

    @Test func goingMembersOnlyFromOutsideCanEmptyATemporaryRoom() {
        var test = TestRoom.open({ _ in }, occupants: [(Cast.juliet, "Juliet")])
        let effects = test.configure(Cast.romeo, [("muc#roomconfig_membersonly", ["1"])])
        #expect(effects.presences(to: Cast.juliet).first?.statusCodes == [322, 110])
        #expect(test.room.isEmpty)
        #expect(effects.roomEnded)
    }
}
