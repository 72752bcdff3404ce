public import Logging
public import PostgresNIO
public import Storage
public import XMPPCore

/// `OfflineStore` on the `offline_messages` table (migration 0011).
public struct PostgresOfflineStore: OfflineStore {
    private let client: PostgresClient
    private let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    public func keep(_ stanza: String, for account: JID, limit: Int, bytes: Int) async throws -> Bool {
        guard let username = account.localpart, limit > 0, stanza.utf8.count <= bytes else { return false }
        let domain = account.domainpart
        // One statement: only for an existing account, and only under the limits (two
        // messages kept at once may both pass them: the bounds are approximate by one).
        let rows = try await client.query(
            """
            INSERT INTO offline_messages (domain, username, stanza)
            SELECT \(domain), \(username), \(stanza)
            WHERE EXISTS (SELECT 1 FROM accounts WHERE domain = \(domain) AND username = \(username))
              AND (SELECT count(*) < \(limit) AND coalesce(sum(octet_length(stanza)), 0) + octet_length(\(stanza)) <= \(bytes)
                   FROM offline_messages WHERE domain = \(domain) AND username = \(username))
            RETURNING id
            """,
            logger: logger
        )
        return try await rows.collect().count == 1
    }

    public func take(for account: JID) async throws -> [OfflineMessage] {
        guard let username = account.localpart else { return [] }
        let domain = account.domainpart
        var taken: [(Int64, OfflineMessage)] = []
        for try await (id, stanza, stamp) in try await client.query(
            """
            DELETE FROM offline_messages WHERE domain = \(domain) AND username = \(username)
            RETURNING id, stanza, extract(epoch FROM stored_at)::float8
            """,
            logger: logger
        ).decode((Int64, String, Double).self) {
            taken.append((id, OfflineMessage(stanza: stanza, stamp: stamp)))
        }
        return taken.sorted { $0.0 < $1.0 }.map(\.1)
    }
}
