import Cluster
import Foundation
import Testing
import ServerRuntime
import XMPPCore
import XMPPStream

/// `/healthz`, `/readyz` and `/metrics` on a real node.
@Suite(.enabled(if: TestEnvironment.hasDatabase))
struct AdminHTTPTests {
    static func get(_ path: String, port: Int) async throws -> (status: Int, body: String) {
        let connection = try await RawConnection.connect(port: port)
        let answer = try await connection.exchange("GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        let status = Int(answer.split(separator: " ").dropFirst().first ?? "") ?? 0
        let body = answer.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        return (status, body)
    }

    /// A metric's value, from its line in the exposition.
    static func value(_ name: String, in body: String) -> Double? {
        body.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.dropFirst(name.count + 1)) }
    }

    @Test func aRunningNodeIsHealthyReadyAndCountsItsSessionsAndRooms() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let port = try #require(node.ports.http)
            #expect(try await Self.get("/healthz", port: port).status == 200)
            let ready = try await Self.get("/readyz", port: port)
            #expect(ready.status == 200, "\(ready.body)")
            let client = try await node.login(romeo)
            let room = "metrics\(UInt32.random(in: 0...UInt32.max))@conference.localhost"
            client.send(
                XMLElement(
                    "presence", namespace: Namespace.client, ["to": "\(room)/Romeo"],
                    children: [XMLElement("x", namespace: Namespace.muc)]
                )
            )
            _ = try await client.receive { $0.child("subject") != nil }
            let metrics = try await Self.get("/metrics", port: port)
            #expect(metrics.status == 200)
            #expect(metrics.body.contains("# TYPE conclave_sessions gauge"))
            #expect(metrics.body.contains("\nconclave_sessions 1\n"), "\(metrics.body)")
            // On a database earlier runs left rooms in, the node also takes up rooms their
            // nodes left behind: at least this one, then.
            #expect(Self.value("conclave_rooms_owned", in: metrics.body) ?? 0 >= 1, "\(metrics.body)")
            #expect(metrics.body.contains("\nconclave_occupants 1\n"), "\(metrics.body)")
            #expect(Self.value("conclave_room_activations_total", in: metrics.body) ?? 0 >= 1, "\(metrics.body)")
            await client.close()
        }
    }

    /// A sample's value in Prometheus text, e.g. `conclave_stanzas_in_total{kind="iq"}`.
    static func sample(_ name: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1))
        }
        return nil
    }

    @Test func trafficShowsInConnectionStanzaFanOutAndErrorCounters() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        let juliet = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let port = try #require(node.ports.http)
            let first = try await Self.get("/metrics", port: port).body
            #expect(Self.sample("conclave_connections", in: first) == 0, "\(first)")
            #expect(Self.sample("conclave_fanout_deliveries_total", in: first) == 0, "\(first)")

            let a = try await node.login(romeo)
            let b = try await node.login(juliet)
            let room = "counted\(UInt32.random(in: 0...UInt32.max))@conference.localhost"
            for (client, nick) in [(a, "Romeo"), (b, "Juliet")] {
                client.send(
                    XMLElement(
                        "presence", namespace: Namespace.client, ["to": "\(room)/\(nick)"],
                        children: [XMLElement("x", namespace: Namespace.muc)]
                    )
                )
                _ = try await client.receive { $0.child("subject") != nil }
                if client === a {
                    // Unlock the new room (an instant room).
                    let form = XMLElement("x", namespace: "jabber:x:data", ["type": "submit"])
                    let unlocked = try await a.iq("set", to: room, XMLElement("query", namespace: Namespace.mucOwner, children: [form]))
                    #expect(unlocked.type == "result")
                }
            }
            a.send(
                XMLElement(
                    "message", namespace: Namespace.client, ["to": room, "type": "groupchat"],
                    children: [XMLElement("body", namespace: Namespace.client, text: "hello")]
                )
            )
            _ = try await b.receive { $0.child("body")?.text == "hello" }
            // An IQ for a user who does not exist: an error stanza comes back.
            let answer = try await a.iq("get", to: "nobody@localhost/x", XMLElement("ping", namespace: Namespace.ping))
            #expect(answer.type == "error")
            // Garbage on a raw connection: a stream error.
            let raw = try await RawConnection.connect(port: node.ports.starttls)
            _ = try await raw.exchange("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'><message><body>unclosed</message>")

            let text = try await Self.get("/metrics", port: port).body
            // Romeo, Juliet and the raw connection (closed again by the time it answered).
            #expect(Self.sample("conclave_connections_opened_total", in: text) == 3, "\(text)")
            #expect(Self.sample("conclave_connections", in: text) == 2, "\(text)")
            #expect(Self.sample("conclave_stanzas_in_total{kind=\"presence\"}", in: text) == 2, "\(text)")
            #expect(Self.sample("conclave_stanzas_in_total{kind=\"message\"}", in: text) == 1, "\(text)")
            #expect(Self.sample("conclave_stanzas_in_total{kind=\"iq\"}", in: text) == 2, "\(text)")
            #expect((Self.sample("conclave_stanzas_out_total{kind=\"presence\"}", in: text) ?? 0) >= 4, "\(text)")
            #expect((Self.sample("conclave_stanzas_out_total{kind=\"message\"}", in: text) ?? 0) >= 4, "\(text)")
            #expect(Self.sample("conclave_stanza_errors_out_total", in: text) == 1, "\(text)")
            // Room output, one per recipient: Romeo's join (self-presence, subject), Juliet's
            // (her presence to both, Romeo's to her, the subject), the message to both.
            #expect((Self.sample("conclave_fanout_deliveries_total", in: text) ?? 0) >= 8, "\(text)")
            #expect(Self.sample("conclave_stream_errors_total{condition=\"not-well-formed\"}", in: text) == 1, "\(text)")
            await a.close()
            await b.close()
        }
    }

    @Test func aDrainingNodeIsNotReady() async throws {
        try await withNode { node in
            let port = try #require(node.ports.http)
            #expect(try await Self.get("/readyz", port: port).status == 200)
            let database = ClusterDatabase(client: try await TestDatabase.shared.connected(), logger: TestEnvironment.logger)
            _ = try await database.setState(name: node.node.configuration.nodeName, "draining")
            // The node learns it from the control bus; poll until it says so.
            let deadline = ContinuousClock.now + .seconds(10)
            var answer = try await Self.get("/readyz", port: port)
            while answer.status == 200, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                answer = try await Self.get("/readyz", port: port)
            }
            #expect(answer.status == 503)
            #expect(answer.body.contains("not in the ring"), "\(answer.body)")
        }
    }
}
