import ClusterTestSupport
import Foundation
import NIOPosix
import PostgresNIO
import Testing
import XMPPCore

extension ClusterProcessTests {
    /// The embedded PostgreSQL server restarts under the running nodes.
    ///
    /// This restarts the whole PostgreSQL server of `deploy/local/db.sh`: every other user
    /// of it is disturbed. The target must run alone, after all other tests, with
    /// `--no-parallel`. It runs only when CONCLAVE_TEST_DATABASE_URL names that server.
    @Suite(.timeLimit(.minutes(3)), .enabled(if: ClusterTestEnvironment.embeddedServer, "CONCLAVE_TEST_DATABASE_URL is not the embedded PostgreSQL of deploy/local/db.sh"))
    struct WhilePostgreSQLRestarts {
        /// `db.sh` may leave a daemon behind (`start` starts PostgreSQL): run as a
        /// `ChildProcess`, which gives it no descriptor beyond 0, 1 and 2.
        static func db(_ command: String, in cluster: Cluster) async throws -> ChildProcess.Outcome {
            try await ChildProcess.run(
                ClusterTestEnvironment.dbScript, [command], directory: cluster.directory, timeout: .seconds(90),
                keepConclaveVariables: true)
        }

        /// CONCLAVE_TEST_PG_OUTAGES="0,3" (the default) chooses the outages to test.
        static let outages: [Int] = ProcessInfo.processInfo.environment["CONCLAVE_TEST_PG_OUTAGES"].map {
            $0.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        } ?? [0, 3]

        /// `outage`: how long PostgreSQL stays down (0: restarted at once; 3 s: longer than
        /// the nodes' 2-s lease, which the restart grace of migration 0005 must cover).
        @Test(arguments: outages)
        func changesCommittedAroundARestartAreApplied(outage: Int) async throws {
            try await Cluster.run(test: "pgrestart\(outage)s", nodes: 3) { cluster in
                for name in ["romeo", "juliet", "mercutio", "benvolio"] { try await cluster.addUser("\(name)@localhost") }
                let room = "restart@conference.localhost"
                let x = try #require(try await cluster.roomWhere(room).ringOwner)
                let others = cluster.nodeNames.filter { $0 != x }
                let romeo = try await cluster.connect("romeo@localhost", to: others[0], resource: "r")
                let juliet = try await cluster.connect("juliet@localhost", to: others[1], resource: "j")
                let mercutio = try await cluster.connect("mercutio@localhost", to: others[0], resource: "m")
                let benvolio = try await cluster.connect("benvolio@localhost", to: others[1], resource: "b")
                try await romeo.join(room, nick: "Romeo")
                try await romeo.configure(room, [("muc#roomconfig_persistentroom", "1"), ("muc#roomconfig_membersonly", "1")])
                for (session, nick) in [(juliet, "Juliet"), (mercutio, "Mercutio"), (benvolio, "Benvolio")] {
                    try await romeo.setAffiliation(room, jid: session.bare, "member")
                    try await session.join(room, nick: nick)
                }
                try await eventually("four occupants stored") { try await cluster.sql.occupantCount(of: room) == 4 ? true : nil }
                #expect(try await cluster.roomWhere(room).owner == x)

                // Load: Romeo talks all along.
                let load = NumberedSender(romeo, name: "romeo", rooms: [room], every: .milliseconds(25))
                try await benvolio.waitFor("romeo #5") { MUCStanza.isNumbered($0, "romeo", 5) }
                let logSizes = try Dictionary(uniqueKeysWithValues: cluster.nodeNames.map { ($0, try cluster.node($0).logSize) })

                let stopping = ContinuousClock.now
                var restarted = false
                do {
                    let stop = try await Self.db("stop", in: cluster)
                    #expect(stop.status == 0, "\(stop)")
                    // The outage itself (what is being tested, not a wait for something).
                    if outage > 0 { try await Task.sleep(for: .seconds(outage)) }
                    let start = try await Self.db("start", in: cluster)
                    try #require(start.status == 0, "\(start)")
                    restarted = true
                } catch {
                    if !restarted { _ = try? await Self.db("start", in: cluster) }
                    throw error
                }
                let up = ContinuousClock.now
                report("FIGURE pg_restart\(outage)s_downtime_ms=\(String(format: "%.0f", (up - stopping).milliseconds))")

                // At once, on a connection of our own: Juliet loses her membership, committed
                // (as far as we can tell) before the nodes' LISTEN connections are back.
                let (listeners, committed) = try await eventually("a connection to the restarted PostgreSQL", timeout: .seconds(20), every: .milliseconds(20)) {
                    try await cluster.sql.withConnection { connection -> (Int64, ContinuousClock.Instant) in
                        var listeners: Int64 = 0
                        for try await count in try await connection.query(
                            "SELECT count(*)::int8 FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
                            logger: ClusterTestEnvironment.logger
                        ).decode(Int64.self) { listeners = count }
                        try await connection.query(
                            "DELETE FROM room_affiliations WHERE room = \(room) AND jid = \(juliet.bare)", logger: ClusterTestEnvironment.logger
                        )
                        return (listeners, ContinuousClock.now)
                    }
                }
                report("[pgrestart\(outage)s] first change committed \(String(format: "%.0f", (committed - up).milliseconds)) ms after PostgreSQL was up; nodes listening at that moment: \(listeners) of 3")
                let kick = try await juliet.waitFor("her removal (321) after the restart", timeout: .seconds(20)) {
                    $0.name == "presence" && $0.type == "unavailable" && $0[attribute: "from"] == "\(room)/Juliet"
                }
                #expect(Set(MUCStanza.statusCodes(kick.element)) == ["321", "110"], "\(kick.element)")
                report("FIGURE pg_restart\(outage)s_catchup_kick_ms=\(String(format: "%.0f", (kick.at - committed).milliseconds))")
                try await romeo.waitFor("Juliet's removal (321)") {
                    $0.name == "presence" && $0.type == "unavailable" && $0[attribute: "from"] == "\(room)/Juliet"
                        && MUCStanza.statusCodes($0) == ["321"]
                }

                // Every node's control bus is back: a later change arrives by NOTIFY.
                for name in cluster.nodeNames {
                    _ = try await cluster.node(name).waitForLog("control bus reconnected", after: logSizes[name] ?? 0, timeout: .seconds(20))
                }
                let romeoMark = romeo.count
                try await cluster.sql.execute(
                    "UPDATE room_affiliations SET affiliation = 'outcast' WHERE room = \(room) AND jid = \(mercutio.bare)"
                )
                let banned = try await mercutio.waitFor("his ban (301)", timeout: .seconds(10)) {
                    $0.name == "presence" && $0.type == "unavailable" && $0[attribute: "from"] == "\(room)/Mercutio"
                }
                #expect(Set(MUCStanza.statusCodes(banned.element)) == ["301", "110"], "\(banned.element)")
                try await romeo.waitFor("Mercutio's ban (301)", after: romeoMark) {
                    $0.name == "presence" && $0.type == "unavailable" && $0[attribute: "from"] == "\(room)/Mercutio"
                        && MUCStanza.statusCodes($0) == ["301"]
                }

                // The load went through the restart: every message exactly once, in order.
                await load.stop()
                let last = load.sentCount(room)
                for receiver in [benvolio, romeo] {
                    try await receiver.waitFor("romeo #\(last)", timeout: .seconds(15)) { MUCStanza.isNumbered($0, "romeo", last) }
                    let check = DeliveryCheck(receiver: receiver, sender: "romeo", room: room, expected: Array(1...last))
                    #expect(check.ok, "\(check)")
                }
                let errors = romeo.errors().map { String($0.description.prefix(300)) }
                #expect(errors.isEmpty, "Romeo's messages were refused during the restart: \(errors.count), e.g. \(errors.prefix(3))")
                // The writes that failed while PostgreSQL was down were stored afterwards.
                try await eventually("romeo #\(last) in the stored history", timeout: .seconds(15)) {
                    try await cluster.sql.history(of: room).contains { $0.contains("romeo #\(last)<") } ? true : nil
                }
                // The nodes kept running and kept their clients.
                for name in cluster.nodeNames {
                    let node = try cluster.node(name)
                    #expect(node.isRunning, "\(name) stopped")
                    let tail = String(decoding: Array(node.log.utf8).dropFirst(logSizes[name] ?? 0), as: UTF8.self)
                    #expect(!tail.contains("lease lost"), "\(name) lost its lease during the restart")
                }
                #expect(!romeo.ended && !benvolio.ended)
            }
        }

