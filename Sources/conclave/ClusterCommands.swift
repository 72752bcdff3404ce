import ArgumentParser
import Cluster
import Foundation
import Logging
import PostgresNIO
import ServerRuntime
import Storage
import StoragePostgres
import XMPPCore

/// `conclave cluster …`: what the cluster looks like, from PostgreSQL.
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "Inspect the cluster.", subcommands: [Status.self]
    )

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Nodes, liveness, rooms and occupants per node, and each node's share of the ring."
        )
        @OptionGroup var common: CommonOptions
        @Flag(help: "Print JSON instead of a table.") var json = false

        func run() async throws {
            let configuration = try common.load()
            let logger = quietLogger(common, configuration)
            try await withDatabase(configuration, logger: logger) { client in
                let database = ClusterDatabase(client: client, logger: logger)
                let members = try await database.members()
                var rooms: [String: Int] = [:]
                var occupants: [String: Int] = [:]
                var sessions: [String: Int] = [:]
                var allRooms: [String] = []
                for try await (node, count) in try await client.query(
                    """
                    SELECT o.node, count(*)::int FROM room_owners o JOIN rooms r ON r.jid = o.room
                    WHERE o.node IS NOT NULL GROUP BY o.node
                    """,
                    logger: logger
                ).decode((String, Int).self) { rooms[node] = count }
                for try await (node, count) in try await client.query(
                    """
                    SELECT o.node, count(*)::int FROM room_occupants p JOIN room_owners o ON o.room = p.room
                    WHERE o.node IS NOT NULL GROUP BY o.node
                    """,
                    logger: logger
                ).decode((String, Int).self) { occupants[node] = count }
                for try await (node, count) in try await client.query(
                    "SELECT node, count(*)::int FROM sessions GROUP BY node", logger: logger
                ).decode((String, Int).self) { sessions[node] = count }
                for try await jid in try await client.query("SELECT jid FROM rooms", logger: logger).decode(String.self) {
                    allRooms.append(jid)
                }
                // Rooms whose owner row names an incarnation that is not live: nobody
                // serves them; the ring's owner claims each on its next stanza (or
                // `conclave room release`).
                var unserved: [(room: String, node: String)] = []
                for try await (room, node) in try await client.query(
                    """
                    SELECT o.room, o.node FROM room_owners o JOIN rooms r ON r.jid = o.room
                    WHERE o.node IS NOT NULL AND NOT conclave_owner_live(o.node, o.incarnation) ORDER BY o.room
                    """,
                    logger: logger
                ).decode((String, String).self) { unserved.append((room, node)) }
                let ring = HashRing(nodes: members.filter(\.inRing).map(\.name))
                var share: [String: Int] = [:]
                for room in allRooms { if let owner = ring.owner(of: room) { share[owner, default: 0] += 1 } }
                let rows = members.filter { $0.state != "left" || $0.alive }
                if json {
                    let objects: [[String: Any]] = rows.map { member in
                        [
                            "name": member.name, "state": member.state, "alive": member.alive,
                            "incarnation": member.incarnation, "link": member.linkAddress,
                            "heartbeat_age_seconds": member.silentFor, "rooms": rooms[member.name] ?? 0,
                            "occupants": occupants[member.name] ?? 0, "sessions": sessions[member.name] ?? 0,
                            "ring_share": allRooms.isEmpty ? (member.inRing ? 1.0 / Double(max(ring.nodes.count, 1)) : 0)
                                : Double(share[member.name] ?? 0) / Double(allRooms.count),
                        ]
                    }
                    let data = try JSONSerialization.data(
                        withJSONObject: [
                            "nodes": objects, "rooms": allRooms.count,
                            "rooms_held_by_earlier_runs": unserved.map { ["room": $0.room, "node": $0.node] },
                        ] as [String: Any],
                        options: [.sortedKeys]
                    )
                    print(String(decoding: data, as: UTF8.self))
                    return
                }
                print(pad("NODE", 14) + pad("STATE", 10) + pad("ALIVE", 7) + pad("HEARTBEAT", 11) + pad("LINK", 22)
                    + pad("ROOMS", 7) + pad("OCCUPANTS", 11) + pad("SESSIONS", 10) + "RING SHARE")
                for member in rows {
                    let ringShare: String
                    if allRooms.isEmpty {
                        ringShare = member.inRing ? String(format: "%.1f%%", 100.0 / Double(max(ring.nodes.count, 1))) : "-"
                    } else {
                        ringShare = String(format: "%.1f%%", 100.0 * Double(share[member.name] ?? 0) / Double(allRooms.count))
                    }
                    print(
                        pad(member.name, 14) + pad(member.state, 10) + pad(member.alive ? "yes" : "NO", 7)
                            + pad(String(format: "%.1fs ago", member.silentFor), 11) + pad(member.linkAddress, 22)
                            + pad("\(rooms[member.name] ?? 0)", 7) + pad("\(occupants[member.name] ?? 0)", 11)
                            + pad("\(sessions[member.name] ?? 0)", 10) + ringShare
                    )
                }
                print("\(ring.nodes.count) node(s) in the ring, \(allRooms.count) room(s)")
                if !unserved.isEmpty {
                    print(
                        "\(unserved.count) room(s) held by a run of a node that is not live (claimed by the ring's owner on "
                            + "their next stanza; `conclave room release ROOM` releases one now):"
                    )
                    for (room, node) in unserved.prefix(20) { print("  \(room) (\(node))") }
                    if unserved.count > 20 { print("  …") }
                }
            }
        }
    }
}

