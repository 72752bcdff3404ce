import ClusterTestSupport
import Foundation
import PostgresNIO
import Testing
import XMPPCore

extension ClusterProcessTests {
    /// A node killed and started again before its lease ran out: the sessions of the
    /// killed run must not stay behind as occupants nobody can reach.
    @Suite(.timeLimit(.minutes(2)))
    struct QuickRestart {
        @Test func occupantsOfANodeRestartedWithinItsLeaseLeave() async throws {
            try await Cluster.run(test: "quickrestart", nodes: 3, leaseSeconds: 5) { cluster in
                let room = "vigil@conference.localhost"
                let (romeo, _, others) = try await cluster.romeoAndMercutioOffTheOwner(of: room)
                let mark = romeo.count
                // Killed and started again at once, well within its 5 s lease.
                try await cluster.crash(others[1])
                let restarted = ContinuousClock.now
                try await cluster.start(others[1])
                let gone = try await romeo.waitFor("Mercutio's unavailable presence", after: mark, timeout: .seconds(10)) {
                    $0.name == "presence" && $0.type == "unavailable" && $0[attribute: "from"] == "\(room)/Mercutio"
                }
                report("FIGURE quick_restart_occupant_leaves_ms=\(String(format: "%.0f", (gone.at - restarted).milliseconds))")
                try await eventually("the killed run's session and occupancy rows to go") {
                    let sessions = try await cluster.sql.scalar(
                        "SELECT count(*) FROM sessions WHERE node = \(others[1])", as: Int.self
                    )
                    let occupants = try await cluster.sql.occupantCount(of: room)
                    return sessions == 0 && occupants == 1 ? true : nil
                }
                // Mercutio comes back through the restarted node and stays.
                let again = try await cluster.connect("mercutio@localhost", to: others[1], resource: "street")
                try await again.join(room, nick: "Mercutio")
                let echo = again.count
                again.say(room, "mercutio #1")
                _ = try await again.waitFor("the echo", after: echo) { MUCStanza.isNumbered($0, "mercutio", 1) }
                #expect(try await cluster.sql.occupantCount(of: room) == 2)
            }
        }
    }
}
