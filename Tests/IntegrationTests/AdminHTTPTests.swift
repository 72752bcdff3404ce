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
            #expect(metrics.body.contains("\nconclave_rooms_owned 1\n"), "\(metrics.body)")
            #expect(metrics.body.contains("\nconclave_occupants 1\n"), "\(metrics.body)")
            #expect(metrics.body.contains("conclave_room_activations_total 1"), "\(metrics.body)")
            await client.close()
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
