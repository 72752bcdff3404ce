import MUC
import Testing
import XMPPCore

/// XEP-0045 §7.14 (exiting a room) and §10.1.3 / §10.2 (temporary and persistent rooms).
@Suite struct LeaveTests {
    @Test func theLeaverGets110AndTheOthersDoNot() throws {
        var test = TestRoom.twoInside()
        let effects = test.leave(Cast.juliet, nick: "Juliet")
        let own = try #require(effects.presences(to: Cast.juliet).first)
        let seen = try #require(effects.presences(to: Cast.romeo).first)
        for presence in [own, seen] {
            #expect(presence.type == "unavailable")
            #expect(presence.from == "\(Cast.room)/Juliet")
            #expect(presence.mucItem?[attribute: "role"] == "none")
            #expect(presence.mucItem?[attribute: "affiliation"] == "none")
        }
        #expect(own.mucUserLayout == ["item", "status 110"])
        #expect(seen.mucUserLayout == ["item"])
        #expect(effects.stanzas.count == 2)
        #expect(test.room.occupants.map(\.nick) == ["Romeo"])
    }

    @Test func theLeaveStatusTextIsKept() throws {
        var test = TestRoom.twoInside()
        let effects = test.leave(Cast.juliet, nick: "Juliet", status: "Good night")
        for real in [Cast.romeo, Cast.juliet] {
            let presence = try #require(effects.presences(to: real).first)
            #expect(presence.child("status", namespace: Namespace.client)?.text == "Good night")
        }
    }

    @Test func anEarlierShowIsNotRepeatedOnLeaving() throws {
        var test = TestRoom.twoInside()
        let away = [XMLElement("show", namespace: Namespace.client, text: "away")]
        test.send(Build.presence(from: Cast.juliet, to: "Juliet", children: away), from: Cast.juliet)
        let effects = test.leave(Cast.juliet, nick: "Juliet")
        #expect(effects.presences(to: Cast.romeo).first?.child("show") == nil)
    }

    @Test func theLastOccupantLeavingEndsATemporaryRoom() {
        var test = TestRoom.twoInside()
        #expect(!test.leave(Cast.juliet, nick: "Juliet").roomEnded)
        let effects = test.leave(Cast.romeo, nick: "Romeo")
        #expect(effects.roomEnded)
        #expect(effects.changes == [.destroyed])
        #expect(effects.presences(to: Cast.romeo).first?.statusCodes == [110])
        #expect(test.room.isEmpty)
    }

    @Test func aPersistentRoomOutlivesItsOccupants() {
        var test = TestRoom.twoInside { $0.persistent = true }
        test.leave(Cast.juliet, nick: "Juliet")
        let effects = test.leave(Cast.romeo, nick: "Romeo")
        #expect(!effects.roomEnded)
        #expect(effects.changes.isEmpty)
        #expect(test.room.isEmpty)
    }

    @Test func anEndedSessionLeavesLikeAnUnavailablePresence() throws {
        var test = TestRoom.twoInside()
        let effects = test.room.sessionEnded(Cast.juliet, environment: test.environment)
        let seen = try #require(effects.presences(to: Cast.romeo).first)
        #expect(seen.type == "unavailable")
        #expect(seen.mucItem?[attribute: "role"] == "none")
        #expect(effects.presences(to: Cast.juliet).first?.statusCodes == [110])
        #expect(test.room.occupants.map(\.nick) == ["Romeo"])
        #expect(!effects.roomEnded)
    }

    @Test func theLastSessionEndingEndsATemporaryRoom() {
        var test = TestRoom.open()
        let effects = test.room.sessionEnded(Cast.romeo, environment: test.environment)
        #expect(effects.roomEnded)
        #expect(effects.changes == [.destroyed])
    }

    @Test func anotherResourceEndingItsSessionChangesNothing() {
        var test = TestRoom.twoInside()
        let effects = test.room.sessionEnded(address("juliet@capulet.example/tomb"), environment: test.environment)
        #expect(effects.stanzas.isEmpty)
        #expect(test.room.occupants.count == 2)
    }

    @Test func anUnavailablePresenceFromANonOccupantIsIgnored() {
        var test = TestRoom.twoInside()
        let effects = test.leave(Cast.mercutio, nick: "Mercutio")
        #expect(effects.stanzas.isEmpty)
        #expect(test.room.occupants.count == 2)
    }

    @Test func aBouncedPresenceRemovesTheOccupantWith333() {
        var test = TestRoom.twoInside()
        let bounce = Build.presence(
            from: Cast.juliet, to: "Juliet", type: "error", children: [StanzaError(.remoteServerNotFound).element]
        )
        let effects = test.send(bounce, from: Cast.juliet)
        #expect(effects.presences(to: Cast.romeo).first?.type == "unavailable")
        #expect(effects.presences(to: Cast.romeo).first?.statusCodes.contains(333) == true)
        #expect(effects.presences(to: Cast.juliet).first?.statusCodes.contains(333) == true)
        #expect(effects.presences(to: Cast.juliet).first?.statusCodes.last == 110)
        #expect(test.room.occupants.map(\.nick) == ["Romeo"])
    }

    @Test func aBouncedPresenceFromANonOccupantIsIgnored() {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.presence(from: Cast.mercutio, to: "Mercutio", type: "error"), from: Cast.mercutio)
        #expect(effects.stanzas.isEmpty)
    }

    @Test func aLeftOccupantMayComeBack() {
        var test = TestRoom.twoInside()
        test.leave(Cast.juliet, nick: "Juliet")
        let effects = test.join(Cast.juliet, nick: "Juliet")
        #expect(effects.presences(to: Cast.juliet).last?.statusCodes == [110])
        #expect(test.room.occupants.map(\.nick) == ["Romeo", "Juliet"])
    }
}
