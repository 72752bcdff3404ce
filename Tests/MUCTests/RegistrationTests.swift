import MUC
import Testing
import XMPPCore

/// XEP-0045 §7.10 (registering with a room reserves a nickname) and §7.12 (discovering it).
@Suite struct RegistrationTests {
    static let registerForm = "http://jabber.org/protocol/muc#register"

    /// Romeo owns it and is inside; Juliet is a member, not inside; Tybalt is banned.
    static func withMember(_ configure: (inout RoomConfiguration) -> Void = { _ in }) -> TestRoom {
        TestRoom.open(configure, affiliations: [Cast.juliet: .member, Cast.tybalt: .outcast])
    }

    static func ask(_ test: inout TestRoom, as real: JID) -> XMLElement? {
        let request = Build.iq("get", from: real, id: "reg1", payload: Build.query(Namespace.register))
        let effects = test.send(request, from: real)
        #expect(effects.stanzas.count == 1)
        return effects.stanzas.first
    }

    @discardableResult
    static func reserve(_ test: inout TestRoom, _ nick: String, as real: JID) -> RoomEffects {
        let form = DataForm(
            type: "submit",
            fields: [.init("FORM_TYPE", values: [registerForm]), .init("muc#register_roomnick", values: [nick])]
        )
        let request = Build.iq("set", from: real, id: "reg2", payload: Build.query(Namespace.register, [form.element]))
        return test.send(request, from: real)
    }

    @Test func aMemberGetsTheRegistrationForm() throws {
        var test = Self.withMember()
        let reply = try #require(Self.ask(&test, as: Cast.juliet))
        #expect(reply.type == "result")
        let form = try #require(reply.child("query", namespace: Namespace.register)?.dataForm)
        #expect(form.type == "form")
        #expect(form.formType == Self.registerForm)
        #expect(form["muc#register_roomnick"] != nil)
    }

    /// A new reservation by someone in the room shows it to everyone again (its
    /// presence, no status codes; 110 for itself), as Prosody announces it.
    @Test func reservingWhileInsideResendsThePresence() throws {
        var test = TestRoom.open(affiliations: [Cast.juliet: .member], occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")])
        let effects = Self.reserve(&test, "Jules", as: Cast.juliet)
        #expect(effects.stanzas.last?.type == "result")
        #expect(effects.presences(to: Cast.romeo).count == 1)
        #expect(effects.presences(to: Cast.juliet).last?.statusCodes == [110])
        // The same nick again changes nothing and says nothing more.
        #expect(Self.reserve(&test, "Jules", as: Cast.juliet).stanzas.map(\.type) == ["result"])
    }

    @Test func reservingANickIsStoredAndShown() throws {
        var test = Self.withMember()
        let effects = Self.reserve(&test, "Jules", as: Cast.juliet)
        // Announced as an affiliation change (as Prosody does): Juliet is not in the
        // room, so its moderator hears of it, then she gets her result.
        #expect(effects.stanzas.map(\.type) == [nil, "result"])
        let notice = effects.stanzas[0]
        #expect(notice.name == "message" && notice[attribute: "to"] == Cast.romeo.description)
        let item = notice.child("x", namespace: Namespace.mucUser)?.child("item", namespace: Namespace.mucUser)
        #expect(item?[attribute: "affiliation"] == "member" && item?[attribute: "jid"] == Cast.juliet.bare.description)
        #expect(effects.changes == [.affiliation(Cast.juliet.bare, AffiliationEntry(.member, nick: "Jules"))])
        #expect(test.room.reservation(of: "Jules") == Cast.juliet.bare)
        let query = try #require(Self.ask(&test, as: Cast.juliet)?.child("query", namespace: Namespace.register))
        #expect(query.child("registered", namespace: Namespace.register) != nil)
        #expect(query.child("username", namespace: Namespace.register)?.text == "Jules")
    }

    @Test func theReservedNickCanBeDiscovered() throws {
        var test = Self.withMember()
        Self.reserve(&test, "Jules", as: Cast.juliet)
        var query = Build.query(Namespace.discoInfo)
        query[attribute: "node"] = "x-roomuser-item"
        for (real, name) in [(Cast.juliet, "Jules" as String?), (Cast.mercutio, nil)] {
            let reply = test.send(Build.iq("get", from: real, id: "nick1", payload: query), from: real).stanzas.first
            let result = reply?.child("query", namespace: Namespace.discoInfo)
            #expect(result?[attribute: "node"] == "x-roomuser-item")
            #expect(result?.child("identity", namespace: Namespace.discoInfo)?[attribute: "name"] == name)
        }
    }

    @Test func theMemberListShowsTheNick() throws {
        var test = Self.withMember()
        Self.reserve(&test, "Jules", as: Cast.juliet)
        let request = Build.iq(
            "get", from: Cast.romeo, id: "m",
            payload: Build.query(Namespace.mucAdmin, [Build.item(["affiliation": "member"])])
        )
        let item = test.send(request, from: Cast.romeo).stanzas.first?.child("query")?.child("item")
        #expect(item?[attribute: "jid"] == "juliet@capulet.example")
        #expect(item?[attribute: "nick"] == "Jules")
    }

    @Test func nobodyElseMayEnterWithOrChangeToTheReservedNick() {
        var test = Self.withMember()
        Self.reserve(&test, "Jules", as: Cast.juliet)
        let entering = test.join(Cast.mercutio, nick: "Jules")
        #expect(entering.stanzas.map(\.errorCondition) == [.conflict])
        test.join(Cast.mercutio, nick: "Mercutio")
        let changing = test.send(Build.presence(from: Cast.mercutio, to: "Jules"), from: Cast.mercutio)
        #expect(changing.stanzas.map(\.errorCondition) == [.conflict])
        #expect(test.room.occupant(real: Cast.mercutio)?.nick == "Mercutio")
    }

    @Test func theHolderEntersWithItFromAnyResource() {
        var test = Self.withMember()
        Self.reserve(&test, "Jules", as: Cast.juliet)
        let tomb = address("juliet@capulet.example/tomb")
        #expect(test.join(tomb, nick: "Jules").presences(to: tomb).last?.statusCodes == [110])
    }

    @Test func withoutAnAffiliationRegistrationIsRequired() throws {
        var test = Self.withMember()
        let reply = try #require(Self.ask(&test, as: Cast.mercutio))
        #expect(reply.errorCondition == .registrationRequired)
        #expect(reply.errorType == .auth)
        #expect(
            Self.reserve(&test, "Mercutio", as: Cast.mercutio).stanzas.map(\.errorCondition) == [.registrationRequired])
        #expect(test.room.reservation(of: "Mercutio") == nil)
    }

