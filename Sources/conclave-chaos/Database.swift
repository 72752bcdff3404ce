import ClusterTestSupport
import PostgresNIO

// MARK: - What the checks read

extension SQL {
    /// Every row of `room_owners`: room → (owner node, epoch).
    func owners() async throws -> [String: (node: String?, epoch: Int64)] {
        var result: [String: (node: String?, epoch: Int64)] = [:]
        for (room, node, epoch) in try await rows(
            "SELECT room, node, epoch FROM room_owners", as: (String, String?, Int64).self)
        {
            result[room] = (node, epoch)
        }
        return result
    }

    /// The affiliations stored for `rooms`: room → jid → affiliation.
    func affiliations(of rooms: [String]) async throws -> [String: [String: String]] {
        var result: [String: [String: String]] = [:]
        for (room, jid, affiliation) in try await rows(
            "SELECT room, jid, affiliation FROM room_affiliations WHERE room = ANY(\(rooms))",
            as: (String, String, String).self
        ) {
            result[room, default: [:]][jid] = affiliation
        }
        return result
    }

    struct StoredRoom: Sendable {
        var persistent: Bool
        var membersOnly: Bool
        var name: String
        /// Created and never configured.
        var locked: Bool
    }

    /// The stored configuration of those of `rooms` that exist.
    func rooms(_ rooms: [String]) async throws -> [String: StoredRoom] {
        var result: [String: StoredRoom] = [:]
        for (jid, persistent, membersOnly, name, locked) in try await rows(
            """
            SELECT jid, persistent, coalesce((configuration->>'membersOnly')::boolean, false),
                   coalesce(configuration->>'name', ''), locked
            FROM rooms WHERE jid = ANY(\(rooms))
            """,
            as: (String, Bool, Bool, String, Bool).self
        ) {
            result[jid] = StoredRoom(persistent: persistent, membersOnly: membersOnly, name: name, locked: locked)
        }
        return result
    }

    /// Seconds left of PostgreSQL's restart grace (every registered node counts as alive
    /// for 10 s after PostgreSQL started: migration 0005); 0 when it is over.
    func restartGraceLeft() async throws -> Double {
        let left = try await scalar(
            "SELECT extract(epoch FROM pg_postmaster_start_time() + interval '10 seconds' - now())::float8",
            as: Double.self
        )
        return max(left ?? 0, 0)
    }
}