/// `conclave room …`: where a room lives, and changing its affiliations from outside.
struct RoomCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "room", abstract: "Inspect and change rooms.", subcommands: [Where.self, Release.self, AffiliationCommand.self]
    )

    struct Where: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "where", abstract: "The room's owner node and fencing epoch, and the node the ring assigns it."
        )
        @OptionGroup var common: CommonOptions
        @Argument(help: "The room's JID, e.g. lobby@conference.localhost.") var room: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let roomJID = try parseRoom(room)
            let configuration = try common.load()
            let logger = quietLogger(common, configuration)
            try await withDatabase(configuration, logger: logger) { client in
                let members = try await ClusterDatabase(client: client, logger: logger).members()
                let ringOwner = HashRing(nodes: members.filter(\.inRing).map(\.name)).owner(of: roomJID.description)
                let record = try await PostgresRoomStore(client: client, logger: logger).owner(of: roomJID)
                let exists = try await roomExists(client, roomJID, logger: logger)
                if json {
                    let object: [String: Any] = [
                        "room": roomJID.description, "owner": record?.node ?? NSNull(), "epoch": record?.epoch ?? NSNull(),
                        "incarnation": record?.incarnation ?? NSNull(), "owner_live": record?.live ?? false,
                        "ring_owner": ringOwner ?? NSNull(), "exists": exists,
                    ]
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                    print(String(decoding: data, as: UTF8.self))
                    return
                }
                print("\(roomJID): \(exists ? "" : "(no such room) ")\(describe(record)); the ring assigns it to \(ringOwner ?? "no node")")
            }
        }
    }

    struct Release: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Release a room whose ownership is stuck, so that the ring's owner claims it.",
            discussion: """
                A room's owner row names the node incarnation that serves it. A row whose \
                incarnation is not live (the node died, left, or restarted) is released at once. \
                A live owner is asked to release the room if it does not serve it; while it \
                serves the room, the command is refused (drain or stop that node instead).
                """
        )
        @OptionGroup var common: CommonOptions
        @Argument(help: "The room's JID.") var room: String
        @Option(help: "Seconds to wait for a live owner's answer.") var timeout: Double = 5

        func run() async throws {
            let roomJID = try parseRoom(room)
            let configuration = try common.load()
            let logger = quietLogger(common, configuration)
            try await withDatabase(configuration, logger: logger) { client in
                let store = PostgresRoomStore(client: client, logger: logger)
                guard let record = try await store.owner(of: roomJID) else {
                    throw CommandError("\(roomJID) has never been owned: there is nothing to release")
                }
                guard let node = record.node else {
                    print("\(roomJID) is not held by any node (epoch \(record.epoch)): the ring's owner claims it on its next stanza")
                    return
                }
                if !record.live {
                    // Only that row: a claim meanwhile made a new epoch, which stays.
                    var released = false
                    for try await _ in try await client.query(
                        """
                        UPDATE room_owners SET node = NULL, updated_at = now()
                        WHERE room = \(roomJID.description) AND epoch = \(record.epoch) AND node = \(node)
                            AND NOT conclave_owner_live(node, incarnation)
                        RETURNING 1
                        """,
                        logger: logger
                    ) { released = true }
                    if released {
                        print("\(roomJID) released: \(describe(record)) was not live")
                        return
                    }
                    throw CommandError("\(roomJID) changed owner meanwhile: \(describe(try await store.owner(of: roomJID)))")
                }
                try await store.askToRelease(roomJID, holder: node)
                let deadline = ContinuousClock.now + .seconds(timeout)
                while ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                    let now = try await store.owner(of: roomJID)
                    if now?.epoch != record.epoch || now?.node != node || now?.live != true {
                        print("\(roomJID) released by \(node): it did not serve the room; now \(describe(now))")
                        return
                    }
                }
                throw CommandError(
                    "refused: \(describe(record)) is alive and serving \(roomJID) (or did not answer within \(Int(timeout)) s); "
                        + "drain or stop that node to move the room"
                )
            }
        }
    }

    struct AffiliationCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "affiliation", abstract: "Change affiliations.", subcommands: [Set.self]
        )

        struct Set: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Set a JID's affiliation with a room (owner, admin, member, outcast, none).",
                discussion: """
                    The change is committed in PostgreSQL; the room's owner node applies it at once (an \
                    occupant who loses membership of a members-only room is removed with status 321, a \
                    banned one with 301).
                    """
            )
            @OptionGroup var common: CommonOptions
            @Argument(help: "The room's JID.") var room: String
            @Argument(help: "The bare JID whose affiliation changes.") var jid: String
            @Argument(help: "owner, admin, member, outcast or none.") var affiliation: String
            @Option(help: "The reason, shown to the room.") var reason: String?

            func run() async throws {
                let roomJID = try parseRoom(room)
                guard let target = try? JID(jid), target.localpart != nil else {
                    throw ValidationError("'\(jid)' is not a JID like romeo@localhost")
                }
                let value = affiliation.lowercased()
                guard ["owner", "admin", "member", "outcast", "none"].contains(value) else {
                    throw ValidationError("affiliation must be owner, admin, member, outcast or none")
                }
                let configuration = try common.load()
                let logger = quietLogger(common, configuration)
                try await withDatabase(configuration, logger: logger) { client in
                    guard try await roomExists(client, roomJID, logger: logger) else { throw CommandError("no such room: \(roomJID)") }
                    let member = target.bare.description
                    if value == "none" {
                        for try await _ in try await client.query(
                            "DELETE FROM room_affiliations WHERE room = \(roomJID.description) AND jid = \(member) RETURNING 1",
                            logger: logger
                        ) {}
                    } else {
                        for try await _ in try await client.query(
                            """
                            INSERT INTO room_affiliations (room, jid, affiliation, reason) VALUES (\(roomJID.description), \(member), \(value), \(reason))
                            ON CONFLICT (room, jid) DO UPDATE SET affiliation = EXCLUDED.affiliation, reason = EXCLUDED.reason,
                                nick = CASE WHEN EXCLUDED.affiliation = 'outcast' THEN NULL ELSE room_affiliations.nick END,
                                updated_at = now()
                            RETURNING 1
                            """,
                            logger: logger
                        ) {}
                    }
                    print("\(member) is now \(value) of \(roomJID)")
                }
            }
        }
    }
}

