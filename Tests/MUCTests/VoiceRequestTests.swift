import MUC
import Testing
import XMPPCore

/// XEP-0045 §7.13 (a visitor requests voice) and §8.6 (a moderator approves it).
@Suite struct VoiceRequestTests {
    /// A moderated room: Romeo (owner) and Nurse (admin) moderate; Juliet is a visitor.
    static func moderated() -> TestRoom {
        TestRoom.open(
            { $0.moderated = true }, affiliations: [Cast.nurse: .admin],
            occupants: [(Cast.romeo, "Romeo"), (Cast.nurse, "Nurse"), (Cast.juliet, "Juliet")]
        )
    }

    static func request(from real: JID) -> XMLElement {
        let form = DataForm(
            type: "submit",
            fields: [.init("FORM_TYPE", values: [Namespace.mucRequest]), .init("muc#role", values: ["participant"])]
        )
        return Build.message(from: real, children: [form.element])
    }

    static func approval(from real: JID, nick: String = "Juliet", allow: String = "true") -> XMLElement {
        let form = DataForm(
            type: "submit",
            fields: [
                .init("FORM_TYPE", values: [Namespace.mucRequest]), .init("muc#role", values: ["participant"]),
                .init("muc#jid", values: [Cast.juliet.description]), .init("muc#roomnick", values: [nick]),
                .init("muc#request_allow", values: [allow]),
            ]
        )
        return Build.message(from: real, children: [form.element])
    }

    @Test func everyModeratorGetsTheRequestAsAForm() throws {
        var test = Self.moderated()
        let effects = test.send(Self.request(from: Cast.juliet), from: Cast.juliet)
        #expect(effects.recipients == [Cast.romeo, Cast.nurse].map(\.description), "not the visitor herself")
        let message = try #require(effects.messages(to: Cast.romeo).first)
        #expect(message.type == "normal")
        #expect(message.from == Cast.room.description)
        let form = try #require(message.dataForm)
        #expect(form.type == "form")
        #expect(form.formType == Namespace.mucRequest)
        #expect(form["muc#jid"]?.value == Cast.juliet.description)
        #expect(form["muc#roomnick"]?.value == "Juliet")
        #expect(form["muc#role"]?.value == "participant")
        #expect(form["muc#request_allow"]?.type == "boolean")
        #expect(form["muc#request_allow"]?.value == "0")
        #expect(effects.changes.isEmpty)
    }

    @Test func aModeratorsApprovalGrantsVoice() throws {
        var test = Self.moderated()
        test.send(Self.request(from: Cast.juliet), from: Cast.juliet)
        let effects = test.send(Self.approval(from: Cast.romeo), from: Cast.romeo)
        let seen = try #require(effects.presences(to: Cast.nurse).first)
        #expect(seen.from == "\(Cast.room)/Juliet")
        #expect(seen.mucItem?[attribute: "role"] == "participant")
        #expect(seen.mucItem?.child("actor", namespace: Namespace.mucUser)?[attribute: "nick"] == "Romeo")
        #expect(effects.presences(to: Cast.juliet).first?.mucUserLayout == ["item", "status 110"])
        #expect(test.room.occupant(real: Cast.juliet)?.role == .participant)
        #expect(test.say(Cast.juliet, "Ay me!").stanzas.count == 3)
    }

    @Test(arguments: ["0", "false"])
    func aDeclinedRequestChangesNothing(allow: String) {
        var test = Self.moderated()
        let effects = test.send(Self.approval(from: Cast.romeo, allow: allow), from: Cast.romeo)
        #expect(effects.stanzas.isEmpty)
        #expect(test.room.occupant(real: Cast.juliet)?.role == .visitor)
    }

    @Test func anApprovalForSomeoneWithVoiceChangesNothing() {
        var test = Self.moderated()
        let effects = test.send(Self.approval(from: Cast.romeo, nick: "Nurse"), from: Cast.romeo)
        #expect(effects.stanzas.isEmpty)
        #expect(test.room.occupant(real: Cast.nurse)?.role == .moderator)
    }

    @Test func anApprovalFromSomeoneWhoIsNoModeratorChangesNothing() {
        var test = Self.moderated()
        test.room.affiliations[Cast.mercutio.bare] = AffiliationEntry(.member)
        test.join(Cast.mercutio, nick: "Mercutio")
        let effects = test.send(Self.approval(from: Cast.mercutio), from: Cast.mercutio)
        #expect(effects.stanzas.isEmpty)
        #expect(test.room.occupant(real: Cast.juliet)?.role == .visitor)
    }

    @Test func aParticipantHasNothingToRequest() {
        var test = TestRoom.open(occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")])
        #expect(test.send(Self.request(from: Cast.juliet), from: Cast.juliet).stanzas.isEmpty)
    }

    @Test func aNonOccupantsRequestIsNotAcceptable() {
        var test = Self.moderated()
        let effects = test.send(Self.request(from: Cast.benvolio), from: Cast.benvolio)
        #expect(effects.stanzas.map(\.errorCondition) == [.notAcceptable])
    }
}
