import MUC
import Testing
import XMPPCore

/// XEP-0045 §7.4 (messages to all occupants), XEP-0359 stanza-id and XEP-0421 occupant-id.
@Suite struct GroupchatTests {
    @Test func aMessageReachesEveryOccupantSenderIncluded() throws {
        var test = TestRoom.twoInside()
        let effects = test.say(Cast.juliet, "What's in a name?", id: "gc1")
        #expect(effects.recipients == [Cast.romeo, Cast.juliet].map(\.description))
        for real in [Cast.romeo, Cast.juliet] {
            let message = try #require(effects.messages(to: real).first)
            #expect(message.type == "groupchat")
            #expect(message.id == "gc1")
            #expect(message.from == "\(Cast.room)/Juliet")
            #expect(message.body == "What's in a name?")
        }
    }

    @Test func theRoomAddsItsStanzaIDAndTheSendersOccupantID() throws {
        var test = TestRoom.twoInside()
        let message = try #require(test.say(Cast.juliet, "Hello").messages(to: Cast.romeo).first)
        let stanzaID = try #require(message.child("stanza-id", namespace: Namespace.stanzaID))
        #expect(stanzaID[attribute: "id"] == "sid-1")
        #expect(stanzaID[attribute: "by"] == Cast.room.description)
        #expect(message.child("occupant-id", namespace: Namespace.occupantID)?[attribute: "id"] == "juliet@verona")
    }

    @Test func everyCopyCarriesTheSameStanzaIDAndEachMessageANewOne() {
        var test = TestRoom.twoInside()
        let first = test.say(Cast.juliet, "One")
        let second = test.say(Cast.romeo, "Two")
        let ids = (first.stanzas + second.stanzas).map {
            $0.child("stanza-id", namespace: Namespace.stanzaID)?[attribute: "id"]
        }
        #expect(ids == ["sid-1", "sid-1", "sid-2", "sid-2"])
    }

