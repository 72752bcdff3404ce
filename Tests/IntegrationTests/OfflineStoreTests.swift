import Testing
import PostgresNIO
import Storage
import StoragePostgres
import XMPPCore
import XMPPStream

/// Offline messages (XEP-0160) in PostgreSQL: kept only for existing accounts and under
/// the limits (count and bytes), taken oldest first and only once, gone with the account.
@Suite(.enabled(if: TestEnvironment.hasDatabase))
struct OfflineStoreTests {
    @Test func keptInOrderTakenOnceAndBoundedPerAccount() async throws {
        let client = try await TestDatabase.shared.connected()
        let store = PostgresOfflineStore(client: client, logger: TestEnvironment.logger)
        let juliet = try await TestDatabase.shared.makeAccount(password: "x")
        for index in 1...3 {
            #expect(try await store.keep("<message id='m\(index)'><body>\(index)</body></message>", for: juliet, limit: 3, bytes: 1 << 20))
        }
        // The fourth is over the limit: not kept (the sender gets it back).
        #expect(try await store.keep("<message id='m4'/>", for: juliet, limit: 3, bytes: 1 << 20) == false)
        let taken = try await store.take(for: juliet)
        #expect(taken.map(\.stanza) == (1...3).map { "<message id='m\($0)'><body>\($0)</body></message>" })
        #expect(taken.allSatisfy { $0.stamp > 1_700_000_000 })
        #expect(try await store.take(for: juliet).isEmpty)
    }

    @Test func nothingIsKeptForAnAccountThatDoesNotExist() async throws {
        let client = try await TestDatabase.shared.connected()
        let store = PostgresOfflineStore(client: client, logger: TestEnvironment.logger)
        let nobody = try JID("nobody\(UInt32.random(in: 0...UInt32.max))@localhost")
        #expect(try await store.keep("<message/>", for: nobody, limit: 100, bytes: 1 << 20) == false)
    }

    @Test func deletingTheAccountDeletesItsMessages() async throws {
        let client = try await TestDatabase.shared.connected()
        let store = PostgresOfflineStore(client: client, logger: TestEnvironment.logger)
        let accounts = try await TestDatabase.shared.accounts()
        let juliet = try await TestDatabase.shared.makeAccount(password: "x")
        #expect(try await store.keep("<message/>", for: juliet, limit: 100, bytes: 1 << 20))
        try await accounts.deleteAccount(juliet)
        try await accounts.createAccount(juliet, credentials: .derive(password: "y"))
        #expect(try await store.take(for: juliet).isEmpty)
    }

    @Test func boundedInBytesPerAccount() async throws {
        let client = try await TestDatabase.shared.connected()
        let store = PostgresOfflineStore(client: client, logger: TestEnvironment.logger)
        let juliet = try await TestDatabase.shared.makeAccount(password: "x")
        let sixty = "<message><body>" + String(repeating: "a", count: 28) + "</body></message>"
        #expect(sixty.utf8.count == 60)
        #expect(try await store.keep(sixty, for: juliet, limit: 100, bytes: 59) == false, "alone over the bound")
        #expect(try await store.keep(sixty, for: juliet, limit: 100, bytes: 120))
        #expect(try await store.keep(sixty, for: juliet, limit: 100, bytes: 120), "exactly at the bound")
        #expect(try await store.keep("<message/>", for: juliet, limit: 100, bytes: 120) == false)
        #expect(try await store.keep("<message/>", for: juliet, limit: 0, bytes: 1 << 20) == false, "0 keeps none")
        #expect(try await store.take(for: juliet).count == 2)
    }
}