        /// The grace after a restart is for leases that ran out while the database was
        /// down, not before: a node killed before the cluster and PostgreSQL were stopped
        /// stays dead when both start again (two nodes this time), and the room the ring
        /// gave it is served at once — it was not, for ten seconds, while the killed node
        /// counted as alive and its rooms' input went nowhere.
        @Test func aNodeDeadBeforeTheRestartStaysDeadInTheGrace() async throws {
            try await Cluster.run(test: "pgdeadbefore", nodes: 3) { cluster in
                try await cluster.addUser("romeo@localhost")
                let room = "tomb@conference.localhost"  // the ring gives it to node3 of three
                let mark = try cluster.node("node1").logSize
                try await cluster.crash("node3")
                _ = try await cluster.node("node1").waitForLog("nodes gone", after: mark)
                try await cluster.stop("node2")
                try await cluster.stop("node1")
                _ = try await Self.db("stop", in: cluster)
                let started = try await Self.db("start", in: cluster)
                guard started.status == 0 else { throw TestFailure("\(started)") }
                try await cluster.startNodes(["node1", "node2"])
                let grace = try await cluster.sql.scalar(
                    "SELECT now() < pg_postmaster_start_time() + interval '10 seconds'", as: Bool.self
                )
                try #require(grace == true, "the nodes took longer than the grace to start: nothing tested")
                let alive = try await cluster.sql.scalar(
                    "SELECT conclave_alive(lease_until) FROM cluster_nodes WHERE name = 'node3'", as: Bool.self
                )
                #expect(alive == false)
                let romeo = try await cluster.connect("romeo@localhost", to: "node1", resource: "desk")
                try await romeo.join(room, nick: "Romeo", timeout: .seconds(5))
                let owner = try await cluster.sql.owner(of: room)
                #expect(owner?.node == "node1" || owner?.node == "node2", "\(String(describing: owner))")
            }
        }
    }
}
