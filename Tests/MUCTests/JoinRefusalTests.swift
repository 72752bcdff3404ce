import MUC
import Testing
import XMPPCore

/// XEP-0045 §7.2.3–§7.2.10: when the room turns an entrant away, and when it does not.
@Suite struct JoinRefusalTests {
    /// Checks that `effects` is exactly one error presence to `real` with `condition`,
    /// and that nobody else heard of the attempt.
    static func expectRefused(
        _ effects: RoomEffects, _ real: JID, nick: String, _ condition: StanzaError.Condition,
        type: StanzaError.ErrorType, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(effects.stanzas.count == 1, sourceLocation: sourceLocation)
        let error = effects.stanzas.first
        #expect(error?[attribute: "to"] == real.description, sourceLocation: sourceLocation)
        #expect(error?.from == "\(Cast.room)/\(nick)", sourceLocation: sourceLocation)
        #expect(error?.type == "error", sourceLocation: sourceLocation)
        #expect(error?.errorCondition == condition, sourceLocation: sourceLocation)
        #expect(error?.errorType == type, sourceLocation: sourceLocation)
        #expect(error?.child("x", namespace: Namespace.muc) != nil, sourceLocation: sourceLocation)
        #expect(effects.changes.isEmpty, sourceLocation: sourceLocation)
    }

    @Test func aNickInUseIsAConflict() {
        var test = TestRoom.open()
        let effects = test.join(Cast.juliet, nick: "Romeo")
        Self.expectRefused(effects, Cast.juliet, nick: "Romeo", .conflict, type: .cancel)
        #expect(test.room.occupants.map(\.realJID) == [Cast.romeo])
    }

    @Test func aMembersOnlyRoomRequiresRegistration() {
        var test = TestRoom.open { $0.membersOnly = true }
        Self.expectRefused(
            test.join(Cast.juliet, nick: "Juliet"), Cast.juliet, nick: "Juliet", .registrationRequired, type: .auth)
        #expect(test.room.occupants.count == 1)
    }

    @Test(arguments: [Affiliation.member, .admin, .owner])
    func aMembersOnlyRoomLetsMembersIn(affiliation: Affiliation) {
        var test = TestRoom.open({ $0.membersOnly = true }, affiliations: [Cast.juliet: affiliation])
        let effects = test.join(Cast.juliet, nick: "Juliet")
        #expect(effects.presences(to: Cast.juliet).last?.mucItem?[attribute: "affiliation"] == affiliation.rawValue)
        #expect(test.room.occupant(nick: "Juliet") != nil)
    }

    @Test func aBannedUserIsForbidden() {
        var test = TestRoom.open({ _ in }, affiliations: [Cast.juliet: .outcast])
        Self.expectRefused(test.join(Cast.juliet, nick: "Juliet"), Cast.juliet, nick: "Juliet", .forbidden, type: .auth)
    }

    @Test func aBanCoversEveryResourceOfTheBannedAccount() {
        var test = TestRoom.open({ _ in }, affiliations: [Cast.juliet: .outcast])
        let other = address("juliet@capulet.example/tomb")
        Self.expectRefused(test.join(other, nick: "Juliet"), other, nick: "Juliet", .forbidden, type: .auth)
    }

    @Test(arguments: [String?.none, "lark"])
    func aPasswordProtectedRoomRefusesAMissingOrWrongPassword(password: String?) {
        var test = TestRoom.open { $0.password = "nightingale" }
        let effects = test.join(Cast.juliet, nick: "Juliet", password: password)
        Self.expectRefused(effects, Cast.juliet, nick: "Juliet", .notAuthorized, type: .auth)
        #expect(test.room.occupants.count == 1)
    }

    @Test func theRightPasswordLetsTheEntrantIn() {
        var test = TestRoom.open { $0.password = "nightingale" }
        let effects = test.join(Cast.juliet, nick: "Juliet", password: "nightingale")
        #expect(effects.presences(to: Cast.juliet).last?.statusCodes == [110])
        #expect(test.room.occupant(nick: "Juliet")?.role == .participant)
    }

    @Test func aFullRoomIsServiceUnavailable() {
        var test = TestRoom.open({ $0.maxUsers = 2 }, occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")])
        let effects = test.join(Cast.mercutio, nick: "Mercutio")
        Self.expectRefused(effects, Cast.mercutio, nick: "Mercutio", .serviceUnavailable, type: .cancel)
        #expect(test.room.occupants.count == 2)
    }

    @Test(arguments: [Affiliation.admin, .owner])
    func adminsStillGetIntoAFullRoom(affiliation: Affiliation) {
        var test = TestRoom.open(
            { $0.maxUsers = 2 }, affiliations: [Cast.mercutio: affiliation],
            occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")]
        )
        let effects = test.join(Cast.mercutio, nick: "Mercutio")
        #expect(effects.presences(to: Cast.mercutio).last?.statusCodes == [110])
        #expect(test.room.occupants.count == 3)
    }

    @Test func aMemberDoesNotGetIntoAFullRoom() {
        var test = TestRoom.open({ $0.maxUsers = 1 }, affiliations: [Cast.juliet: .member])
        Self.expectRefused(
            test.join(Cast.juliet, nick: "Juliet"), Cast.juliet, nick: "Juliet", .serviceUnavailable, type: .cancel)
    }

    @Test func aPlaceFreesUpWhenSomeoneLeaves() {
        var test = TestRoom.open({ $0.maxUsers = 2 }, occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")])
        test.leave(Cast.juliet, nick: "Juliet")
        test.join(Cast.mercutio, nick: "Mercutio")
        #expect(test.room.occupants.map(\.nick) == ["Romeo", "Mercutio"])
    }

    /// As in Prosody: the password is the room's, not a members' list.
    @Test func ownersNeedThePasswordToo() {
        var test = TestRoom.open({ $0.password = "nightingale" }, occupants: [])
        Self.expectRefused(test.join(Cast.romeo, nick: "Romeo"), Cast.romeo, nick: "Romeo", .notAuthorized, type: .auth)
        let effects = test.join(Cast.romeo, nick: "Romeo", password: "nightingale")
        #expect(effects.presences(to: Cast.romeo).last?.mucItem?[attribute: "role"] == "moderator")
    }

    @Test func aRefusedEntrantIsNotAnOccupant() throws {
        var test = TestRoom.open { $0.membersOnly = true }
        test.join(Cast.juliet, nick: "Juliet")
        let effects = test.say(Cast.juliet, "Let me in", id: "m1")
        let error = try #require(effects.stanzas.first)
        #expect(error.errorCondition == .notAcceptable)
        #expect(effects.stanzas.count == 1)
    }
}
