public import Logging
public import PostgresNIO
public import Storage
public import XMPPCore

/// `RoomStore` on the `rooms`, `room_affiliations`, `room_history`, `room_occupants`
/// and `room_owners` tables. Every write is fenced: it runs in a transaction that
/// first checks, under a share lock, that the writer's (node, epoch) still owns the
/// room, so a deposed owner cannot change anything (docs/cluster.md).
public struct PostgresRoomStore: RoomStore {
    private let client: PostgresClient
    private let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    public func loadRoom(_ room: JID) async throws -> StoredRoom? {
        do {
            return try await read(room)
        } catch {
            throw PostgresErrorKind.permanent(error) ?? error
        }
    }

    private func read(_ room: JID) async throws -> StoredRoom? {
        let jid = room.description
        var stored: StoredRoom?
        for try await (configuration, persistent, subject, nick, stamp, locked) in try await client.query(
            "SELECT configuration::text, persistent, subject, subject_nick, subject_stamp, locked FROM rooms WHERE jid = \(jid)",
            logger: logger
        ).decode((String, Bool, String, String?, Double?, Bool).self) {
            var value = StoredRoom(
                jid: room, configuration: configuration, persistent: persistent, subject: subject, subjectNick: nick,
                subjectStamp: stamp
            )
            value.locked = locked
            stored = value
        }
        guard var stored else { return nil }
        for try await (member, affiliation, reason, nick) in try await client.query(
            "SELECT jid, affiliation, reason, nick FROM room_affiliations WHERE room = \(jid) ORDER BY jid", logger: logger
        ).decode((String, String, String?, String?).self) {
            guard let member = try? JID(member) else { continue }
            stored.affiliations.append(StoredAffiliation(jid: member, affiliation: affiliation, reason: reason, nick: nick))
        }
        for try await (stanza, stamp, nick, id) in try await client.query(
            "SELECT stanza, stamp, nick, stanza_id FROM room_history WHERE room = \(jid) ORDER BY id", logger: logger
        ).decode((String, Double, String, String?).self) {
            stored.history.append(StoredHistoryEntry(stanza: stanza, stamp: stamp, nick: nick, id: id))
        }
        for try await (real, nick, role, presence, home, position) in try await client.query(
            """
            SELECT real_jid, nick, role, presence, home_node, position FROM room_occupants
            WHERE room = \(jid) ORDER BY position
            """,
            logger: logger
        ).decode((String, String, String, String, String, Int64).self) {
            guard let real = try? JID(real) else { continue }
            stored.occupants.append(
                StoredOccupant(realJID: real, nick: nick, role: role, presence: presence, homeNode: home, position: position)
            )
        }
        return stored
    }

    public func claim(_ room: JID, node: String, incarnation: Int64) async throws -> Int64? {
        // Claimed only by a live incarnation, and only from no one: a released row, this
        // incarnation's own, or one whose incarnation is not the live one of its node (an
        // earlier run under the same name, a node that died or left).
        let rows = try await client.query(
            """
            INSERT INTO room_owners AS o (room, node, incarnation, epoch)
            SELECT \(room.description), \(node), \(incarnation), 1
            WHERE conclave_owner_live(\(node), \(incarnation))
            ON CONFLICT (room) DO UPDATE SET node = EXCLUDED.node, incarnation = EXCLUDED.incarnation,
                epoch = o.epoch + 1, updated_at = now()
            WHERE o.node IS NULL OR (o.node = EXCLUDED.node AND o.incarnation = EXCLUDED.incarnation)
                OR NOT conclave_owner_live(o.node, o.incarnation)
            RETURNING epoch
            """,
            logger: logger
        ).decode(Int64.self).all()
        return rows.first
    }

    public func owner(of room: JID) async throws -> RoomOwnerRecord? {
        var found: RoomOwnerRecord?
        for try await (node, incarnation, epoch, live) in try await client.query(
            """
            SELECT node, incarnation, epoch, node IS NOT NULL AND conclave_owner_live(node, incarnation)
            FROM room_owners WHERE room = \(room.description)
            """,
            logger: logger
        ).decode((String?, Int64?, Int64, Bool).self) {
            found = RoomOwnerRecord(node: node, incarnation: incarnation, epoch: epoch, live: live)
        }
        return found
    }

