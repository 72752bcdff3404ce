import Foundation
import Testing

extension ClusterProcessTests {
    /// `conclave-bench` against real nodes: accounts made with `conclave-bench accounts`
    /// and `conclave user add-from-file`, two rooms across two nodes, every copy of every
    /// measured message delivered and timed.
    @Suite(.timeLimit(.minutes(2)))
    struct Bench {
        @Test func fanoutDeliversEveryCopyAndReportsItsNumbers() async throws {
            try await Cluster.run(test: "bench", nodes: 2) { cluster in
                let list = cluster.directory + "/accounts.txt"
                let accounts = try await runCommand(
                    ClusterTestEnvironment.conclaveBench, ["accounts", "--count", "8", "--password", "pw"], directory: cluster.directory
                )
                #expect(accounts.status == 0, "\(accounts)")
                #expect(accounts.output.split(separator: "\n").first == "bench1@localhost\tpw")
                try accounts.output.write(toFile: list, atomically: true, encoding: .utf8)
                let added = try await cluster.cliOK(["user", "add-from-file", list, "--log-level", "warning"])
                #expect(added.output.contains("8 accounts: 8 created"), "\(added)")

                let json = cluster.directory + "/result.json"
                let pids = try cluster.nodeNames.map { try cluster.node($0).process.processIdentifier }
                var arguments = [
                    "fanout", "--rooms", "2", "--room-size", "4", "--rate", "20", "--duration", "2", "--warmup", "0.5",
                    "--password", "pw", "--tls", "none", "--json", json, "--quiet", "--label", "test",
                ]
                for name in cluster.nodeNames { arguments += ["--server", "127.0.0.1:\(try cluster.node(name).port)"] }
                for pid in pids { arguments += ["--server-pid", "\(pid)"] }
                let run = try await runCommand(ClusterTestEnvironment.conclaveBench, arguments, directory: cluster.directory)
                #expect(run.status == 0, "\(run)")
                #expect(run.output.contains("test: 2 room(s) × 4 occupants"), "\(run)")

                let result = try #require(
                    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
                )
                let sent = try #require(result["sent"] as? Int)
                #expect((70...90).contains(sent), "2 rooms × 20/s × 2 s: \(sent)")
                #expect(result["expectedDeliveries"] as? Int == sent * 4)
                #expect(result["deliveries"] as? Int == sent * 4)
                #expect(result["lost"] as? Int == 0)
                let latency = try #require(result["latencyMilliseconds"] as? [String: Double])
                #expect((latency["p50"] ?? 0) > 0 && (latency["p50"] ?? 0) <= (latency["p99"] ?? 0))
                #expect((result["joinMilliseconds"] as? [String: Double])?["max"] != nil)
                #expect(result["failedJoins"] as? Int == 0)
                #expect((result["serverCPUSeconds"] as? Double ?? -1) >= 0, "read from /proc of the nodes")
                #expect((result["serverRSSKiB"] as? Int ?? 0) > 0)
            }
        }
    }
}
