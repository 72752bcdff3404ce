public import XMPPCore
import Synchronization

/// An `AccountStore` in memory, for unit tests.
public final class InMemoryAccountStore: AccountStore {
    private let accounts = Mutex<[JID: StoredCredentials]>([:])

    public init() {}

    public func credentials(for account: JID) async throws -> StoredCredentials? {
        accounts.withLock { $0[account.bare] }
    }

    public func createAccount(_ account: JID, credentials: StoredCredentials) async throws {
        try accounts.withLock { (accounts: inout [JID: StoredCredentials]) throws(AccountStoreError) in
            guard accounts[account.bare] == nil else { throw .accountExists(account.bare) }
            accounts[account.bare] = credentials
        }
    }

    public func updateCredentials(_ account: JID, credentials: StoredCredentials) async throws {
        try accounts.withLock { (accounts: inout [JID: StoredCredentials]) throws(AccountStoreError) in
            guard accounts[account.bare] != nil else { throw .accountNotFound(account.bare) }
            accounts[account.bare] = credentials
        }
    }

    public func deleteAccount(_ account: JID) async throws {
        try accounts.withLock { (accounts: inout [JID: StoredCredentials]) throws(AccountStoreError) in
            guard accounts.removeValue(forKey: account.bare) != nil else { throw .accountNotFound(account.bare) }
        }
    }

    public func listAccounts(domain: String?) async throws -> [JID] {
        accounts.withLock { accounts in
            accounts.keys.filter { domain == nil || $0.domainpart == domain }.sorted()
        }
    }
}

/// `OfflineStore` in memory, for unit tests: keeps messages for the accounts of `accounts`.
public final class InMemoryOfflineStore: OfflineStore {
    private let accounts: any AccountStore
    private let kept = Mutex<[JID: [OfflineMessage]]>([:])
    private let clock: @Sendable () -> Double

    public init(accounts: any AccountStore, clock: @escaping @Sendable () -> Double = { 0 }) {
        self.accounts = accounts
        self.clock = clock
    }

    public func keep(_ stanza: String, for account: JID, limit: Int) async throws -> Bool {
        guard try await accounts.credentials(for: account.bare) != nil else { return false }
        let now = clock()
        return kept.withLock { kept in
            guard (kept[account.bare]?.count ?? 0) < limit else { return false }
            kept[account.bare, default: []].append(OfflineMessage(stanza: stanza, stamp: now))
            return true
        }
    }

    public func take(for account: JID) async throws -> [OfflineMessage] {
        kept.withLock { $0.removeValue(forKey: account.bare) ?? [] }
    }
}