    public func heldRooms(node: String, incarnation: Int64) async throws -> [(room: JID, epoch: Int64)] {
        var held: [(JID, Int64)] = []
        for try await (room, epoch) in try await client.query(
            "SELECT room, epoch FROM room_owners WHERE node = \(node) AND incarnation = \(incarnation)", logger: logger
        ).decode((String, Int64).self) {
            if let jid = try? JID(room) { held.append((jid, epoch)) }
        }
        return held
    }

    public func askToRelease(_ room: JID, holder: String) async throws {
        _ = try await client.query(
            "INSERT INTO events (kind, room, node) VALUES ('release-wanted', \(room.description), \(holder))", logger: logger
        ).collect()
    }

    public func release(_ room: JID, fence: RoomFence) async throws {
        _ = try await client.query(
            """
            UPDATE room_owners SET node = NULL, updated_at = now()
            WHERE room = \(room.description) AND node = \(fence.node) AND epoch = \(fence.epoch)
            """,
            logger: logger
        ).collect()
    }

    public func publicRooms(after: String?, limit: Int) async throws
        -> (rooms: [(jid: JID, name: String)], count: Int)
    {
        var count = 0
        for try await total in try await client.query(
            """
            SELECT count(*) FROM rooms
            WHERE NOT locked AND coalesce((configuration->>'isPublic')::boolean, false)
            """,
            logger: logger
        ).decode(Int.self) {
            count = total
        }
        var found: [(JID, String)] = []
        // `COLLATE "C"`: byte order, the same for the page boundary as for the order.
        for try await (jid, name) in try await client.query(
            """
            SELECT jid, coalesce(configuration->>'name', '') FROM rooms
            WHERE NOT locked AND coalesce((configuration->>'isPublic')::boolean, false)
                AND (\(after)::text IS NULL OR jid COLLATE "C" > \(after))
            ORDER BY jid COLLATE "C" LIMIT \(limit)
            """,
            logger: logger
        ).decode((String, String).self) {
            guard let room = try? JID(jid) else { continue }
            found.append((room, name.isEmpty ? room.localpart ?? "" : name))
        }
        return (found, count)
    }

    public func ownedRoomCount(_ owner: JID) async throws -> Int {
        let jid = owner.bare.description
        for try await count in try await client.query(
            "SELECT count(*) FROM room_affiliations WHERE jid = \(jid) AND affiliation = 'owner'", logger: logger
        ).decode(Int.self) {
            return count
        }
        return 0
    }

    public func apply(_ changes: [StoredRoomChange], to room: JID, fence: RoomFence) async throws {
        guard !changes.isEmpty else { return }
        let jid = room.description
        let logger = self.logger
        do {
            if let history = Self.historyOnly(changes) {
                // The hot path (a room's messages): one statement, one round trip.
                try await storeHistory(history, jid: jid, room: room, fence: fence, logger: logger)
            } else {
                try await transaction(changes, jid: jid, room: room, fence: fence, logger: logger)
            }
        } catch let error as PostgresTransactionError {
            if let stale = error.closureError as? StaleOwnerError { throw stale }
            throw PostgresErrorKind.permanent(error) ?? error
        } catch let error as StaleOwnerError {
            throw error
        } catch {
            throw PostgresErrorKind.permanent(error) ?? error
        }
    }

    /// Consecutive history entries, stored as one: the entries that the last one's `keep`
    /// leaves (the others would be trimmed at once), and how many older rows stay.
    struct HistoryRun {
        var stamps: [Double] = []
        var nicks: [String] = []
        var stanzas: [String] = []
        /// Stanza-ids, "" for none (an array of text cannot hold NULLs here).
        var ids: [String] = []
        /// Entries the room keeps in all after this run. The trim keeps that many minus
        /// those the run added (the statement does not see its own rows), and is skipped
        /// when a run of entries added none: it was stored before, and trimmed then, by a
        /// count that was right at the time but may not be now (a young room's history
        /// has grown since), so trimming again could drop newer entries.
        var keep = 0