    @Test func theBannedAreForbidden() throws {
        var test = Self.withMember()
        #expect(try #require(Self.ask(&test, as: Cast.tybalt)).errorCondition == .forbidden)
    }

    @Test func aNickHeldByAnotherIsAConflict() {
        var test = Self.withMember()
        #expect(Self.reserve(&test, "Romeo", as: Cast.juliet).stanzas.map(\.errorCondition) == [.conflict])
        test.room.affiliations[Cast.nurse.bare] = AffiliationEntry(.admin, nick: "Angelica")
        #expect(Self.reserve(&test, "Angelica", as: Cast.juliet).stanzas.map(\.errorCondition) == [.conflict])
        #expect(test.room.affiliations[Cast.juliet.bare]?.nick == nil)
    }

    @Test func anInvalidSubmissionIsABadRequest() {
        var test = Self.withMember()
        #expect(Self.reserve(&test, "", as: Cast.juliet).stanzas.map(\.errorCondition) == [.badRequest])
        let noForm = Build.iq("set", from: Cast.juliet, id: "r", payload: Build.query(Namespace.register))
        #expect(test.send(noForm, from: Cast.juliet).stanzas.map(\.errorCondition) == [.badRequest])
    }

    @Test func aMemberWhoUnregistersGivesUpMembership() {
        var test = Self.withMember()
        Self.reserve(&test, "Jules", as: Cast.juliet)
        let remove = Build.query(Namespace.register, [XMLElement("remove", namespace: Namespace.register)])
        let effects = test.send(Build.iq("set", from: Cast.juliet, id: "unreg", payload: remove), from: Cast.juliet)
        #expect(effects.iqs(to: Cast.juliet).first?.type == "result")
        #expect(effects.changes == [.affiliation(Cast.juliet.bare, AffiliationEntry(.none))])
        #expect(test.room.affiliations[Cast.juliet.bare] == nil)
        #expect(test.room.reservation(of: "Jules") == nil)
    }

    @Test func anOwnerWhoUnregistersStaysOwner() {
        var test = Self.withMember()
        Self.reserve(&test, "Montague", as: Cast.romeo)
        let remove = Build.query(Namespace.register, [XMLElement("remove", namespace: Namespace.register)])
        test.send(Build.iq("set", from: Cast.romeo, id: "unreg", payload: remove), from: Cast.romeo)
        #expect(test.room.affiliations[Cast.romeo.bare] == AffiliationEntry(.owner))
    }

    @Test func aBanDropsTheReservation() {
        var test = Self.withMember()
        Self.reserve(&test, "Jules", as: Cast.juliet)
        test.admin(Cast.romeo, [Build.item(["affiliation": "outcast", "jid": "juliet@capulet.example"])])
        #expect(test.room.reservation(of: "Jules") == nil)
        #expect(test.join(Cast.mercutio, nick: "Jules").presences(to: Cast.mercutio).last?.statusCodes == [110])
    }

    @Test func aPromotionKeepsTheReservation() {
        var test = Self.withMember()
        Self.reserve(&test, "Jules", as: Cast.juliet)
        test.admin(Cast.romeo, [Build.item(["affiliation": "admin", "jid": "juliet@capulet.example"])])
        #expect(test.room.affiliations[Cast.juliet.bare] == AffiliationEntry(.admin, nick: "Jules"))
    }
}
