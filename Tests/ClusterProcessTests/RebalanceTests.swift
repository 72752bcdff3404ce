import Foundation
import Testing
import XMPPCore

extension ClusterProcessTests {
    /// Rooms move when a node joins and when one is drained, while people talk.
    @Suite(.timeLimit(.minutes(3)))
    struct Rebalance {
        static let roomCount = 30
        static func room(_ index: Int) -> String { String(format: "rebal-%02d@conference.localhost", index) }
        static let prefix = "rebal-"

        /// Waits until every room is owned by the node the ring assigns it now (as
        /// `conclave room where` computes it) and returns room → (node, epoch).
        static func converged(_ cluster: Cluster, rooms: [String], expecting nodes: Set<String>) async throws -> [String: (node: String?, epoch: Int64)] {
            // The ring as the CLI sees it, once the membership is what we expect.
            let ring = try await eventually("the ring to be \(nodes.sorted())", timeout: .seconds(15)) { () -> [String: String]? in
                var ring: [String: String] = [:]
                for room in rooms {
                    guard let owner = try await cluster.roomWhere(room).ringOwner else { return nil }
                    ring[room] = owner
                }
                // Every node of the ring owns some of 30 rooms (1 in 3 on average).
                return Set(ring.values) == nodes ? ring : nil
            }
            return try await eventually("every room on its ring owner", timeout: .seconds(20), every: .milliseconds(100)) {
                let owners = try await cluster.sql.owners(prefix: prefix)
                return rooms.allSatisfy { owners[$0]?.node == ring[$0] } ? owners : nil
            }
        }

        @Test func roomsMoveOnJoinAndDrainWithoutLosingOrReorderingMessages() async throws {
            try await Cluster.run(test: "rebalance", nodes: 2) { cluster in
                for name in ["alice", "bob", "romeo", "juliet"] { try await cluster.addUser("\(name)@localhost") }
                let alice = try await cluster.connect("alice@localhost", to: "node1", resource: "a")
                let bob = try await cluster.connect("bob@localhost", to: "node2", resource: "b")
                let romeo = try await cluster.connect("romeo@localhost", to: "node1", resource: "r")
                let juliet = try await cluster.connect("juliet@localhost", to: "node2", resource: "j")
                let rooms = (0..<Self.roomCount).map(Self.room)
                for (index, room) in rooms.enumerated() {
                    try await alice.join(room, nick: "Alice")
                    try await alice.configure(room, [("muc#roomconfig_persistentroom", "1")])
                    if index % 2 == 0 { try await bob.join(room, nick: "Bob") }
                }
                // Romeo and Juliet talk in every room, so that every room that moves is busy.
                let busy = rooms
                for room in busy {
                    try await romeo.join(room, nick: "Romeo")
                    try await juliet.join(room, nick: "Juliet")
                }
                let occupants: [String: [Session]] = Dictionary(
                    uniqueKeysWithValues: busy.enumerated().map { index, room in
                        (room, [alice, romeo, juliet] + (index % 2 == 0 ? [bob] : []))
                    }
                )
                let initial = try await Self.converged(cluster, rooms: rooms, expecting: ["node1", "node2"])
                let romeoSends = NumberedSender(romeo, name: "romeo", rooms: busy, every: .milliseconds(10))
                let julietSends = NumberedSender(juliet, name: "juliet", rooms: busy, every: .milliseconds(10))
                try await alice.waitFor("juliet #2 in \(busy[0])") { MUCStanza.isGroupchat($0, from: busy[0]) && MUCStanza.isNumbered($0, "juliet", 2) }

                // A third node joins: about a third of the rooms move, all of them to it.
                try await cluster.start("node3")
                let joined = try await Self.converged(cluster, rooms: rooms, expecting: ["node1", "node2", "node3"])
                let movedOnJoin = rooms.filter { joined[$0]?.node != initial[$0]?.node }
                report("FIGURE moved_on_join=\(movedOnJoin.count)/\(rooms.count)")
                let share = Double(movedOnJoin.count) / Double(rooms.count)
                #expect(share >= 0.15 && share <= 0.55, "\(movedOnJoin.count) of \(rooms.count) rooms moved when node3 joined")
                for room in movedOnJoin {
                    #expect(joined[room]?.node == "node3", "\(room) moved from \(initial[room]?.node ?? "-") to \(joined[room]?.node ?? "-"), not to node3")
                    #expect((joined[room]?.epoch ?? 0) > (initial[room]?.epoch ?? 0), "\(room): the epoch did not grow")
                }
                // Traffic goes on in a room that moved.
                let movedRoom = try #require(movedOnJoin.first)
                var target = julietSends.sentCount(movedRoom) + 5
                try await alice.waitFor("juliet #\(target) in \(movedRoom)", timeout: .seconds(15)) {
                    MUCStanza.isGroupchat($0, from: movedRoom) && MUCStanza.isNumbered($0, "juliet", target)
                }

                // node1 is drained: only its rooms move, each to one of the two others;
                // its clients stay connected.
                let node1Rooms = rooms.filter { joined[$0]?.node == "node1" }
                let drain = try await cluster.cli(["node", "drain", "node1", "--timeout", "30"], timeout: .seconds(45))
                #expect(drain.status == 0, "\(drain)")
                let drained = try await Self.converged(cluster, rooms: rooms, expecting: ["node2", "node3"])
                let movedOnDrain = rooms.filter { drained[$0]?.node != joined[$0]?.node }
                report("FIGURE moved_on_drain=\(movedOnDrain.count)/\(rooms.count)")
                #expect(Set(movedOnDrain) == Set(node1Rooms), "moved on drain: \(movedOnDrain); node1 had \(node1Rooms)")
                #expect(!rooms.contains { drained[$0]?.node == "node1" })
                let drainedRoom = try #require(movedOnDrain.first)
                target = romeoSends.sentCount(drainedRoom) + 5
                try await juliet.waitFor("romeo #\(target) in \(drainedRoom)", timeout: .seconds(15)) {
                    MUCStanza.isGroupchat($0, from: drainedRoom) && MUCStanza.isNumbered($0, "romeo", target)
                }

                await romeoSends.stop()
                await julietSends.stop()
                report("[rebalance] romeo sent \(busy.map(romeoSends.sentCount).reduce(0, +)), juliet \(busy.map(julietSends.sentCount).reduce(0, +)) messages over \(busy.count) rooms")
                // Every occupant of each busy room gets every message exactly once, in per-sender order.
                for room in busy {
                    for (sender, name) in [(romeoSends, "romeo"), (julietSends, "juliet")] {
                        let last = sender.sentCount(room)
                        for receiver in occupants[room]! {
                            try await receiver.waitFor("\(name) #\(last) in \(room)", timeout: .seconds(10)) {
                                MUCStanza.isGroupchat($0, from: room) && MUCStanza.isNumbered($0, name, last)
                            }
                            let check = DeliveryCheck(receiver: receiver, sender: name, room: room, expected: Array(1...last))
                            #expect(check.ok, "\(check)\(movedOnJoin.contains(room) ? " (moved to node3 on join)" : "")\(node1Rooms.contains(room) ? " (moved on drain)" : "")")
                        }
                    }
                }
                let errors = (romeo.errors() + juliet.errors()).map { String($0.description.prefix(300)) }
                #expect(errors.isEmpty, "the senders got errors: \(errors.prefix(5))")
                #expect(!alice.ended && !romeo.ended, "node1's clients stay connected through the drain")
            }
        }
    }
}