        init(_ entries: [(entry: StoredHistoryEntry, keep: Int)]) {
            let keep = max(entries.last?.keep ?? 0, 0)
            for (entry, _) in entries.suffix(keep) {
                stamps.append(entry.stamp)
                nicks.append(entry.nick)
                stanzas.append(entry.stanza)
                ids.append(entry.id ?? "")
            }
            self.keep = keep
        }
    }

    /// The changes, if they are all history entries.
    static func historyOnly(_ changes: [StoredRoomChange]) -> HistoryRun? {
        var entries: [(entry: StoredHistoryEntry, keep: Int)] = []
        for change in changes {
            guard case .history(let entry, let keep) = change else { return nil }
            entries.append((entry, keep))
        }
        return HistoryRun(entries)
    }

    /// History entries without a transaction around them: the statement checks the fence
    /// under a share lock, adds the entries in their order and trims the room's history,
    /// all or nothing (one statement is its own transaction). No trigger reads
    /// `conclave.origin` on `room_history`, so it is not set.
    private func storeHistory(
        _ run: HistoryRun, jid: String, room: JID, fence: RoomFence, logger: Logger
    ) async throws {
        let owned = try await client.query(
            """
            WITH owner AS (
                SELECT 1 FROM room_owners WHERE room = \(jid) AND node = \(fence.node) AND epoch = \(fence.epoch)
                FOR SHARE
            ), added AS (
                INSERT INTO room_history (room, stamp, nick, stanza, stanza_id)
                SELECT \(jid), entry.stamp, entry.nick, entry.stanza, NULLIF(entry.id, '')
                FROM unnest(\(run.stamps)::float8[], \(run.nicks)::text[], \(run.stanzas)::text[], \(run.ids)::text[])
                    WITH ORDINALITY AS entry(stamp, nick, stanza, id, n)
                WHERE EXISTS (SELECT 1 FROM owner)
                ORDER BY entry.n
                ON CONFLICT (room, stanza_id) DO NOTHING
                RETURNING 1
            ), trimmed AS (
                DELETE FROM room_history WHERE room = \(jid) AND EXISTS (SELECT 1 FROM owner)
                    AND ((SELECT count(*) FROM added) > 0 OR \(run.stamps.isEmpty)) AND id NOT IN
                    (SELECT id FROM room_history WHERE room = \(jid) ORDER BY id DESC
                     LIMIT greatest(\(run.keep) - (SELECT count(*) FROM added), 0))
                RETURNING 1
            )
            SELECT count(*)::int8 FROM owner
            """,
            logger: logger
        ).decode(Int64.self).all()
        guard owned.first ?? 0 > 0 else { throw StaleOwnerError(room: room, fence: fence) }
    }

    private func transaction(
        _ changes: [StoredRoomChange], jid: String, room: JID, fence: RoomFence, logger: Logger
    ) async throws {
        try await client.withTransaction(logger: logger) { connection in
            // The origin (for the triggers' notifications) and the fence, in one round trip.
            let owned = try await connection.query(
                """
                SELECT set_config('conclave.origin', \(fence.description), true) FROM room_owners
                WHERE room = \(jid) AND node = \(fence.node) AND epoch = \(fence.epoch)
                FOR SHARE
                """,
                logger: logger
            ).decode(String.self).all()
            guard !owned.isEmpty else { throw StaleOwnerError(room: room, fence: fence) }
            var history: [(entry: StoredHistoryEntry, keep: Int)] = []
            func storeHistory() async throws {
                guard !history.isEmpty else { return }
                try await Self.addHistory(HistoryRun(history), jid: jid, connection: connection, logger: logger)
                history = []
            }
            for change in changes {
                if case .history(let entry, let keep) = change {
                    history.append((entry, keep))
                    continue
                }
                try await storeHistory()
                try await Self.apply(change, jid: jid, connection: connection, logger: logger)
            }
            try await storeHistory()
        }
    }

