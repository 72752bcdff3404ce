import ClusterTestSupport
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
                #expect(result["serverRSSKiBPerMembership"] is Double)
                #expect((result["joinsPerSecond"] as? Double ?? 0) > 0, "6 joins while the rooms filled")
                let rejoin = try #require(result["rejoinMilliseconds"] as? [String: Double], "10 probes by default")
                #expect((rejoin["p50"] ?? 0) > 0)
                #expect(run.output.contains("join a full room p50"), "\(run)")
            }
        }

        /// `--during` runs a command inside the measured window and reports it; it is
        /// refused with `--search`, whose phases would each run it. `kick` needs an
        /// occupant on another node than the room's owner, and says so on a single node.
        @Test func duringRunsACommandInTheWindow() async throws {
            try await Cluster.run(test: "bench-during", nodes: 1) { cluster in
                try await addBenchAccounts(cluster, count: 2)
                let marker = cluster.directory + "/during-ran"
                let json = cluster.directory + "/during.json"
                let run = try await runCommand(
                    ClusterTestEnvironment.conclaveBench,
                    [
                        "fanout", "--rooms", "1", "--room-size", "2", "--rate", "5", "--duration", "1.5", "--warmup", "0",
                        "--password", "pw", "--tls", "none", "--quiet", "--join-probes", "0", "--json", json,
                        "--server", "127.0.0.1:\(try cluster.node("node1").port)",
                        "--during", "echo here > \(marker); exit 3", "--during-at", "0.5",
                    ],
                    directory: cluster.directory
                )
                #expect(run.status == 0, "\(run)")
                #expect(run.output.contains("during           at 0.5 s: exit 3"), "\(run)")
                #expect((try? String(contentsOfFile: marker, encoding: .utf8)) == "here\n")
                let result = try #require(
                    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
                )
                let during = try #require(result["during"] as? [String: Any])
                #expect(during["status"] as? Int == 3)
                #expect(result["rejoinMilliseconds"] == nil, "--join-probes 0")

                let refused = try await runCommand(
                    ClusterTestEnvironment.conclaveBench,
                    ["fanout", "--search", "--during", "true", "--server", "127.0.0.1:\(try cluster.node("node1").port)"],
                    directory: cluster.directory
                )
                #expect(refused.status == 64, "\(refused)")
                #expect(refused.errors.contains("--during runs in one measured window"), "\(refused)")

                // `kick` on a single node: every occupant is on the room's owner.
                let alone = try await runCommand(
                    ClusterTestEnvironment.conclaveBench,
                    [
                        "kick", "--kicks", "1", "--password", "pw", "--tls", "none", "--database-url", cluster.url.description,
                        "--server", "127.0.0.1:\(try cluster.node("node1").port)",
                    ],
                    directory: cluster.directory
                )
                #expect(alone.status != 0, "\(alone)")
                #expect(alone.errors.contains("no occupant was on another node"), "\(alone)")
            }
        }

        /// `--processes`: child processes share the rooms and measure one window; their
        /// copies are merged into one result, as if one process had run it.
        @Test func processesShareTheRoomsAndMergeTheirCopies() async throws {
            try await Cluster.run(test: "bench-processes", nodes: 1) { cluster in
                try await addBenchAccounts(cluster, count: 9)
                let json = cluster.directory + "/processes.json"
                let run = try await runCommand(
                    ClusterTestEnvironment.conclaveBench,
                    [
                        "fanout", "--rooms", "3", "--room-size", "3", "--rate", "10", "--duration", "1.5", "--warmup", "0.5",
                        "--password", "pw", "--tls", "none", "--join-probes", "2", "--json", json, "--processes", "2",
                        "--server", "127.0.0.1:\(try cluster.node("node1").port)",
                        "--server-pid", "\(try cluster.node("node1").process.processIdentifier)",
                    ],
                    directory: cluster.directory
                )
                #expect(run.status == 0, "\(run)")
                #expect(run.output.contains("3 room(s) × 3 occupants, 10.0 msg/s per room, 1.5 s measured (2 processes)"), "\(run)")
                let result = try #require(
                    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
                )
                let sent = try #require(result["sent"] as? Int)
                #expect((40...50).contains(sent), "3 rooms × 10/s × 1.5 s: \(sent)")
                #expect(result["deliveries"] as? Int == sent * 3)
                #expect(result["lost"] as? Int == 0)
                #expect(result["processes"] as? Int == 2)
                #expect((result["rejoinMilliseconds"] as? [String: Double])?["p50"] != nil, "probes from both children")
                #expect((result["serverCPUSeconds"] as? Double ?? -1) >= 0)

                let refused = try await runCommand(
                    ClusterTestEnvironment.conclaveBench,
                    ["fanout", "--processes", "2", "--search", "--server", "127.0.0.1:\(try cluster.node("node1").port)"],
                    directory: cluster.directory
                )
                #expect(refused.status == 64, "\(refused)")
                #expect(refused.errors.contains("--processes runs one window"), "\(refused)")
            }
        }

        /// `kick`: an outcast written to PostgreSQL reaches occupants on the other node.
        @Test func kickTimesAnAffiliationChangeAcrossNodes() async throws {
            try await Cluster.run(test: "bench-kick", nodes: 2) { cluster in
                try await addBenchAccounts(cluster, count: 7)
                let json = cluster.directory + "/kick.json"
                var arguments = [
                    "kick", "--kicks", "6", "--password", "pw", "--tls", "none", "--database-url", cluster.url.description,
                    "--json", json,
                ]
                for name in cluster.nodeNames { arguments += ["--server", "127.0.0.1:\(try cluster.node(name).port)"] }
                let run = try await runCommand(ClusterTestEnvironment.conclaveBench, arguments, directory: cluster.directory)
                #expect(run.status == 0, "\(run)")
                #expect(run.output.contains("kicks at occupants on other nodes than the owner"), "\(run)")
                let result = try #require(
                    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
                )
                // Users 2…7 alternate between the two nodes: 3 are away from the owner.
                #expect(result["measured"] as? Int == 3, "\(result)")
                #expect(((result["latencyMilliseconds"] as? [String: Double])?["p50"] ?? 0) > 0)
            }
        }
    }
}

/// `bench1` … `bench<count>` with the password "pw", made as an operator would.
func addBenchAccounts(_ cluster: Cluster, count: Int) async throws {
    let list = cluster.directory + "/accounts.txt"
    let accounts = try await runCommand(
        ClusterTestEnvironment.conclaveBench, ["accounts", "--count", "\(count)", "--password", "pw"], directory: cluster.directory
    )
    try accounts.output.write(toFile: list, atomically: true, encoding: .utf8)
    _ = try await cluster.cliOK(["user", "add-from-file", list, "--log-level", "warning"])
}
