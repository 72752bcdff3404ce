import Logging
import NIOCore
import PostgresNIO
import ServerRuntime
import Testing
import XMPPCore
import XMPPStream

/// A node whose rooms' writer falls behind PostgreSQL: it slows the senders (reading them
/// waits), says it is overloaded on `/readyz`, refuses new messages with an error the
/// sender sees once the backlog is four times its mark, and comes out of it by itself
/// when the store catches up, having stored every message it accepted once.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(2)))
struct OverloadTests {
    let room = "overload\(UInt32.random(in: 0...UInt32.max))@conference.localhost"

    func say(_ client: XMPPClient, id: String, bytes: Int) {
        client.send(
            XMLElement(
                "message", namespace: Namespace.client, ["to": room, "type": "groupchat", "id": id],
                children: [XMLElement("body", namespace: Namespace.client, text: id + String(repeating: "x", count: bytes))]))
    }

    func metric(_ name: String, _ node: TestNode) async throws -> Double {
        let text = try await AdminHTTPTests.get("/metrics", port: try #require(node.ports.http)).body
        return AdminHTTPTests.sample(name, in: text) ?? -1
    }

    @Test func aWriterThatFallsBehindSlowsItsSendersShedsAndRecoversByItself() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        let client = try await TestDatabase.shared.connected()
        let logger = TestEnvironment.logger
        try await withNode({ $0.limits.roomWriterBacklogBytes = 64 * 1024 }) { node in
            let http = try #require(node.ports.http)
            let sender = try await node.login(romeo)
            sender.send(
                XMLElement(
                    "presence", namespace: Namespace.client, ["to": "\(room)/Romeo"], children: [XMLElement("x", namespace: Namespace.muc)]))
            _ = try await sender.receive { $0.child("subject") != nil }
            let unlocked = try await sender.iq(
                "set", to: room,
                XMLElement("query", namespace: Namespace.mucOwner, children: [XMLElement("x", namespace: Namespace.dataForms, ["type": "submit"])]))
            #expect(unlocked.type == "result")
            #expect(try await AdminHTTPTests.get("/readyz", port: http).status == 200)

            let other = "overload\(UInt32.random(in: 0...UInt32.max))@conference.localhost"
            var accepted: [String] = []
            var refused: [XMLElement] = []
            try await client.withConnection { holder in
                // The room's writes take its ownership row FOR SHARE: held FOR UPDATE here,
                // every write of this room waits (as behind a PostgreSQL that stalls).
                _ = try await holder.query("BEGIN", logger: logger).collect()
                _ = try await holder.query("SELECT 1 FROM room_owners WHERE room = \(room) FOR UPDATE", logger: logger).collect()
                // About 100 KiB a message: the first takes the backlog past its mark (64 KiB),
                // the third past four times it; the fourth is refused.
                for index in 1...5 {
                    let id = "big\(index)"
                    say(sender, id: id, bytes: 100 * 1024)
                    let answer = try await sender.receive { $0.name == "message" && $0.id == id }
                    if answer.type == "error" { refused.append(answer) } else { accepted.append(id) }
                }
                #expect(accepted == ["big1", "big2", "big3"], "\(accepted)")
                let error = try #require(refused.first?.stanzaError)
                #expect(error.condition == .resourceConstraint && error.type == .wait, "\(refused)")
                #expect(error.text?.contains("overloaded") == true)

                let ready = try await AdminHTTPTests.get("/readyz", port: http)
                #expect(ready.status == 503)
                #expect(ready.body.contains("overloaded:") && ready.body.contains("room changes wait for PostgreSQL"), "\(ready.body)")
                #expect(try await metric("conclave_room_writer_backlog_bytes", node) > 256 * 1024)
                #expect(try await metric("conclave_pressured_reads_total", node) >= 1)
                #expect(try await metric("conclave_room_input_shed_total", node) >= 2)
                // Far behind: a join that would create a room is refused as a join, and no
                // room is made; an occupant's presence update still goes through.
                sender.send(
                    XMLElement(
                        "presence", namespace: Namespace.client, ["to": "\(other)/Romeo"], children: [XMLElement("x", namespace: Namespace.muc)]))
                let joinRefused = try await sender.receive { $0.name == "presence" && $0[attribute: "from"] == "\(other)/Romeo" }
                #expect(joinRefused.type == "error" && joinRefused.stanzaError?.condition == .resourceConstraint, "\(joinRefused)")
                #expect(joinRefused.child("x", namespace: Namespace.muc) != nil, "a refused join says so: \(joinRefused)")
                sender.send(
                    XMLElement(
                        "presence", namespace: Namespace.client, ["to": "\(room)/Romeo"],
                        children: [XMLElement("x", namespace: Namespace.muc), XMLElement("show", namespace: Namespace.client, text: "away")]))
                let away = try await sender.receive { $0.name == "presence" && $0[attribute: "from"] == "\(room)/Romeo" }
                #expect(away.type == nil && away.child("show")?.text == "away", "\(away)")
                // The node still serves its sessions: a ping is answered.
                #expect(try await sender.ping().type == "result")
                _ = try await holder.query("ROLLBACK", logger: logger).collect()
            }

            // The store answers again: the backlog drains and the node is ready by itself.
            let deadline = ContinuousClock.now + .seconds(30)
            while try await AdminHTTPTests.get("/readyz", port: http).status != 200 {
                guard ContinuousClock.now < deadline else {
                    Issue.record("the node never came out of overload")
                    break
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(try await metric("conclave_room_writer_backlog_bytes", node) < 32 * 1024)
            say(sender, id: "after", bytes: 10)
            #expect(try await sender.receive { $0.name == "message" && $0.id == "after" }.type == "groupchat")

            let roomsMade = try await client.query("SELECT count(*)::int8 FROM rooms WHERE jid = \(other)", logger: logger).decode(Int64.self)
            for try await count in roomsMade { #expect(count == 0, "no room was made by the refused join") }
            // Every accepted message is in the stored history once; the refused ones are not.
            var stanzas: [String] = []
            for try await (stanza) in try await client.query("SELECT stanza FROM room_history WHERE room = \(room)", logger: logger)
                .decode(String.self)
            {
                stanzas.append(stanza)
            }
            for index in 1...5 {
                let copies = stanzas.filter { $0.contains("<body>big\(index)x") }.count
                #expect(copies == (index <= 3 ? 1 : 0), "big\(index) stored \(copies) time(s)")
            }
            await sender.close()
        }
    }
}