    /// Consecutive history entries inside a transaction that checked the fence.
    private static func addHistory(
        _ run: HistoryRun, jid: String, connection: PostgresConnection, logger: Logger
    ) async throws {
        _ = try await connection.query(
            """
            WITH added AS (
                INSERT INTO room_history (room, stamp, nick, stanza, stanza_id)
                SELECT \(jid), entry.stamp, entry.nick, entry.stanza, NULLIF(entry.id, '')
                FROM unnest(\(run.stamps)::float8[], \(run.nicks)::text[], \(run.stanzas)::text[], \(run.ids)::text[])
                    WITH ORDINALITY AS entry(stamp, nick, stanza, id, n)
                ORDER BY entry.n
                ON CONFLICT (room, stanza_id) DO NOTHING
                RETURNING 1
            )
            DELETE FROM room_history WHERE room = \(jid)
                AND ((SELECT count(*) FROM added) > 0 OR \(run.stamps.isEmpty)) AND id NOT IN
                (SELECT id FROM room_history WHERE room = \(jid) ORDER BY id DESC
                 LIMIT greatest(\(run.keep) - (SELECT count(*) FROM added), 0))
            """,
            logger: logger
        ).collect()
    }

    private static func apply(
        _ change: StoredRoomChange, jid: String, connection: PostgresConnection, logger: Logger
    ) async throws {
        switch change {
        case .configuration(let json, let persistent, let locked):
            _ = try await connection.query(
                """
                INSERT INTO rooms (jid, configuration, persistent, locked)
                VALUES (\(jid), \(json)::jsonb, \(persistent), \(locked))
                ON CONFLICT (jid) DO UPDATE SET configuration = EXCLUDED.configuration,
                    persistent = EXCLUDED.persistent, locked = EXCLUDED.locked, updated_at = now()
                """,
                logger: logger
            ).collect()
        case .occupant(let occupant):
            _ = try await connection.query(
                """
                INSERT INTO room_occupants (room, real_jid, nick, role, presence, home_node, position)
                VALUES (\(jid), \(occupant.realJID.description), \(occupant.nick), \(occupant.role),
                        \(occupant.presence), \(occupant.homeNode), \(occupant.position))
                ON CONFLICT (room, real_jid) DO UPDATE SET nick = EXCLUDED.nick, role = EXCLUDED.role,
                    presence = EXCLUDED.presence, home_node = EXCLUDED.home_node
                """,
                logger: logger
            ).collect()
        case .occupantLeft(let real):
            _ = try await connection.query(
                "DELETE FROM room_occupants WHERE room = \(jid) AND real_jid = \(real.description)", logger: logger
            ).collect()
        case .subject(let subject, let nick, let stamp):
            _ = try await connection.query(
                """
                UPDATE rooms SET subject = \(subject), subject_nick = \(nick), subject_stamp = \(stamp), updated_at = now()
                WHERE jid = \(jid)
                """,
                logger: logger
            ).collect()
        case .affiliation(let member, let affiliation, let reason, let nick):
            if affiliation == "none" {
                _ = try await connection.query(
                    "DELETE FROM room_affiliations WHERE room = \(jid) AND jid = \(member.description)", logger: logger
                ).collect()
            } else {
                _ = try await connection.query(
                    """
                    INSERT INTO room_affiliations (room, jid, affiliation, reason, nick)
                    VALUES (\(jid), \(member.description), \(affiliation), \(reason), \(nick))
                    ON CONFLICT (room, jid) DO UPDATE SET affiliation = EXCLUDED.affiliation,
                        reason = EXCLUDED.reason, nick = EXCLUDED.nick, updated_at = now()
                    """,
                    logger: logger
                ).collect()
            }
        case .history(let entry, let keep):
            try await addHistory(HistoryRun([(entry, keep)]), jid: jid, connection: connection, logger: logger)
        case .deleted:
            _ = try await connection.query("DELETE FROM rooms WHERE jid = \(jid)", logger: logger).collect()
        }
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
