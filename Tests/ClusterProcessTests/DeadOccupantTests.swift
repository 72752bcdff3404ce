import Foundation
import Testing
import XMPPCore

extension ClusterProcessTests {
    /// Occupants whose own node dies leave the room; the others are told.
    @Suite(.timeLimit(.minutes(2)))
    struct DeadOccupants {
        @Test func occupantsOfAKilledNodeLeaveWithAnUnavailablePresence() async throws {
            try await Cluster.run(test: "deadoccupant", nodes: 3) { cluster in
                let room = "wake@conference.localhost"
                let (romeo, _, others) = try await cluster.romeoAndMercutioOffTheOwner(of: room)
                let mark = romeo.count
                let killed = ContinuousClock.now
                try await cluster.crash(others[1])
                // Within the lease (and a heartbeat), the owner removes Mercutio and tells Romeo.
                let gone = try await romeo.waitFor("Mercutio's unavailable presence", after: mark, timeout: .seconds(cluster.leaseSeconds + 5)) {
                    $0.name == "presence" && $0.type == "unavailable" && $0[attribute: "from"] == "\(room)/Mercutio"
                }
                report("FIGURE dead_occupant_leaves_ms=\(String(format: "%.0f", (gone.at - killed).milliseconds))")
                // The stored occupancy follows (the presence goes out before the row is deleted).
                try await eventually("Mercutio's occupancy row to go") {
                    try await cluster.sql.occupantCount(of: room) == 1 ? true : nil
                }
                // The room goes on for the living.
                let echo = romeo.count
                romeo.say(room, "romeo #1")
                _ = try await romeo.waitFor("the echo", after: echo) { MUCStanza.isNumbered($0, "romeo", 1) }
            }
        }
    }
}

extension Cluster {
    /// Romeo on one node and Mercutio on another, neither of them the owner of `room`,
    /// both in it (Romeo created and unlocked it). Returns the two non-owner nodes too.
    func romeoAndMercutioOffTheOwner(of room: String) async throws -> (romeo: Session, mercutio: Session, others: [String]) {
        try await addUser("romeo@localhost")
        try await addUser("mercutio@localhost")
        let owner = try #require(try await roomWhere(room).ringOwner)
        let others = nodeNames.filter { $0 != owner }
        let romeo = try await connect("romeo@localhost", to: others[0], resource: "balcony")
        let mercutio = try await connect("mercutio@localhost", to: others[1], resource: "street")
        try await romeo.join(room, nick: "Romeo")
        try await romeo.configure(room, [("muc#roomconfig_roomname", "Room")])  // unlock it
        try await mercutio.join(room, nick: "Mercutio")
        return (romeo, mercutio, others)
    }
}
