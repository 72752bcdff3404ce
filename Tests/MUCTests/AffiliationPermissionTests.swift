import MUC
import Testing
import XMPPCore

/// XEP-0045 §9 / §10 and Prosody's rules on who may set which affiliation; invalid
/// requests are refused whole.
@Suite struct AffiliationPermissionTests {
    /// Romeo owns it; Nurse is an admin; Juliet a member; Benvolio a participant.
    static func staffed() -> TestRoom {
        TestRoom.open(
            { _ in }, affiliations: [Cast.nurse: .admin, Cast.juliet: .member],
            occupants: [
                (Cast.romeo, "Romeo"), (Cast.nurse, "Nurse"), (Cast.juliet, "Juliet"), (Cast.benvolio, "Benvolio"),
            ]
        )
    }

    static func set(_ jid: String, _ affiliation: String) -> XMLElement {
        Build.item(["affiliation": affiliation, "jid": jid])
    }

    /// Checks that `effects` is only an error iq to `real` and that nothing changed.
    static func expectRefused(
        _ effects: RoomEffects, to real: JID, _ condition: StanzaError.Condition, type: StanzaError.ErrorType,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(effects.stanzas.count == 1, sourceLocation: sourceLocation)
        #expect(effects.stanzas.first?[attribute: "to"] == real.description, sourceLocation: sourceLocation)
        #expect(effects.stanzas.first?.errorCondition == condition, sourceLocation: sourceLocation)
        #expect(effects.stanzas.first?.errorType == type, sourceLocation: sourceLocation)
        #expect(effects.changes.isEmpty, sourceLocation: sourceLocation)
    }

    @Test(arguments: Affiliation.allCases)
    func anOwnerMaySetAnyAffiliation(affiliation: Affiliation) {
        var test = Self.staffed()
        let effects = test.admin(Cast.romeo, [Self.set("mercutio@montague.example", affiliation.rawValue)])
        #expect(effects.iqs(to: Cast.romeo).first?.type == "result")
        #expect(test.room.affiliation(of: Cast.mercutio, environment: test.environment) == affiliation)
    }

    @Test func anOwnerMayDemoteAnAdmin() {
        var test = Self.staffed()
        test.admin(Cast.romeo, [Self.set("nurse@capulet.example", "none")])
        #expect(test.room.affiliation(of: Cast.nurse, environment: test.environment) == .none)
    }

    /// What an admin tries: (target's current affiliation, the new one, allowed).
    static let adminAttempts: [(Affiliation, Affiliation, Bool)] = [
        (.none, .member, true), (.none, .outcast, true), (.member, .none, true), (.member, .outcast, true),
        (.outcast, .none, true), (.none, .admin, false), (.none, .owner, false), (.admin, .member, false),
        (.admin, .none, false), (.owner, .outcast, false), (.owner, .member, false),
    ]

    @Test(arguments: adminAttempts)
    func anAdminMayOnlyManageThoseBelowAdmin(current: Affiliation, new: Affiliation, allowed: Bool) {
        var test = Self.staffed()
        if current != .none { test.room.affiliations[Cast.tybalt.bare] = AffiliationEntry(current) }
        let effects = test.admin(Cast.nurse, [Self.set("tybalt@capulet.example", new.rawValue)])
        if allowed {
            #expect(effects.iqs(to: Cast.nurse).first?.type == "result")
            #expect(test.room.affiliation(of: Cast.tybalt, environment: test.environment) == new)
        } else {
            Self.expectRefused(effects, to: Cast.nurse, .notAllowed, type: .cancel)
            #expect(test.room.affiliation(of: Cast.tybalt, environment: test.environment) == current)
        }
    }

    @Test(arguments: [Cast.juliet, Cast.benvolio])
    func membersAndParticipantsMayNotChangeAffiliations(actor: JID) {
        var test = Self.staffed()
        let effects = test.admin(actor, [Self.set("mercutio@montague.example", "member")])
        Self.expectRefused(effects, to: actor, .notAllowed, type: .cancel)
        #expect(test.room.affiliations[Cast.mercutio.bare] == nil)
    }