    @Test func forgedStanzaAndOccupantIDsAreRemoved() throws {
        var test = TestRoom.twoInside()
        let forged = Build.message(
            from: Cast.juliet, type: "groupchat", body: "Trust me",
            children: [
                XMLElement("stanza-id", namespace: Namespace.stanzaID, ["id": "forged", "by": Cast.room.description]),
                XMLElement("occupant-id", namespace: Namespace.occupantID, ["id": "romeo@verona"]),
            ]
        )
        let message = try #require(test.send(forged, from: Cast.juliet).messages(to: Cast.romeo).first)
        #expect(message.children("stanza-id", namespace: Namespace.stanzaID).map { $0[attribute: "id"] } == ["sid-1"])
        #expect(
            message.children("occupant-id", namespace: Namespace.occupantID).map { $0[attribute: "id"] } == [
                "juliet@verona"
            ])
    }

    /// XEP-0359 §3: the sender's `<origin-id/>` is how its client recognises the
    /// reflected copy; Prosody strips only `<stanza-id by='room'/>` and keeps it.
    @Test func theSendersOriginIDIsKept() throws {
        var test = TestRoom.twoInside()
        let message = Build.message(
            from: Cast.juliet, type: "groupchat", id: "gc7", body: "Mine",
            children: [XMLElement("origin-id", namespace: Namespace.stanzaID, ["id": "de305d54"])]
        )
        let reflected = try #require(test.send(message, from: Cast.juliet).messages(to: Cast.juliet).first)
        #expect(reflected.child("origin-id", namespace: Namespace.stanzaID)?[attribute: "id"] == "de305d54")
    }

    @Test func theMessageIsKeptInHistory() throws {
        var test = TestRoom.twoInside()
        let effects = test.say(Cast.juliet, "Remember me")
        let entry = try #require(test.room.history.last)
        #expect(entry.senderNick == "Juliet")
        #expect(entry.stamp == TestRoom.start)
        #expect(entry.message.body == "Remember me")
        #expect(entry.message.from == "\(Cast.room)/Juliet")
        #expect(entry.message[attribute: "to"] == nil)
        #expect(effects.changes == [.history(entry)])
    }

    @Test func historyIsTrimmedToItsLength() {
        var test = TestRoom.twoInside { $0.historyLength = 3 }
        for index in 1...5 { test.say(Cast.romeo, "line \(index)") }
        #expect(test.room.history.map(\.message.body) == ["line 3", "line 4", "line 5"])
    }

    @Test func aRoomWithoutHistoryKeepsNothing() {
        var test = TestRoom.twoInside { $0.historyLength = 0 }
        let effects = test.say(Cast.romeo, "Forget me")
        #expect(test.room.history.isEmpty)
        #expect(effects.changes.isEmpty)
        #expect(effects.stanzas.count == 2, "but the message is still delivered")
    }

    @Test func aMessageWithoutBodyIsRelayedButNotKept() {
        var test = TestRoom.twoInside()
        let active = XMLElement("active", namespace: "http://jabber.org/protocol/chatstates")
        let effects = test.send(
            Build.message(from: Cast.juliet, type: "groupchat", children: [active]), from: Cast.juliet)
        #expect(effects.stanzas.count == 2)
        #expect(test.room.history.isEmpty)
        #expect(effects.changes.isEmpty)
    }

    @Test func aNonOccupantIsNotAcceptable() throws {
        var test = TestRoom.twoInside()
        let effects = test.say(Cast.mercutio, "A plague o' both your houses!", id: "gc3")
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error[attribute: "to"] == Cast.mercutio.description)
        #expect(error.from == Cast.room.description)
        #expect(error.id == "gc3")
        #expect(error.errorCondition == .notAcceptable)
        #expect(error.errorType == .cancel)
        #expect(test.room.history.isEmpty)
    }

    @Test func aVisitorInAModeratedRoomIsForbidden() throws {
        var test = TestRoom.twoInside { $0.moderated = true }
        test.join(Cast.mercutio, nick: "Mercutio")
        let effects = test.say(Cast.mercutio, "Ay me!", id: "gc4")
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error.errorCondition == .forbidden)
        #expect(error.errorType == .auth)
        #expect(test.room.history.isEmpty)
    }

    /// A room takes groupchat, invitations, declines and voice requests; any other
    /// message to it, from an occupant or not, is a service it does not offer (Prosody).
    @Test(arguments: ["chat", "normal", "headline"], [Cast.juliet, Cast.mercutio])
    func anotherTypeToTheRoomIsNoServiceOfIt(type: String, sender: JID) throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.message(from: sender, type: type, id: "m1", body: "Hi"), from: sender)
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error.errorCondition == .serviceUnavailable)
        #expect(error.errorType == .cancel)
    }

    @Test func aMUCPayloadThatIsNeitherInvitationNorDeclineIsABadRequest() throws {
        var test = TestRoom.twoInside()
        let x = XMLElement("x", namespace: Namespace.mucUser, children: [XMLElement("item", namespace: Namespace.mucUser)])
        let effects = test.send(Build.message(from: Cast.juliet, children: [x]), from: Cast.juliet)
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error.errorCondition == .badRequest)
        #expect(error.errorType == .cancel)
    }

    static func bounce(from real: JID, to nick: String? = nil, _ condition: StanzaError.Condition) -> XMLElement {
        Build.message(from: real, to: nick, type: "error", children: [StanzaError(condition).element])
    }

    @Test(arguments: [String?.none, "Romeo"])
    func aBouncedMessageRemovesTheOccupantWith333(nick: String?) {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.bounce(from: Cast.juliet, to: nick, .recipientUnavailable), from: Cast.juliet)
        #expect(effects.presences(to: Cast.romeo).first?.type == "unavailable")
        #expect(effects.presences(to: Cast.romeo).first?.statusCodes.contains(333) == true)
        #expect(test.room.occupants.map(\.nick) == ["Romeo"])
    }

    /// Prosody removes an occupant only for errors that mean its client is gone
    /// (is_kickable_error: gone, item-not-found, recipient-unavailable, remote-server-*,
    /// service-unavailable…), not for a client refusing one message.
    @Test(arguments: [StanzaError.Condition.notAcceptable, .policyViolation, .featureNotImplemented])
    func aMessageRefusedByTheClientDoesNotRemoveTheOccupant(condition: StanzaError.Condition) {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.bounce(from: Cast.juliet, to: "Romeo", condition), from: Cast.juliet)
        #expect(effects.stanzas.isEmpty)
        #expect(test.room.occupants.map(\.nick) == ["Romeo", "Juliet"])
    }

    @Test func aBouncedMessageFromANonOccupantIsIgnored() {
        var test = TestRoom.twoInside()
        #expect(test.send(Self.bounce(from: Cast.mercutio, .recipientUnavailable), from: Cast.mercutio).stanzas.isEmpty)
    }
}
