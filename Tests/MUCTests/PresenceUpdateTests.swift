import MUC
import Testing
import XMPPCore

/// XEP-0045 §7.7 (changing availability inside a room) and §10.2 presence broadcast.
@Suite struct PresenceUpdateTests {

    static func away(_ real: JID, nick: String, status: String = "On the balcony") -> XMLElement {
        Build.presence(
            from: real, to: nick,
            children: [
                XMLElement("show", namespace: Namespace.client, text: "away"),
                XMLElement("status", namespace: Namespace.client, text: status),
            ]
        )
    }

    @Test func anUpdateReachesEveryoneWithShowAndStatus() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.away(Cast.juliet, nick: "Juliet"), from: Cast.juliet)
        #expect(effects.stanzas.count == 2)
        for real in [Cast.romeo, Cast.juliet] {
            let presence = try #require(effects.presences(to: real).first)
            #expect(presence.type == nil)
            #expect(presence.from == "\(Cast.room)/Juliet")
            #expect(presence.child("show")?.text == "away")
            #expect(presence.child("status")?.text == "On the balcony")
            #expect(presence.mucItem?[attribute: "role"] == "participant")
        }
        #expect(effects.presences(to: Cast.juliet).first?.statusCodes == [110])
        #expect(effects.presences(to: Cast.romeo).first?.statusCodes == [])
    }

    @Test func anUpdateDoesNotResendTheOccupantList() {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.away(Cast.juliet, nick: "Juliet"), from: Cast.juliet)
        #expect(effects.to(Cast.juliet).map(\.from) == ["\(Cast.room)/Juliet"])
        #expect(effects.changes.isEmpty)
    }

    @Test func theNewPresenceReplacesTheOld() throws {
        var test = TestRoom.twoInside()
        test.send(Self.away(Cast.juliet, nick: "Juliet"), from: Cast.juliet)
        let effects = test.send(Build.presence(from: Cast.juliet, to: "Juliet"), from: Cast.juliet)
        let seen = try #require(effects.presences(to: Cast.romeo).first)
        #expect(seen.child("show") == nil)
        #expect(seen.child("status") == nil)
    }

    @Test func aLaterEntrantSeesTheCurrentPresence() throws {
        var test = TestRoom.twoInside()
        test.send(Self.away(Cast.juliet, nick: "Juliet", status: "Asleep"), from: Cast.juliet)
        let effects = test.join(Cast.mercutio, nick: "Mercutio")
        let juliet = try #require(effects.presences(to: Cast.mercutio).first { $0.from == "\(Cast.room)/Juliet" })
        #expect(juliet.child("status")?.text == "Asleep")
    }

    @Test func spoofedOccupantIDsAreReplaced() throws {
        var test = TestRoom.twoInside()
        let forged = Build.presence(
            from: Cast.juliet, to: "Juliet",
            children: [XMLElement("occupant-id", namespace: Namespace.occupantID, ["id": "romeo@verona"])]
        )
        let seen = try #require(test.send(forged, from: Cast.juliet).presences(to: Cast.romeo).first)
        let ids = seen.children("occupant-id", namespace: Namespace.occupantID).map { $0[attribute: "id"] }
        #expect(ids == ["juliet@verona"])
    }

    @Test func aForgedMUCUserElementIsReplacedByTheRooms() throws {
        var test = TestRoom.twoInside()
        let forged = XMLElement(
            "x", namespace: Namespace.mucUser,
            children: [
                XMLElement("item", namespace: Namespace.mucUser, ["affiliation": "owner", "role": "moderator"]),
                XMLElement("status", namespace: Namespace.mucUser, ["code": "201"]),
            ]
        )
        let update = Build.presence(from: Cast.juliet, to: "Juliet", children: [forged])
        let seen = try #require(test.send(update, from: Cast.juliet).presences(to: Cast.romeo).first)
        #expect(seen.children("x", namespace: Namespace.mucUser).count == 1)
        #expect(seen.mucUserLayout == ["item"])
        #expect(seen.mucItem?[attribute: "affiliation"] == "none")
        #expect(seen.mucItem?[attribute: "role"] == "participant")
    }

    @Test func visitorsPresenceIsNotBroadcastWhenTheRoomSaysSo() {
        var test = TestRoom.open {
            $0.moderated = true
            $0.presenceBroadcast = [.moderator, .participant]
        }
        let entered = test.join(Cast.juliet, nick: "Juliet")
        #expect(entered.presences(to: Cast.romeo).isEmpty, "a visitor enters unseen")
        #expect(entered.presences(to: Cast.juliet).last?.statusCodes == [110], "but is told of itself")
        let left = test.leave(Cast.juliet, nick: "Juliet")
        #expect(left.presences(to: Cast.juliet).count == 1)
    }

    @Test func unseenOccupantsAreNotListedToEntrants() {
        var test = TestRoom.open(
            { $0.presenceBroadcast = [.moderator] }, occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")])
        let effects = test.join(Cast.mercutio, nick: "Mercutio")
        #expect(effects.presences(to: Cast.mercutio).map(\.from) == ["Romeo", "Mercutio"].map { "\(Cast.room)/\($0)" })
    }

    @Test func aPresenceOfAnotherTypeIsIgnored() {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.presence(from: Cast.juliet, to: "Juliet", type: "subscribe"), from: Cast.juliet)
        #expect(effects.stanzas.isEmpty)
        #expect(test.room.occupants.count == 2)
    }

    /// A role the room does not broadcast changes nick and leaves unseen by others (as in
    /// Prosody); only the occupant itself hears of it.
    @Test func anUnbroadcastRoleChangesNickAndLeavesUnseen() {
        var test = TestRoom.open({ $0.presenceBroadcast = [.moderator] }, occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")])
        let changed = test.send(Build.presence(from: Cast.juliet, to: "Jules"), from: Cast.juliet)
        #expect(changed.presences(to: Cast.romeo).isEmpty)
        #expect(changed.presences(to: Cast.juliet).count == 2)
        let left = test.leave(Cast.juliet, nick: "Jules")
        #expect(left.presences(to: Cast.romeo).isEmpty)
    }

    /// Losing a broadcast role shows the occupant going away to the others.
    @Test func leavingTheBroadcastRolesLooksLikeLeaving() throws {
        var test = TestRoom.open({ $0.presenceBroadcast = [.moderator, .participant] }, occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")])
        let request = Build.iq(
            "set", from: Cast.romeo, id: "v1", payload: Build.query(Namespace.mucAdmin, [Build.item(["nick": "Juliet", "role": "visitor"])]))
        let effects = test.send(request, from: Cast.romeo)
        let seen = try #require(effects.presences(to: Cast.romeo).first)
        #expect(seen.type == "unavailable")
        #expect(effects.presences(to: Cast.juliet).last?.type == nil)
    }

    /// Narrowing muc#roomconfig_presencebroadcast shows the occupants of the roles left
    /// out going (a bare unavailable to the others), each told its own presence again;
    /// widening it shows them arriving (as Prosody does).
    @Test func changingTheBroadcastRolesShowsOccupantsGoingAndComing() throws {
        var test = TestRoom.twoInside()
        let narrowed = test.configure(Cast.romeo, [("muc#roomconfig_presencebroadcast", ["moderator"])])
        let gone = try #require(narrowed.presences(to: Cast.romeo).first)
        #expect(gone.type == "unavailable" && gone.from == "\(Cast.room)/Juliet")
        #expect(narrowed.presences(to: Cast.juliet).last?.statusCodes == [110])
        #expect(narrowed.presences(to: Cast.juliet).last?.type == nil)
        let widened = test.configure(Cast.romeo, [("muc#roomconfig_presencebroadcast", ["moderator", "participant", "visitor"])])
        #expect(widened.presences(to: Cast.romeo).first?.type == nil)
        #expect(widened.presences(to: Cast.romeo).first?.from == "\(Cast.room)/Juliet")
    }
}
