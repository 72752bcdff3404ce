import MUC
import Testing
import XMPPCore

/// Presence probes to occupant JIDs, and plain presences that are not joins
/// (spec/muc_presence_probe.scs, spec/muc_join_without_x.scs; as Prosody 0.12).
@Suite struct ProbeAndPlainPresenceTests {
    @Test func anOccupantsProbeGetsThePresenceAsTheProberSeesIt() throws {
        var test = TestRoom.twoInside()
        let probe = Build.presence(from: Cast.romeo, to: "Juliet", type: "probe")
        let effects = test.send(probe, from: Cast.romeo)
        #expect(effects.stanzas.count == 1)
        let presence = try #require(effects.presences(to: Cast.romeo).first)
        #expect(presence[attribute: "from"] == "\(Cast.room)/Juliet")
        #expect(presence.type == nil)
        // Romeo is a moderator in a semi-anonymous room: he sees Juliet's real JID.
        #expect(presence.mucUser?.child("item")?[attribute: "jid"] == Cast.juliet.description)
        #expect(test.room.occupants.count == 2)
    }

    @Test func aParticipantsProbeDoesNotRevealRealJIDs() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.presence(from: Cast.juliet, to: "Romeo", type: "probe"), from: Cast.juliet)
        let presence = try #require(effects.presences(to: Cast.juliet).first)
        #expect(presence.mucUser?.child("item")?[attribute: "jid"] == nil)
        #expect(presence.mucUser?.child("item")?[attribute: "role"] == "moderator")
    }

    @Test func aProbeFromOutsideIsNotAcceptable() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.presence(from: Cast.mercutio, to: "Juliet", type: "probe"), from: Cast.mercutio)
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error.errorCondition == .notAcceptable)
        #expect(error.errorType == .cancel)
    }

    @Test func aProbeOfAnAbsentNickAnswersNothingUnlessReserved() throws {
        var test = TestRoom.twoInside()
        #expect(test.send(Build.presence(from: Cast.romeo, to: "Tybalt", type: "probe"), from: Cast.romeo).stanzas.isEmpty)
        test.room.affiliations[Cast.mercutio.bare] = AffiliationEntry(.member, nick: "Merc")
        let effects = test.send(Build.presence(from: Cast.romeo, to: "Merc", type: "probe"), from: Cast.romeo)
        let presence = try #require(effects.presences(to: Cast.romeo).first)
        #expect(presence.type == "unavailable")
        let item = presence.mucUser?.child("item")
        #expect(item?[attribute: "nick"] == "Merc")
        #expect(item?[attribute: "role"] == "none")
        #expect(item?[attribute: "affiliation"] == "member")
    }

    @Test func aPlainPresenceFromOutsideIsItemNotFoundNotAJoin() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.presence(from: Cast.mercutio, to: "Mercutio"), from: Cast.mercutio)
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error.errorCondition == .itemNotFound)
        #expect(error.errorType == .cancel)
        #expect(test.room.occupants.count == 2)
    }

    @Test func aPlainPresenceFromAnOccupantIsAPresenceUpdate() {
        var test = TestRoom.twoInside()
        let update = Build.presence(
            from: Cast.juliet, to: "Juliet", children: [XMLElement("show", namespace: Namespace.client, text: "dnd")]
        )
        let effects = test.send(update, from: Cast.juliet)
        #expect(effects.presences(to: Cast.romeo).first?.child("show")?.text == "dnd")
    }
}
