public import Logging
public import PostgresNIO

/// A node as the `cluster_nodes` table has it.
public struct ClusterMember: Sendable, Hashable {
    public var name: String
    public var linkAddress: String
    public var incarnation: Int64
    /// `up`, `draining` or `left`.
    public var state: String
    /// The lease has not expired (by the database's clock).
    public var alive: Bool
    /// Seconds since the last heartbeat (by the database's clock).
    public var silentFor: Double

    /// In the ring: alive and neither draining nor gone.
    public var inRing: Bool { alive && state == "up" }
    /// May still hold rooms and sessions: alive and not gone.
    public var reachable: Bool { alive && state != "left" }
}

/// One row of the `events` table.
public struct ClusterEvent: Sendable, Hashable {
    public var id: Int64
    /// `nodes`, `affiliation`, `configuration`, `destroyed`, `released`.
    public var kind: String
    public var room: String?
    public var node: String?
    /// `node:epoch` of the room owner that made the change; `nil` for anyone else.
    public var origin: String?
}

/// The cluster's SQL: membership and leases, the session directory, events.
public struct ClusterDatabase: Sendable {
    public let client: PostgresClient
    public let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    // MARK: - Membership

    /// Registers (or re-registers) `name` with a fresh lease; returns the new incarnation.
    public func register(name: String, linkAddress: String, leaseSeconds: Double) async throws -> Int64 {
        let rows = try await client.query(
            """
            INSERT INTO cluster_nodes (name, link_address, incarnation, state, lease_until, started_at, heartbeat_at)
            VALUES (\(name), \(linkAddress), 1, 'up', now() + make_interval(secs => \(leaseSeconds)), now(), now())
            ON CONFLICT (name) DO UPDATE SET link_address = EXCLUDED.link_address,
                incarnation = cluster_nodes.incarnation + 1, state = 'up', lease_until = EXCLUDED.lease_until,
                started_at = now(), heartbeat_at = now()
            RETURNING incarnation
            """,
            logger: logger
        ).decode(Int64.self).all()
        guard let incarnation = rows.first else { throw ClusterError("registration returned nothing") }
        return incarnation
    }

    /// Ends the lease of `name` if it is still running, or ran out less than `recent`
    /// seconds ago: a previous run of the node that crashed (or hung) and was started
    /// again before every other node could notice it die. `true` if there was one.
    public func endLeaseIfAlive(name: String, recent: Double) async throws -> Bool {
        let rows = try await client.query(
            """
            UPDATE cluster_nodes SET lease_until = least(lease_until, now() - interval '1 second')
            WHERE name = \(name) AND state <> 'left' AND lease_until > now() - make_interval(secs => \(recent))
            RETURNING 1
            """,
            logger: logger
        ).decode(Int.self).all()
        return !rows.isEmpty
    }

    /// Extends the lease. `false`: the lease had already expired, or another run of the
    /// node registered since — the node must consider itself dead and start over.
    public func heartbeat(name: String, incarnation: Int64, leaseSeconds: Double) async throws -> Bool {
        let rows = try await client.query(
            Self.heartbeatStatement(name: name, incarnation: incarnation, leaseSeconds: leaseSeconds), logger: logger
        ).decode(Int.self).all()
        return !rows.isEmpty
    }

    /// Renews the lease of this incarnation while it is alive; returns a row if it did.
    public static func heartbeatStatement(name: String, incarnation: Int64, leaseSeconds: Double) -> PostgresQuery {
        """
        UPDATE cluster_nodes SET lease_until = now() + make_interval(secs => \(leaseSeconds)), heartbeat_at = now()
        WHERE name = \(name) AND incarnation = \(incarnation) AND conclave_alive(lease_until) AND state <> 'left'
        RETURNING 1
        """
    }

    public func setState(name: String, _ state: String) async throws -> Bool {
        let rows = try await client.query(
            "UPDATE cluster_nodes SET state = \(state) WHERE name = \(name) RETURNING 1", logger: logger
        ).decode(Int.self).all()
        return !rows.isEmpty
    }

    /// Leaves the cluster for good (graceful stop): no lease, no sessions.
    public func leave(name: String, incarnation: Int64) async throws {
        _ = try await client.query(
            """
            UPDATE cluster_nodes SET state = 'left', lease_until = now()
            WHERE name = \(name) AND incarnation = \(incarnation)
            """,
            logger: logger
        ).all()
        _ = try await client.query("DELETE FROM sessions WHERE node = \(name)", logger: logger).all()
    }

