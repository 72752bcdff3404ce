import NIOCore
import ServerRuntime
import Testing
import XMPPCore
import XMPPStream

/// A session's node learns from the room's owner which rooms the session is in (the
/// `membership` the room says after handling), and makes the session leave them when it
/// ends: the others see it go, and the room keeps no ghost.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(2)))
struct RoomMembershipTests {
    let room = "members\(UInt32.random(in: 0...UInt32.max))@conference.localhost"

    func join(_ client: XMPPClient, nick: String) {
        client.send(
            XMLElement("presence", namespace: Namespace.client, ["to": "\(room)/\(nick)"], children: [XMLElement("x", namespace: Namespace.muc)]))
    }

    func say(_ client: XMPPClient, _ text: String) {
        client.send(
            XMLElement(
                "message", namespace: Namespace.client, ["to": room, "type": "groupchat", "id": text],
                children: [XMLElement("body", namespace: Namespace.client, text: text)]))
    }

    /// Romeo leaves with an unavailable presence (his session goes on), joins again, and
    /// then disconnects: the second join is kept (he speaks in the room), and his
    /// disconnect makes him leave it.
    @Test func aSessionThatLeftAndJoinedAgainLeavesWhenItEnds() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        let juliet = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let nurse = try await node.login(juliet)
            join(nurse, nick: "Juliet")
            _ = try await nurse.receive { $0.child("subject") != nil }
            // An instant room (XEP-0045 §10.1.2): unlocked for the others.
            let unlocked = try await nurse.iq(
                "set", to: room,
                XMLElement("query", namespace: Namespace.mucOwner, children: [XMLElement("x", namespace: Namespace.dataForms, ["type": "submit"])]))
            #expect(unlocked.type == "result")
            let client = try await node.login(romeo)
            join(client, nick: "Romeo")
            _ = try await nurse.receive { $0.name == "presence" && $0[attribute: "from"] == "\(room)/Romeo" && $0.type == nil }
            _ = try await client.receive { $0.child("subject") != nil }

            // Unavailable to everyone: he leaves every room, and the session stays.
            client.send(XMLElement("presence", namespace: Namespace.client, ["type": "unavailable"]))
            let left = try await nurse.receive { $0.name == "presence" && $0[attribute: "from"] == "\(room)/Romeo" }
            #expect(left.type == "unavailable")

            // In again, and still in after the join: his message reaches Juliet.
            join(client, nick: "Romeo")
            let back = try await nurse.receive { $0.name == "presence" && $0[attribute: "from"] == "\(room)/Romeo" }
            #expect(back.type == nil)
            _ = try await client.receive { $0.child("subject") != nil }
            say(client, "still here")
            let heard = try await nurse.receive { $0.name == "message" && $0.id == "still here" }
            #expect(heard.type == "groupchat", "\(heard)")

            // His session ends: the room sees him go.
            await client.close()
            let gone = try await nurse.receive { $0.name == "presence" && $0[attribute: "from"] == "\(room)/Romeo" }
            #expect(gone.type == "unavailable")
            await nurse.close()
        }
    }
}