/// `conclave node drain NODE`.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Operate on one node.", subcommands: [Drain.self, Undrain.self]
    )

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take a node out of the ring: its rooms move to the other nodes; its clients stay connected.",
            discussion: "Waits until the node owns no room (unless --no-wait). Stop the node afterwards, or undrain it."
        )
        @OptionGroup var common: CommonOptions
        @Argument(help: "The node's name.") var node: String
        @Flag(help: "Return at once instead of waiting for the rooms to move.") var noWait = false
        @Option(help: "Seconds to wait at most.") var timeout: Double = 120

        func run() async throws {
            let configuration = try common.load()
            let logger = quietLogger(common, configuration)
            try await withDatabase(configuration, logger: logger) { client in
                let database = ClusterDatabase(client: client, logger: logger)
                guard let member = try await database.members().first(where: { $0.name == node }), member.alive else {
                    throw CommandError("no live node named \(node)")
                }
                let before = try await ownedRooms(client, node: node, logger: logger)
                _ = try await database.setState(name: node, "draining")
                print("\(node) is draining (\(before) room(s) to move)")
                if noWait { return }
                let start = ContinuousClock.now
                while true {
                    let left = try await ownedRooms(client, node: node, logger: logger)
                    if left == 0 {
                        print("\(node) drained: \(before) room(s) moved in \(ContinuousClock.now - start)")
                        return
                    }
                    if ContinuousClock.now - start > .seconds(timeout) {
                        throw CommandError("\(node) still owns \(left) room(s) after \(Int(timeout)) s")
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }

    struct Undrain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Put a drained node back into the ring.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "The node's name.") var node: String

        func run() async throws {
            let configuration = try common.load()
            let logger = quietLogger(common, configuration)
            try await withDatabase(configuration, logger: logger) { client in
                guard try await ClusterDatabase(client: client, logger: logger).setState(name: node, "up") else {
                    throw CommandError("no node named \(node)")
                }
                print("\(node) is back in the ring")
            }
        }
    }
}

