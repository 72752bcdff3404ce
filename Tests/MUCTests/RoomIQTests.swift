import MUC
import Testing
import XMPPCore

/// IQs to the room and to occupants: XEP-0410 self-ping, XEP-0045 §7.5 IQs between
/// occupants, and the errors for what the room does not do.
@Suite struct RoomIQTests {
    static let ping = XMLElement("ping", namespace: Namespace.ping)

    static func ping(from real: JID, to nick: String, id: String) -> XMLElement {
        Build.iq("get", from: real, to: nick, id: id, payload: ping)
    }

    @Test func aSelfPingIsAnsweredByTheRoom() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.ping(from: Cast.juliet, to: "Juliet", id: "ping1"), from: Cast.juliet)
        let reply = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1, "Juliet's client is not bothered")
        #expect(reply.type == "result")
        #expect(reply.id == "ping1")
        #expect(reply.from == "\(Cast.room)/Juliet")
        #expect(reply[attribute: "to"] == Cast.juliet.description)
        #expect(reply.elements.isEmpty)
    }

    @Test func aSelfPingAfterLeavingIsNotAcceptable() throws {
        var test = TestRoom.twoInside()
        test.leave(Cast.juliet, nick: "Juliet")
        let effects = test.send(Self.ping(from: Cast.juliet, to: "Juliet", id: "ping5"), from: Cast.juliet)
        #expect(effects.stanzas.map(\.errorCondition) == [.notAcceptable])
        #expect(effects.stanzas.first?.errorType == .cancel)
    }

    @Test func anIQToAnotherOccupantIsForwardedAndItsAnswerRoutedBack() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.ping(from: Cast.juliet, to: "Romeo", id: "ping2"), from: Cast.juliet)
        let forwarded = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(forwarded[attribute: "to"] == Cast.romeo.description)
        #expect(forwarded.from == "\(Cast.room)/Juliet", "Romeo does not learn Juliet's real JID")
        #expect(forwarded.type == "get")
        #expect(forwarded.child("ping", namespace: Namespace.ping) != nil)
        let routingID = try #require(forwarded.id)
        #expect(routingID != "ping2")

        var answer = XMLElement("iq", namespace: Namespace.client, ["type": "result", "id": routingID])
        answer[attribute: "from"] = Cast.romeo.description
        answer[attribute: "to"] = "\(Cast.room)/Juliet"
        let back = test.send(answer, from: Cast.romeo)
        let delivered = try #require(back.stanzas.first)
        #expect(back.stanzas.count == 1)
        #expect(delivered[attribute: "to"] == Cast.juliet.description)
        #expect(delivered.from == "\(Cast.room)/Romeo")
        #expect(delivered.id == "ping2")
        #expect(delivered.type == "result")
    }

    /// In a semi-anonymous room a participant must not learn another's real JID from the
    /// id either (Prosody encodes only the recipient's own JID and a hash of the sender's).
    @Test func theForwardedIDDoesNotRevealTheSendersRealJID() throws {
        var test = TestRoom.twoInside()
        test.join(Cast.mercutio, nick: "Mercutio")
        let request = Build.iq("get", from: Cast.juliet, to: "Mercutio", id: "ping6", payload: Self.ping)
        let id = try #require(test.send(request, from: Cast.juliet).stanzas.first?.id)
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
        let decoded = id.split { !alphabet.contains($0) }.compactMap { Base64.decode(String($0)) }
        let revealed = decoded.contains { String(decoding: $0, as: UTF8.self).contains("juliet@capulet.example") }
        #expect(!revealed)
    }

    @Test func anErrorAnswerIsRoutedBackToo() throws {
        var test = TestRoom.twoInside()
        let version = XMLElement("query", namespace: Namespace.version)
        let forwarded = try #require(
            test.send(Build.iq("get", from: Cast.juliet, to: "Romeo", id: "v1", payload: version), from: Cast.juliet)
                .stanzas.first
        )
        var answer = forwarded.errorReply(StanzaError(.serviceUnavailable))
        answer[attribute: "from"] = Cast.romeo.description
        answer[attribute: "to"] = "\(Cast.room)/Juliet"
        let delivered = try #require(test.send(answer, from: Cast.romeo).stanzas.first)
        #expect(delivered.id == "v1")
        #expect(delivered[attribute: "to"] == Cast.juliet.description)
        #expect(delivered.errorCondition == .serviceUnavailable)
    }

    @Test func anAnswerWithAnUnknownIDIsDropped() {
        var test = TestRoom.twoInside()
        var answer = XMLElement("iq", namespace: Namespace.client, ["type": "result", "id": "made-up"])
        answer[attribute: "to"] = "\(Cast.room)/Juliet"
        #expect(test.send(answer, from: Cast.romeo).stanzas.isEmpty)
    }

    @Test func aNonOccupantMayNotSendIQsToOccupants() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.ping(from: Cast.mercutio, to: "Juliet", id: "ping4"), from: Cast.mercutio)
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error[attribute: "to"] == Cast.mercutio.description)
        #expect(error.from == "\(Cast.room)/Juliet")
        #expect(error.errorCondition == .notAcceptable)
        #expect(error.errorType == .cancel)
    }

    @Test func anUnknownNickIsItemNotFound() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.ping(from: Cast.juliet, to: "Tybalt", id: "ping3"), from: Cast.juliet)
        let error = try #require(effects.stanzas.first)
        #expect(error.from == "\(Cast.room)/Tybalt")
        #expect(error.errorCondition == .itemNotFound)
        #expect(error.errorType == .cancel)
    }

    @Test func aPingToTheRoomIsAnswered() {
        var test = TestRoom.twoInside()
        let effects = test.send(Build.iq("get", from: Cast.mercutio, id: "p", payload: Self.ping), from: Cast.mercutio)
        #expect(effects.stanzas.map(\.type) == ["result"])
    }

    @Test func anUnknownIQIsServiceUnavailable() throws {
        var test = TestRoom.twoInside()
        let version = XMLElement("query", namespace: Namespace.version)
        let error = try #require(
            test.send(Build.iq("get", from: Cast.juliet, id: "v", payload: version), from: Cast.juliet).stanzas.first)
        #expect(error.id == "v")
        #expect(error.errorCondition == .serviceUnavailable)
        #expect(error.errorType == .cancel)
    }

    @Test(arguments: [[], [ping, XMLElement("query", namespace: Namespace.discoInfo)]] as [[XMLElement]])
    func anIQWithoutExactlyOnePayloadIsABadRequest(payload: [XMLElement]) throws {
        var test = TestRoom.twoInside()
        var iq = Build.iq("get", from: Cast.juliet, id: "e", payload: nil)
        for element in payload { iq.append(element) }
        let error = try #require(test.send(iq, from: Cast.juliet).stanzas.first)
        #expect(error.errorCondition == .badRequest)
        #expect(error.errorType == .modify)
    }

    @Test(arguments: ["result", "error"])
    func answersToTheRoomItselfAreIgnored(type: String) {
        var test = TestRoom.twoInside()
        #expect(test.send(Build.iq(type, from: Cast.juliet, id: "x", payload: nil), from: Cast.juliet).stanzas.isEmpty)
    }
}
