import MUC
import Testing
import XMPPCore

/// XEP-0045 §7.5: private messages between occupants, and muc#roomconfig_allowpm.
@Suite struct PrivateMessageTests {

    static func whisper(_ real: JID, to nick: String, type: String = "chat", id: String = "pm1") -> XMLElement {
        Build.message(from: real, to: nick, type: type, id: id, body: "Good night, good night!")
    }

    @Test func itGoesFromTheOccupantJIDToTheRealJID() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.whisper(Cast.juliet, to: "Romeo"), from: Cast.juliet)
        let message = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1, "not reflected to the sender")
        #expect(message[attribute: "to"] == Cast.romeo.description)
        #expect(message.from == "\(Cast.room)/Juliet")
        #expect(message.type == "chat")
        #expect(message.id == "pm1")
        #expect(message.body == "Good night, good night!")
        #expect(message.mucUser?.children.isEmpty == true, "an empty muc#user <x/> marks it as a MUC PM")
    }

    /// Prosody strips the sender's muc#user elements (muc_util.filter_muc_x) before adding
    /// its own: otherwise an occupant can hand the recipient a forged real JID or status.
    @Test func aForgedMUCUserElementIsNotPassedOn() throws {
        var test = TestRoom.twoInside()
        test.join(Cast.mercutio, nick: "Mercutio")
        let item = XMLElement(
            "item", namespace: Namespace.mucUser, ["jid": Cast.romeo.description, "affiliation": "owner"])
        let forged = Build.message(
            from: Cast.mercutio, to: "Juliet", type: "chat", body: "Trust me",
            children: [XMLElement("x", namespace: Namespace.mucUser, children: [item])]
        )
        let delivered = try #require(test.send(forged, from: Cast.mercutio).stanzas.first)
        #expect(delivered.children("x", namespace: Namespace.mucUser).count == 1)
        #expect(delivered.mucUser?.children.isEmpty == true)
    }

    @Test func itIsNotKeptInHistory() {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.whisper(Cast.juliet, to: "Romeo"), from: Cast.juliet)
        #expect(effects.changes.isEmpty)
        #expect(test.room.history.isEmpty)
    }

    @Test func anUnknownNickIsItemNotFound() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.whisper(Cast.juliet, to: "Tybalt", id: "pm3"), from: Cast.juliet)
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error[attribute: "to"] == Cast.juliet.description)
        #expect(error.from == "\(Cast.room)/Tybalt")
        #expect(error.id == "pm3")
        #expect(error.errorCondition == .itemNotFound)
        #expect(error.errorType == .cancel)
    }

    @Test func groupchatToANickIsABadRequest() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.whisper(Cast.juliet, to: "Romeo", type: "groupchat", id: "pm4"), from: Cast.juliet)
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error[attribute: "to"] == Cast.juliet.description)
        #expect(error.errorCondition == .badRequest)
        #expect(error.errorType == .modify)
    }

    @Test func aNonOccupantIsNotAcceptable() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.whisper(Cast.mercutio, to: "Juliet"), from: Cast.mercutio)
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error[attribute: "to"] == Cast.mercutio.description)
        #expect(error.from == "\(Cast.room)/Juliet")
        #expect(error.errorCondition == .notAcceptable)
        #expect(error.errorType == .cancel)
    }

    @Test func allowPMNoneRefusesEveryone() throws {
        var test = TestRoom.twoInside { $0.allowPM = .none }
        for (sender, target) in [(Cast.juliet, "Romeo"), (Cast.romeo, "Juliet")] {
            let effects = test.send(Self.whisper(sender, to: target), from: sender)
            #expect(effects.stanzas.count == 1)
            #expect(effects.stanzas.first?[attribute: "to"] == sender.description)
            #expect(effects.stanzas.first?.errorCondition == .notAcceptable)
        }
    }

    /// Who may send a PM under each `allowpm` setting: (setting, sender's role, allowed).
    static let audiences: [(RoomConfiguration.Audience, Role, Bool)] = [
        (.anyone, .visitor, true), (.participants, .visitor, false), (.participants, .participant, true),
        (.moderators, .participant, false), (.moderators, .moderator, true),
    ]

    @Test(arguments: audiences)
    func allowPMLimitsSendersByRole(audience: RoomConfiguration.Audience, role: Role, allowed: Bool) {
        var test = TestRoom.twoInside {
            $0.allowPM = audience
            $0.moderated = true
        }
        let sender: JID
        switch role {
        case .moderator: sender = Cast.romeo
        case .participant:
            sender = Cast.nurse
            test.room.affiliations[Cast.nurse.bare] = AffiliationEntry(.member)
            test.join(Cast.nurse, nick: "Nurse")
        default:
            sender = Cast.mercutio
            test.join(Cast.mercutio, nick: "Mercutio")
        }
        #expect(test.room.occupant(real: sender)?.role == role)
        let effects = test.send(Self.whisper(sender, to: "Juliet"), from: sender)
        #expect((effects.stanzas.first?[attribute: "to"] == Cast.juliet.description) == allowed)
        #expect((effects.stanzas.first?.errorCondition == .notAcceptable) == !allowed)
    }

    @Test func aPrivateMessageFromAVisitorNeedsNoVoice() {
        var test = TestRoom.twoInside { $0.moderated = true }
        test.join(Cast.mercutio, nick: "Mercutio")
        let effects = test.send(Self.whisper(Cast.mercutio, to: "Juliet"), from: Cast.mercutio)
        #expect(effects.stanzas.first?[attribute: "to"] == Cast.juliet.description)
    }
}
