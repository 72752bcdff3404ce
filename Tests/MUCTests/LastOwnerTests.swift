import MUC
import Testing
import XMPPCore

/// A room keeps an owner: an owner may not demote themselves when nobody else owns the
/// room (XEP-0045 §10.5), and not by a request that also demotes the other owners.
/// Found by the room fuzz target (Tests/Fuzz/corpus/room/last-owner-two-items).
@Suite struct LastOwnerTests {
    @Test func anOwnerCannotDemoteTheOtherOwnerAndThemselvesInOneRequest() {
        var test = TestRoom.open(affiliations: [Cast.juliet: .owner])
        let reply = test.admin(
            Cast.romeo,
            [
                Build.item(["affiliation": "none", "jid": Cast.juliet.bare.description]),
                Build.item(["affiliation": "member", "jid": Cast.romeo.bare.description]),
            ]
        )
        #expect(reply.iqs(to: Cast.romeo).first?.errorCondition == .conflict)
        #expect(reply.changes.isEmpty)
        #expect(test.room.affiliations[Cast.romeo.bare]?.affiliation == .owner)
        #expect(test.room.affiliations[Cast.juliet.bare]?.affiliation == .owner)
    }

    @Test func anOwnerMayHandOwnershipOverAndStepDownInOneRequest() {
        var test = TestRoom.open()
        let reply = test.admin(
            Cast.romeo,
            [
                Build.item(["affiliation": "owner", "jid": Cast.juliet.bare.description]),
                Build.item(["affiliation": "admin", "jid": Cast.romeo.bare.description]),
            ]
        )
        #expect(reply.iqs(to: Cast.romeo).last?[attribute: "type"] == "result")
        #expect(test.room.affiliations[Cast.juliet.bare]?.affiliation == .owner)
        #expect(test.room.affiliations[Cast.romeo.bare]?.affiliation == .admin)
    }

    @Test func anOwnerMayStillRemoveAnotherOwner() {
        var test = TestRoom.open(affiliations: [Cast.juliet: .owner])
        let reply = test.admin(Cast.romeo, [Build.item(["affiliation": "none", "jid": Cast.juliet.bare.description])])
        #expect(reply.iqs(to: Cast.romeo).last?[attribute: "type"] == "result")
        #expect(test.room.affiliations[Cast.juliet.bare] == nil)
    }
}