    @Test(arguments: ["admin", "member", "none", "outcast"])
    func theLastOwnerCannotGiveUpOwnership(affiliation: String) {
        var test = Self.staffed()
        let effects = test.admin(Cast.romeo, [Self.set("romeo@montague.example", affiliation)])
        Self.expectRefused(effects, to: Cast.romeo, .conflict, type: .cancel)
        #expect(test.room.affiliation(of: Cast.romeo, environment: test.environment) == .owner)
    }

    @Test func anOwnerWithACoOwnerMayStepDown() {
        var test = Self.staffed()
        test.admin(Cast.romeo, [Self.set("juliet@capulet.example", "owner")])
        let effects = test.admin(Cast.romeo, [Self.set("romeo@montague.example", "admin")])
        #expect(effects.iqs(to: Cast.romeo).first?.type == "result")
        #expect(test.room.affiliation(of: Cast.romeo, environment: test.environment) == .admin)
        #expect(test.room.occupant(real: Cast.romeo)?.role == .moderator)
    }

    @Test func aServiceAdministratorActsAsOwner() {
        var test = Self.staffed()
        let operatorJID = address("prince@verona.example/palace")
        let environment = RoomEnvironment(
            now: { TestRoom.start }, makeID: { "x" }, occupantID: { _, real in real.description },
            isServiceAdmin: { $0 == operatorJID.bare }
        )
        let request = Build.iq(
            "set", from: operatorJID, id: "op1",
            payload: Build.query(Namespace.mucAdmin, [Self.set("tybalt@capulet.example", "outcast")])
        )
        let effects = test.room.handle(request, from: operatorJID, environment: environment)
        #expect(effects.stanzas.last?.type == "result")
        #expect(test.room.affiliations[Cast.tybalt.bare]?.affiliation == .outcast)
    }

    static let invalidItems: [([String: String], StanzaError.Condition)] = [
        (["affiliation": "member"], .badRequest),
        (["affiliation": "member", "jid": "@@"], .jidMalformed),
        (["affiliation": "friend", "jid": "tybalt@capulet.example"], .badRequest),
        (["role": "knight", "nick": "Juliet"], .badRequest),
        (["role": "visitor"], .badRequest),
        (["jid": "tybalt@capulet.example"], .badRequest),
    ]

    @Test(arguments: invalidItems)
    func anInvalidItemIsRefused(attributes: [String: String], condition: StanzaError.Condition) {
        var test = Self.staffed()
        var item = XMLElement("item", namespace: Namespace.mucAdmin)
        for (name, value) in attributes.sorted(by: { $0.key < $1.key }) { item[attribute: name] = value }
        Self.expectRefused(test.admin(Cast.romeo, [item]), to: Cast.romeo, condition, type: .modify)
    }

    @Test func aQueryWithoutItemsIsABadRequest() {
        var test = Self.staffed()
        Self.expectRefused(test.admin(Cast.romeo, []), to: Cast.romeo, .badRequest, type: .modify)
    }

    @Test func oneRefusedItemRefusesTheWholeRequest() {
        var test = Self.staffed()
        let items = [
            Self.set("mercutio@montague.example", "member"), Self.set("benvolio@montague.example", "outcast"),
            Self.set("tybalt@capulet.example", "owner"),
        ]
        Self.expectRefused(test.admin(Cast.nurse, items), to: Cast.nurse, .notAllowed, type: .cancel)
        #expect(test.room.affiliations[Cast.mercutio.bare] == nil)
        #expect(test.room.occupant(real: Cast.benvolio) != nil)
    }

    @Test func severalItemsApplyTogether() {
        var test = Self.staffed()
        let items = [Self.set("mercutio@montague.example", "member"), Self.set("tybalt@capulet.example", "outcast")]
        let effects = test.admin(Cast.romeo, items)
        #expect(effects.changes.count == 2)
        #expect(test.room.affiliations[Cast.mercutio.bare]?.affiliation == .member)
        #expect(test.room.affiliations[Cast.tybalt.bare]?.affiliation == .outcast)
        #expect(effects.stanzas.last?.type == "result")
    }
}
