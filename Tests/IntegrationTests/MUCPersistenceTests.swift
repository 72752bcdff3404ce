import NIOCore
import PostgresNIO
import ServerRuntime
import Testing
import XMPPCore
import XMPPStream

/// Rooms, affiliations, subject and history live in PostgreSQL: a restarted node
/// (here: a new node on the same database) continues them.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(2)))
struct MUCPersistenceTests {
    let room = "persist\(UInt32.random(in: 0...UInt32.max))@conference.localhost"

    func join(_ client: XMPPClient, nick: String, history: XMLElement? = nil) {
        var x = XMLElement("x", namespace: Namespace.muc)
        if let history { x.append(history) }
        client.send(XMLElement("presence", namespace: Namespace.client, ["to": "\(room)/\(nick)"], children: [x]))
    }

    func configure(_ client: XMPPClient, _ fields: [(String, String)]) async throws -> XMLElement {
        let form = DataForm(
            type: "submit",
            fields: [.init("FORM_TYPE", values: [Namespace.mucRoomConfig])] + fields.map { .init($0.0, values: [$0.1]) }
        )
        return try await client.iq("set", to: room, XMLElement("query", namespace: Namespace.mucOwner, children: [form.element]))
    }

    @Test func aPersistentRoomSurvivesARestart() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        let juliet = try await TestDatabase.shared.makeAccount()
        let first = try await TestNode.start()
        let owner = try await first.login(romeo)
        join(owner, nick: "Romeo")
        let created = try await owner.receive { $0.name == "presence" }
        #expect(created.child("x", namespace: Namespace.mucUser)?.children("status").map { $0[attribute: "code"] } == ["201", "110"])
        _ = try await owner.receive { $0.child("subject") != nil }
        let configured = try await configure(
            owner, [("muc#roomconfig_persistentroom", "1"), ("muc#roomconfig_membersonly", "1"), ("muc#roomconfig_roomname", "Capulet Hall")]
        )
        #expect(configured.type == "result")
        let member = try await owner.iq(
            "set", to: room,
            XMLElement("query", namespace: Namespace.mucAdmin, children: [
                XMLElement("item", namespace: Namespace.mucAdmin, ["affiliation": "member", "jid": juliet.description])
            ])
        )
        #expect(member.type == "result")
        owner.send(
            XMLElement("message", namespace: Namespace.client, ["to": room, "type": "groupchat"],
                       children: [XMLElement("subject", namespace: Namespace.client, text: "The feast")])
        )
        _ = try await owner.receive { $0.child("subject")?.text == "The feast" }
        for text in ["one", "two", "three"] {
            owner.send(
                XMLElement("message", namespace: Namespace.client, ["to": room, "type": "groupchat", "id": text],
                           children: [XMLElement("body", namespace: Namespace.client, text: text)])
            )
            _ = try await owner.receive { $0.name == "message" && $0.id == text }
        }
        await owner.close()
        await first.stop()

        // A new node on the same database.
        let second = try await TestNode.start()
        let guest = try await second.login(juliet)
        join(guest, nick: "Juliet")
        let own = try await guest.receive { $0.name == "presence" && $0[attribute: "from"] == "\(room)/Juliet" }
        let item = own.child("x", namespace: Namespace.mucUser)?.child("item")
        #expect(item?[attribute: "affiliation"] == "member")
        var bodies: [String] = []
        var subject: XMLElement?
        while subject == nil {
            let message = try await guest.receive { $0.name == "message" }
            if let body = message.child("body")?.text {
                bodies.append(body)
                #expect(message.child("delay", namespace: Namespace.delay)?[attribute: "from"] == room)
            } else {
                subject = message
            }
        }
        #expect(bodies == ["one", "two", "three"])
        #expect(subject?.child("subject")?.text == "The feast")
        // Still members-only, still Romeo's: a stranger is refused.
        let stranger = try await second.login(try await TestDatabase.shared.makeAccount())
        join(stranger, nick: "Tybalt")
        let refused = try await stranger.receive { $0.name == "presence" }
        #expect(refused.stanzaError?.condition == .registrationRequired)
        let owners = try await guest.iq(
            "get", to: room,
            XMLElement("query", namespace: Namespace.mucAdmin, children: [XMLElement("item", namespace: Namespace.mucAdmin, ["affiliation": "owner"])])
        )
        #expect(owners.stanzaError?.condition == .forbidden)
        await guest.close()
        await stranger.close()
        await second.stop()
    }

    @Test func aTemporaryRoomIsGoneWhenTheLastOccupantLeaves() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let client = try await node.login(romeo)
            join(client, nick: "Romeo")
            _ = try await client.receive { $0.child("subject") != nil }
            #expect(try await configure(client, [("muc#roomconfig_roomname", "Brief")]).type == "result")
            client.send(XMLElement("presence", namespace: Namespace.client, ["to": "\(room)/Romeo", "type": "unavailable"]))
            _ = try await client.receive { $0.name == "presence" && $0.type == "unavailable" }
            // Joining again creates it anew (201), locked like any new room.
            join(client, nick: "Romeo")
            let again = try await client.receive { $0.name == "presence" }
            #expect(again.child("x", namespace: Namespace.mucUser)?.children("status").map { $0[attribute: "code"] } == ["201", "110"])
            await client.close()
        }
        let rows = try await TestDatabase.shared.connected().query("SELECT count(*) FROM rooms WHERE jid = \(room)")
        for try await count in rows.decode(Int.self) { #expect(count == 0) }
    }

    @Test func shuttingDownTellsOccupants332() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        let node = try await TestNode.start()
        let client = try await node.login(romeo)
        join(client, nick: "Romeo")
        _ = try await client.receive { $0.child("subject") != nil }
        async let stopped: Void = node.stop()
        let gone = try await client.receive { $0.name == "presence" && $0.type == "unavailable" }
        let codes = gone.child("x", namespace: Namespace.mucUser)?.children("status").map { $0[attribute: "code"] }
        #expect(codes == ["332", "110"])
        #expect(try await client.receiveStreamError().condition == .systemShutdown)
        await stopped
    }

    @Test func restrictedRoomCreationIsForAdminsOnly() async throws {
        let admin = try await TestDatabase.shared.makeAccount()
        let user = try await TestDatabase.shared.makeAccount()
        try await withNode({
            $0.mucAdmins = [admin.description]
            $0.mucRestrictRoomCreation = true
        }) { node in
            let refused = try await node.login(user)
            join(refused, nick: "Tybalt")
            let error = try await refused.receive { $0.name == "presence" }
            #expect(error.stanzaError?.condition == .notAllowed)
            let allowed = try await node.login(admin)
            join(allowed, nick: "Prince")
            let created = try await allowed.receive { $0.name == "presence" }
            #expect(created.child("x", namespace: Namespace.mucUser)?.child("item")?[attribute: "affiliation"] == "owner")
            await refused.close()
            await allowed.close()
        }
    }
}
