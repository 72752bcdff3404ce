import MUC
import Testing
import XMPPCore

/// Changes made outside the room (the CLI, plain SQL, a previous owner) applied by the
/// room's owner node: the same presences an owner's change would produce, and nothing
/// to store again.
@Suite struct ExternalChangeTests {
    static func membersOnlyWithJulietMember() -> TestRoom {
        TestRoom.open(
            { $0.membersOnly = true }, affiliations: [Cast.juliet: .member],
            occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")]
        )
    }

    @Test func losingMembershipElsewhereRemovesTheOccupantWith321() throws {
        var test = Self.membersOnlyWithJulietMember()
        var stored = test.room.affiliations
        stored[Cast.juliet.bare] = nil
        let effects = test.room.applyExternal(affiliations: stored, environment: test.environment)
        let own = try #require(effects.presences(to: Cast.juliet).first)
        #expect(own.type == "unavailable")
        #expect(own.statusCodes == [321, 110])
        let seen = try #require(effects.presences(to: Cast.romeo).first)
        #expect(seen.type == "unavailable")
        #expect(seen.statusCodes == [321])
        #expect(test.room.occupant(real: Cast.juliet) == nil)
        #expect(test.room.affiliations[Cast.juliet.bare] == nil)
        #expect(effects.changes.isEmpty, "the store already has it")
    }

    @Test func aBanElsewhereRemovesWith301() throws {
        var test = TestRoom.twoInside()
        var stored = test.room.affiliations
        stored[Cast.juliet.bare] = AffiliationEntry(.outcast, reason: "feud")
        let effects = test.room.applyExternal(affiliations: stored, environment: test.environment)
        #expect(effects.presences(to: Cast.juliet).first?.statusCodes == [301, 110])
        #expect(test.room.affiliations[Cast.juliet.bare] == AffiliationEntry(.outcast, reason: "feud"))
    }

    @Test func nothingChangedMeansNothingSent() {
        var test = Self.membersOnlyWithJulietMember()
        let effects = test.room.applyExternal(affiliations: test.room.affiliations, environment: test.environment)
        #expect(effects.stanzas.isEmpty)
    }

    @Test func aNickReservedElsewhereIsTakenOverSilently() {
        var test = Self.membersOnlyWithJulietMember()
        var stored = test.room.affiliations
        stored[Cast.juliet.bare] = AffiliationEntry(.member, nick: "Jules")
        let effects = test.room.applyExternal(affiliations: stored, environment: test.environment)
        #expect(effects.stanzas.isEmpty)
        #expect(test.room.reservation(of: "Jules") == Cast.juliet.bare)
    }

    @Test func becomingMembersOnlyElsewhereRemovesNonMembersWith322() throws {
        var test = TestRoom.twoInside()
        var next = test.room.configuration
        next.membersOnly = true
        let effects = test.room.applyExternal(configuration: next, environment: test.environment)
        let gone = try #require(effects.presences(to: Cast.juliet).first)
        #expect(gone.type == "unavailable")
        #expect(gone.statusCodes == [322, 110])
        #expect(test.room.occupant(real: Cast.juliet) == nil)
        #expect(effects.messages(to: Cast.romeo).count == 1, "the owner is told the room changed")
        #expect(test.room.configuration.membersOnly)
    }

    @Test func destroyedElsewhereTellsEveryoneWithDestroy() {
        var test = TestRoom.twoInside()
        let effects = test.room.destroyedElsewhere(environment: test.environment)
        for real in [Cast.romeo, Cast.juliet] {
            let gone = effects.presences(to: real).last
            #expect(gone?.type == "unavailable")
            #expect(gone?.mucUser?.child("destroy", namespace: Namespace.mucUser) != nil)
        }
        #expect(effects.roomEnded)
        #expect(test.room.isEmpty)
    }
}
