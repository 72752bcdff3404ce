import Testing
import PostgresNIO
import ServerRuntime
import Storage
import StoragePostgres
import XMPPCore
import XMPPStream

@Suite(.enabled(if: TestEnvironment.hasDatabase))
struct AccountTests {
    @Test func createChangeAndDeleteAnAccount() async throws {
        let store = try await TestDatabase.shared.accounts()
        let jid = try JID("acct\(UInt32.random(in: 0...UInt32.max))@localhost")
        try await store.createAccount(jid, credentials: .derive(password: "one"))
        await #expect(throws: AccountStoreError.accountExists(jid)) {
            try await store.createAccount(jid, credentials: .derive(password: "two"))
        }
        let stored = try #require(try await store.credentials(for: jid))
        #expect(stored.verify(password: "one"))
        #expect(!stored.verify(password: "two"))
        try await store.updateCredentials(jid, credentials: .derive(password: "two"))
        #expect(try await store.credentials(for: jid)?.verify(password: "two") == true)
        #expect(try await store.listAccounts(domain: "localhost").contains(jid))
        try await store.deleteAccount(jid)
        #expect(try await store.credentials(for: jid) == nil)
        await #expect(throws: AccountStoreError.accountNotFound(jid)) { try await store.deleteAccount(jid) }
        await #expect(throws: AccountStoreError.accountNotFound(jid)) {
            try await store.updateCredentials(jid, credentials: .derive(password: "x"))
        }
    }

    @Test func thePasswordIsNotStored() async throws {
        let client = try await TestDatabase.shared.connected()
        let jid = try await TestDatabase.shared.makeAccount(password: "very-secret-password")
        let rows = try await client.query(
            "SELECT row_to_json(accounts)::text FROM accounts WHERE username = \(jid.localpart!)"
        )
        var text = ""
        for try await row in rows.decode(String.self) { text += row }
        #expect(!text.isEmpty)
        #expect(!text.contains("very-secret-password"))
    }

    @Test func migrationsAreIdempotent() async throws {
        let client = try await TestDatabase.shared.connected()
        let migrator = try Migrator(directory: TestEnvironment.migrations)
        let again = try await migrator.migrate(client: client, logger: TestEnvironment.logger)
        #expect(again.isEmpty)
        let rows = try await client.query("SELECT count(*) FROM schema_migrations")
        for try await count in rows.decode(Int.self) { #expect(count == migrator.migrations.count) }
    }
}