private func ownedRooms(_ client: PostgresClient, node: String, logger: Logger) async throws -> Int {
    var count = 0
    for try await value in try await client.query(
        "SELECT count(*)::int FROM room_owners o JOIN rooms r ON r.jid = o.room WHERE o.node = \(node)", logger: logger
    ).decode(Int.self) { count = value }
    return count
}

/// A room's owner row in words.
private func describe(_ record: RoomOwnerRecord?) -> String {
    guard let record else { return "never owned" }
    guard let node = record.node else { return "released, epoch \(record.epoch)" }
    let incarnation = record.incarnation.map { "incarnation \($0)" } ?? "an incarnation before incarnations were recorded"
    return "owned by \(node) (\(incarnation), \(record.live ? "live" : "NOT LIVE: claimable")), epoch \(record.epoch)"
}

private func roomExists(_ client: PostgresClient, _ room: JID, logger: Logger) async throws -> Bool {
    var exists = false
    for try await _ in try await client.query("SELECT 1 FROM rooms WHERE jid = \(room.description)", logger: logger)
        .decode(Int.self)
    {
        exists = true
    }
    return exists
}

private func parseRoom(_ text: String) throws -> JID {
    guard let jid = try? JID(text), jid.localpart != nil, jid.isBare else {
        throw ValidationError("'\(text)' is not a room JID like lobby@conference.localhost")
    }
    return jid
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}

/// CLI commands log warnings only, unless asked otherwise.
private func quietLogger(_ common: CommonOptions, _ configuration: ServerConfiguration) -> Logger {
    var configuration = configuration
    if common.logLevel == nil { configuration.logLevel = .warning }
    return common.makeLogger(configuration)
}