    public func members() async throws -> [ClusterMember] {
        var members: [ClusterMember] = []
        for try await (name, address, incarnation, state, alive, silent) in try await client.query(
            """
            SELECT name, link_address, incarnation, state, conclave_alive(lease_until),
                   extract(epoch FROM now() - heartbeat_at)::float8
            FROM cluster_nodes ORDER BY name
            """,
            logger: logger
        ).decode((String, String, Int64, String, Bool, Double).self) {
            members.append(
                ClusterMember(
                    name: name, linkAddress: address, incarnation: incarnation, state: state, alive: alive,
                    silentFor: silent
                )
            )
        }
        return members
    }

    // MARK: - Session directory

    public func bindSession(_ jid: String, bare: String, node: String) async throws {
        _ = try await client.query(
            """
            INSERT INTO sessions (jid, bare, node, available, priority) VALUES (\(jid), \(bare), \(node), false, 0)
            ON CONFLICT (jid) DO UPDATE SET node = EXCLUDED.node, bound_at = now(), available = false, priority = 0
            """,
            logger: logger
        ).all()
    }

    public func unbindSession(_ jid: String, node: String) async throws {
        _ = try await client.query(
            "DELETE FROM sessions WHERE jid = \(jid) AND node = \(node)", logger: logger
        ).all()
    }

    /// Whether the session `jid` on `node` has sent available presence, and its priority.
    public func setAvailability(_ jid: String, node: String, available: Bool, priority: Int) async throws {
        _ = try await client.query(
            "UPDATE sessions SET available = \(available), priority = \(priority) WHERE jid = \(jid) AND node = \(node)",
            logger: logger
        ).all()
    }

    /// The full JIDs of `bare`, the nodes holding them, and whether each is available
    /// (with its priority).
    public func sessions(ofBare bare: String) async throws -> [(jid: String, node: String, available: Bool, priority: Int)] {
        var found: [(String, String, Bool, Int)] = []
        for try await (jid, node, available, priority) in try await client.query(
            "SELECT jid, node, available, priority FROM sessions WHERE bare = \(bare)", logger: logger
        ).decode((String, String, Bool, Int).self) {
            found.append((jid, node, available, priority))
        }
        return found
    }

    /// The occupants recorded as having their session on `node`, in every room.
    public func occupants(homedAt node: String) async throws -> [(room: String, real: String)] {
        var found: [(String, String)] = []
        for try await (room, real) in try await client.query(
            "SELECT room, real_jid FROM room_occupants WHERE home_node = \(node) ORDER BY room, position", logger: logger
        ).decode((String, String).self) {
            found.append((room, real))
        }
        return found
    }

    /// Forgets the sessions of nodes that are no longer alive.
    public func removeSessions(ofNode node: String) async throws {
        _ = try await client.query("DELETE FROM sessions WHERE node = \(node)", logger: logger).all()
    }

    // MARK: - Events

    public func lastEventID() async throws -> Int64 {
        let rows = try await client.query("SELECT coalesce(max(id), 0) FROM events", logger: logger)
            .decode(Int64.self).all()
        return rows.first ?? 0
    }

    public func events(after id: Int64, limit: Int = 1000) async throws -> [ClusterEvent] {
        var events: [ClusterEvent] = []
        for try await (id, kind, room, node, origin) in try await client.query(
            "SELECT id, kind, room, node, origin FROM events WHERE id > \(id) ORDER BY id LIMIT \(limit)",
            logger: logger
        ).decode((Int64, String, String?, String?, String?).self) {
            events.append(ClusterEvent(id: id, kind: kind, room: room, node: node, origin: origin))
        }
        return events
    }

    /// Events older than an hour are of no use to anyone catching up.
    public func pruneEvents() async throws {
        _ = try await client.query(
            "DELETE FROM events WHERE created_at < now() - interval '1 hour'", logger: logger
        ).all()
    }
}

public struct ClusterError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension ClusterDatabase {
    /// Rooms whose recorded owner is no longer alive (or is an earlier incarnation), and
    /// temporary rooms nobody holds: released by a node that stopped while its ring's
    /// next owner was already dead, they would keep their gone occupants until someone
    /// joined. Activated, they lose those occupants and, empty, end.
    public func roomsOwnedByUnreachableNodes() async throws -> [String] {
        var rooms: [String] = []
        for try await room in try await client.query(
            """
            SELECT o.room FROM room_owners o JOIN rooms r ON r.jid = o.room
            WHERE (o.node IS NOT NULL AND NOT conclave_owner_live(o.node, o.incarnation))
                OR (o.node IS NULL AND NOT r.persistent)
            """,
            logger: logger
        ).decode(String.self) {
            rooms.append(room)
        }
        return rooms
    }
}

extension AsyncSequence {
    /// Every element (reads the rows, so server errors are not hidden).
    func all() async throws -> [Element] {
        var elements: [Element] = []
        for try await element in self { elements.append(element) }
        return elements
    }
}
