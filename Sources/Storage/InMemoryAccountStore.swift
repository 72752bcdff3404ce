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
