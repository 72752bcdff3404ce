public import Logging
public import PostgresNIO
public import Storage
public import XMPPCore
import NIOCore

/// `AccountStore` on the `accounts` table.
public struct PostgresAccountStore: AccountStore {
    private let client: PostgresClient
    private let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    public func credentials(for account: JID) async throws -> StoredCredentials? {
        let (domain, username) = try key(account)
        let rows = try await client.query(
            """
            SELECT salt, iterations, sha1_stored_key, sha1_server_key, sha256_stored_key, sha256_server_key
            FROM accounts WHERE domain = \(domain) AND username = \(username)
            """,
            logger: logger
        )
        for try await (salt, iterations, sha1Stored, sha1Server, sha256Stored, sha256Server) in rows.decode(
            (ByteBuffer, Int, ByteBuffer, ByteBuffer, ByteBuffer, ByteBuffer).self
        ) {
            return StoredCredentials(
                salt: Array(salt.readableBytesView),
                iterations: iterations,
                sha1: SCRAMKeys(storedKey: Array(sha1Stored.readableBytesView), serverKey: Array(sha1Server.readableBytesView)),
                sha256: SCRAMKeys(
                    storedKey: Array(sha256Stored.readableBytesView),
                    serverKey: Array(sha256Server.readableBytesView)
                )
            )
        }
        return nil
    }

    public func createAccount(_ account: JID, credentials: StoredCredentials) async throws {
        let (domain, username) = try key(account)
        let c = Encoded(credentials)
        let rows = try await client.query(
            """
            INSERT INTO accounts (domain, username, salt, iterations, sha1_stored_key, sha1_server_key,
                                  sha256_stored_key, sha256_server_key)
            VALUES (\(domain), \(username), \(c.salt), \(credentials.iterations), \(c.sha1Stored), \(c.sha1Server),
                    \(c.sha256Stored), \(c.sha256Server))
            ON CONFLICT (domain, username) DO NOTHING
            RETURNING username
            """,
            logger: logger
        )
        guard try await rows.collect().count == 1 else { throw AccountStoreError.accountExists(account.bare) }
    }

    public func updateCredentials(_ account: JID, credentials: StoredCredentials) async throws {
        let (domain, username) = try key(account)
        let c = Encoded(credentials)
        let rows = try await client.query(
            """
            UPDATE accounts SET salt = \(c.salt), iterations = \(credentials.iterations),
                sha1_stored_key = \(c.sha1Stored), sha1_server_key = \(c.sha1Server),
                sha256_stored_key = \(c.sha256Stored), sha256_server_key = \(c.sha256Server), updated_at = now()
            WHERE domain = \(domain) AND username = \(username)
            RETURNING username
            """,
            logger: logger
        )
        guard try await rows.collect().count == 1 else { throw AccountStoreError.accountNotFound(account.bare) }
    }

    public func deleteAccount(_ account: JID) async throws {
        let (domain, username) = try key(account)
        let rows = try await client.query(
            "DELETE FROM accounts WHERE domain = \(domain) AND username = \(username) RETURNING username",
            logger: logger
        )
        guard try await rows.collect().count == 1 else { throw AccountStoreError.accountNotFound(account.bare) }
    }

    public func listAccounts(domain: String?) async throws -> [JID] {
        let rows = try await client.query(
            """
            SELECT username, domain FROM accounts
            WHERE \(domain)::text IS NULL OR domain = \(domain)
            ORDER BY domain, username
            """,
            logger: logger
        )
        var accounts: [JID] = []
        for try await (username, domain) in rows.decode((String, String).self) {
            if let jid = try? JID(localpart: username, domainpart: domain) { accounts.append(jid) }
        }
        return accounts
    }

    private func key(_ account: JID) throws -> (String, String) {
        guard let localpart = account.localpart else { throw AccountStoreError.accountNotFound(account) }
        return (account.domainpart, localpart)
    }

    private struct Encoded {
        var salt, sha1Stored, sha1Server, sha256Stored, sha256Server: ByteBuffer

        init(_ credentials: StoredCredentials) {
            salt = ByteBuffer(bytes: credentials.salt)
            sha1Stored = ByteBuffer(bytes: credentials.sha1.storedKey)
            sha1Server = ByteBuffer(bytes: credentials.sha1.serverKey)
            sha256Stored = ByteBuffer(bytes: credentials.sha256.storedKey)
            sha256Server = ByteBuffer(bytes: credentials.sha256.serverKey)
        }
    }
}
