import MUC
import Testing
import XMPPCore

/// XEP-0045 §10.9: the owner destroys the room.
@Suite struct DestroyTests {

    static func destroy(
        _ test: inout TestRoom, as real: JID, venue: String? = nil, reason: String? = nil, password: String? = nil
    ) -> RoomEffects {
        var destroy = XMLElement("destroy", namespace: Namespace.mucOwner)
        destroy[attribute: "jid"] = venue
        if let reason { destroy.append(XMLElement("reason", namespace: Namespace.mucOwner, text: reason)) }
        if let password { destroy.append(XMLElement("password", namespace: Namespace.mucOwner, text: password)) }
        let request = Build.iq("set", from: real, id: "destroy2", payload: Build.query(Namespace.mucOwner, [destroy]))
        return test.send(request, from: real)
    }

    @Test func everyOccupantLeavesWithTheVenueAndReason() throws {
        var test = TestRoom.twoInside()
        let effects = Self.destroy(
            &test, as: Cast.romeo, venue: "mantua@conference.example", reason: "Banished to Mantua"
        )
        for (real, nick) in [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")] {
            let own = try #require(effects.presences(to: real).last)
            #expect(own.type == "unavailable")
            #expect(own.from == "\(Cast.room)/\(nick)")
            #expect(own.mucUserLayout == ["destroy", "item", "status 110"])
            #expect(own.mucItem?[attribute: "role"] == "none")
            let destroy = try #require(own.mucUser?.child("destroy", namespace: Namespace.mucUser))
            #expect(destroy[attribute: "jid"] == "mantua@conference.example")
            #expect(destroy.child("reason", namespace: Namespace.mucUser)?.text == "Banished to Mantua")
        }
        #expect(test.room.isEmpty)
    }

    @Test func theOwnerGetsTheResultLast() throws {
        var test = TestRoom.twoInside()
        let effects = Self.destroy(&test, as: Cast.romeo)
        let last = try #require(effects.stanzas.last)
        #expect(last.name == "iq")
        #expect(last.type == "result")
        #expect(last.id == "destroy2")
        #expect(last[attribute: "to"] == Cast.romeo.description)
    }

    @Test func theRoomEndsAndIsForgotten() {
        var test = TestRoom.twoInside { $0.persistent = true }
        let effects = Self.destroy(&test, as: Cast.romeo)
        #expect(effects.roomEnded)
        #expect(effects.changes == [.destroyed])
    }

    @Test func aDestroyWithoutDetailsHasAnEmptyDestroyElement() throws {
        var test = TestRoom.twoInside()
        let own = try #require(Self.destroy(&test, as: Cast.romeo).presences(to: Cast.juliet).last)
        let destroy = try #require(own.mucUser?.child("destroy", namespace: Namespace.mucUser))
        #expect(destroy.attributes.isEmpty)
        #expect(destroy.children.isEmpty)
    }

    @Test func theAlternateVenuesPasswordIsPassedOn() throws {
        var test = TestRoom.twoInside()
        let own = try #require(
            Self.destroy(&test, as: Cast.romeo, venue: "mantua@conference.example", password: "lark")
                .presences(to: Cast.juliet).last
        )
        #expect(own.mucUser?.child("destroy")?.child("password", namespace: Namespace.mucUser)?.text == "lark")
    }

    @Test func anOwnerOutsideTheRoomMayDestroyIt() {
        var test = TestRoom.open({ _ in }, occupants: [(Cast.juliet, "Juliet")])
        let effects = Self.destroy(&test, as: Cast.romeo)
        #expect(effects.presences(to: Cast.juliet).count == 1)
        #expect(effects.iqs(to: Cast.romeo).first?.type == "result")
        #expect(effects.roomEnded)
    }

    @Test(arguments: [Cast.juliet, Cast.nurse, Cast.mercutio])
    func onlyAnOwnerMayDestroy(real: JID) throws {
        var test = TestRoom.open(
            { _ in }, affiliations: [Cast.nurse: .admin], occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")])
        let effects = Self.destroy(&test, as: real)
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error[attribute: "to"] == real.description)
        #expect(error.errorCondition == .forbidden)
        #expect(error.errorType == .auth)
        #expect(!effects.roomEnded)
        #expect(test.room.occupants.count == 2)
    }

    /// muc_destroy.scs: "Each occupant only hears of their own departure" (Prosody 0.12
    /// removes everyone first, then tells each).
    @Test func eachOccupantHearsOnlyOfItsOwnDeparture() {
        var test = TestRoom.twoInside()
        test.join(Cast.mercutio, nick: "Mercutio")
        let effects = Self.destroy(&test, as: Cast.romeo)
        for real in [Cast.romeo, Cast.juliet, Cast.mercutio] {
            #expect(effects.presences(to: real).count == 1)
        }
    }
}
