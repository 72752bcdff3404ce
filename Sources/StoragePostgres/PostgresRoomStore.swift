public import Logging
public import PostgresNIO
public import Storage
public import XMPPCore

/// `RoomStore` on the `rooms`, `room_affiliations` and `room_history` tables.
public struct PostgresRoomStore: RoomStore {
    private let client: PostgresClient
    private let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    public func loadRooms() async throws -> [StoredRoom] {
        _ = try await client.query("DELETE FROM rooms WHERE NOT persistent", logger: logger).collect()
        var rooms: [String: StoredRoom] = [:]
        var order: [String] = []
        for try await (jid, configuration, persistent, subject, nick, stamp) in try await client.query(
            "SELECT jid, configuration::text, persistent, subject, subject_nick, subject_stamp FROM rooms ORDER BY jid",
            logger: logger
        ).decode((String, String, Bool, String, String?, Double?).self) {
            guard let roomJID = try? JID(jid) else { continue }
            rooms[jid] = StoredRoom(
                jid: roomJID, configuration: configuration, persistent: persistent, subject: subject, subjectNick: nick,
                subjectStamp: stamp
            )
            order.append(jid)
        }
        for try await (room, jid, affiliation, reason, nick) in try await client.query(
            "SELECT room, jid, affiliation, reason, nick FROM room_affiliations ORDER BY room, jid", logger: logger
        ).decode((String, String, String, String?, String?).self) {
            guard let member = try? JID(jid) else { continue }
            rooms[room]?.affiliations.append(
                StoredAffiliation(jid: member, affiliation: affiliation, reason: reason, nick: nick)
            )
        }
        for try await (room, stanza, stamp, nick) in try await client.query(
            "SELECT room, stanza, stamp, nick FROM room_history ORDER BY room, id", logger: logger
        ).decode((String, String, Double, String).self) {
            rooms[room]?.history.append(StoredHistoryEntry(stanza: stanza, stamp: stamp, nick: nick))
        }
        return order.compactMap { rooms[$0] }
    }

    public func apply(_ change: StoredRoomChange, to room: JID) async throws {
        let jid = room.description
        switch change {
        case .configuration(let json, let persistent):
            _ = try await client.query(
                """
                INSERT INTO rooms (jid, configuration, persistent) VALUES (\(jid), \(json)::jsonb, \(persistent))
                ON CONFLICT (jid) DO UPDATE SET configuration = EXCLUDED.configuration,
                    persistent = EXCLUDED.persistent, updated_at = now()
                """,
                logger: logger
            ).collect()
        case .subject(let subject, let nick, let stamp):
            _ = try await client.query(
                """
                UPDATE rooms SET subject = \(subject), subject_nick = \(nick), subject_stamp = \(stamp), updated_at = now()
                WHERE jid = \(jid)
                """,
                logger: logger
            ).collect()
        case .affiliation(let member, let affiliation, let reason, let nick):
            if affiliation == "none" {
                _ = try await client.query(
                    "DELETE FROM room_affiliations WHERE room = \(jid) AND jid = \(member.description)", logger: logger
                ).collect()
            } else {
                _ = try await client.query(
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
            _ = try await client.query(
                """
                INSERT INTO room_history (room, stamp, nick, stanza)
                VALUES (\(jid), \(entry.stamp), \(entry.nick), \(entry.stanza))
                """,
                logger: logger
            ).collect()
            _ = try await client.query(
                """
                DELETE FROM room_history WHERE room = \(jid) AND id NOT IN
                    (SELECT id FROM room_history WHERE room = \(jid) ORDER BY id DESC LIMIT \(keep))
                """,
                logger: logger
            ).collect()
        case .deleted:
            _ = try await client.query("DELETE FROM rooms WHERE jid = \(jid)", logger: logger).collect()
        }
    }
}
