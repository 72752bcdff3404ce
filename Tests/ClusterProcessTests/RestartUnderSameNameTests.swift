import ClusterTestSupport
import Foundation
import PostgresNIO
import Testing
import XMPPCore

extension ClusterProcessTests {
    /// Rooms stay usable when their owner row names a run of a node that is gone: a
    /// cluster started again with another size, a node restarted under the same name, and
    /// an owner that is alive but never releases. Every join is answered.
    @Suite(.timeLimit(.minutes(3)))
    struct RestartUnderSameName {
        /// The reproduction: a room held by a one-node run whose node was killed, then the
        /// cluster started again with three nodes (node1 a new run of the same name). The
        /// seed's scene and a join of the held room are answered at once, the killed run's
        /// occupant is gone from the room, and `room where` says whose row it was.
        @Test func aRoomHeldByAnEarlierRunServesTheNextClusterSize() async throws {
            try await Cluster.run(test: "samename", nodes: 1) { cluster in
                try await cluster.addUser("romeo@localhost")
                try await cluster.addUser("juliet@localhost")
                let room = "tomb@conference.localhost"
                let first = try await cluster.connect("romeo@localhost", to: "node1", resource: "first")
                try await first.join(room, nick: "Romeo")
                try await first.configure(room, [("muc#roomconfig_persistentroom", "1")])
                try await eventually("Romeo's occupancy row") {
                    try await cluster.sql.occupantCount(of: room) == 1 ? true : nil
                }
                try await cluster.crash("node1")
                let held = try #require(try await cluster.sql.owner(of: room))
                #expect(held.node == "node1")

                // Started again, three nodes this time: node1 at once (within its lease).
                try await cluster.startNodes(["node1", "node2", "node3"])
                let placement = try await cluster.roomWhere(room)
                let ringOwner = try #require(placement.ringOwner)
                // The case that stranded rooms: the ring names another node than the one
                // whose earlier run holds the row.
                try #require(ringOwner != "node1", "the ring gives \(room) to node1: pick a room another node owns")
                let text = try await cluster.cliOK(["room", "where", room]).output
                // Whose row it is, and whether that run is live (node1's earlier run, or the
                // ring owner that already took it on seeing node1's restart).
                #expect(text.contains("incarnation") && text.contains("live"), "\(text)")
                report("[samename] \(text.trimmingCharacters(in: .whitespacesAndNewlines))")

                // Juliet joins through a node that is not the room's: answered, and the
                // killed run's Romeo is not in the room any more.
                let entry = cluster.nodeNames.first { $0 != ringOwner } ?? "node1"
                let juliet = try await cluster.connect("juliet@localhost", to: entry, resource: "balcony")
                let mark = juliet.count
                try await juliet.join(room, nick: "Juliet")
                try await eventually("the killed run's Romeo to leave the room's rows") {
                    try await cluster.sql.occupantCount(of: room) == 1 ? true : nil
                }
                let ghosts = juliet.elements(from: mark).filter {
                    $0.element.name == "presence" && $0.element[attribute: "from"] == "\(room)/Romeo" && $0.element.type == nil
                }
                #expect(ghosts.isEmpty || juliet.elements(from: mark).contains {
                    $0.element.name == "presence" && $0.element[attribute: "from"] == "\(room)/Romeo" && $0.element.type == "unavailable"
                }, "the killed run's Romeo stayed in the room for Juliet")
                let now = try await cluster.roomWhere(room)
                #expect(now.owner == ringOwner, "\(now)")

                // The seed, its clients on the two nodes that do not own its room.
                let script = ClusterTestEnvironment.seedDirectory + "/muc_members_only_change.scs"
                try await cluster.cliOK(["user", "add-from-scripts", script, "--log-level", "warning"])
                let nodes = cluster.nodeNames
                for round in 1...2 {
                    let spec = try await runCommand(
                        ClusterTestEnvironment.conclaveSpec,
                        ["--node", try cluster.node(nodes[round % 3]).address, "--node", try cluster.node(nodes[(round + 1) % 3]).address, script],
                        directory: cluster.directory
                    )
                    #expect(spec.status == 0, "the seed failed (round \(round)):\n\(spec)")
                }
            }
        }

        /// A room whose owner row names a live incarnation that never answers (here a
        /// node registered by SQL that runs no process): a join waits at most the bound
        /// and gets `resource-constraint` saying why; the node logs it and counts it.
        /// `conclave room release` is refused while that owner is alive, and releases the
        /// row once it is not; then the join succeeds.
        @Test func aJoinTheRoomCannotAnswerGetsAnErrorWithinTheBound() async throws {
            try await Cluster.run(test: "inputbound", nodes: 1) { cluster in
                try await cluster.stop("node1")
                try await cluster.start("node1", arguments: ["--room-input-timeout-seconds", "1"])
                try await cluster.addUser("romeo@localhost")
                let room = "locked-away@conference.localhost"
                // A holder that is alive (a long lease) and out of the ring (draining).
                try await cluster.sql.execute(
                    """
                    INSERT INTO cluster_nodes (name, link_address, incarnation, state, lease_until)
                    VALUES ('phantom', '127.0.0.1:9', 1, 'draining', now() + interval '1 hour')
                    """
                )
                try await cluster.sql.execute(
                    "INSERT INTO room_owners (room, node, incarnation, epoch) VALUES (\(room), 'phantom', 1, 4)"
                )
                let romeo = try await cluster.connect("romeo@localhost", to: "node1", resource: "desk")
                let mark = romeo.count
                let sent = ContinuousClock.now
                romeo.send(
                    XMLElement(
                        "presence", namespace: Namespace.client, ["to": "\(room)/Romeo"],
                        children: [XMLElement("x", namespace: Namespace.muc)]
                    )
                )
                let answer = try await romeo.waitFor("an answer to the join", after: mark, timeout: .seconds(10)) {
                    $0.name == "presence" && $0[attribute: "from"] == "\(room)/Romeo"
                }
                let waited = ContinuousClock.now - sent
                #expect(answer.element.type == "error", "\(answer.element)")
                let error = try #require(answer.element.child("error"))
                #expect(error[attribute: "type"] == "wait")
                #expect(error.child("resource-constraint") != nil, "\(answer.element)")
                let text = error.child("text")?.text ?? ""
                #expect(text.contains("phantom"), "the error does not say who holds the room: \(text)")
                report("FIGURE unactivatable_join_answered_ms=\(String(format: "%.0f", waited.milliseconds))")
                _ = try await cluster.node("node1").waitForLog("room input waited too long; refused")
                let metrics = try await cluster.metrics("node1")
                #expect(metrics.contains("conclave_room_inputs_timed_out_total 1"), "\(metrics)")

                // The operator's way out: refused while the holder is alive…
                let refused = try await cluster.cli(["room", "release", room, "--timeout", "1"])
                #expect(refused.status != 0)
                #expect(refused.errors.contains("refused"), "\(refused)")
                #expect(try await cluster.sql.owner(of: room)?.node == "phantom")
                // …and done once it is not.
                try await cluster.sql.execute("UPDATE cluster_nodes SET state = 'left' WHERE name = 'phantom'")
                let released = try await cluster.cliOK(["room", "release", room])
                #expect(released.output.contains("released"), "\(released)")
                #expect(try await cluster.sql.owner(of: room)?.node == nil)
                try await romeo.join(room, nick: "Romeo")
                #expect(try await cluster.sql.owner(of: room)?.node == "node1")
            }
        }
    }
}
