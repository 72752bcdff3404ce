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

    public func keep(_ stanza: String, for account: JID, limit: Int) async throws -> Bool {
        guard let username = account.localpart else { return false }
        let domain = account.domainpart
        // One statement: only for an existing account, and only under the limit (two
        // messages kept at once may both pass it: the bound is approximate by one).
        let rows = try await client.query(
            """
            INSERT INTO offline_messages (domain, username, stanza)
            SELECT \(domain), \(username), \(stanza)
            WHERE EXISTS (SELECT 1 FROM accounts WHERE domain = \(domain) AND username = \(username))
              AND (SELECT count(*) FROM offline_messages WHERE domain = \(domain) AND username = \(username)) < \(limit)
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
