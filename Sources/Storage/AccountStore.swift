public import XMPPCore

/// `Storage` holds the storage protocols the services are written against, and an
/// in-memory implementation for unit tests. `StoragePostgres` implements them on
/// PostgreSQL.

/// The SCRAM keys of one hash function (RFC 5802 §3): enough to verify a client
/// and prove the server, never enough to log in.
public struct SCRAMKeys: Sendable, Hashable {
    public var storedKey: [UInt8]
    public var serverKey: [UInt8]

    public init(storedKey: [UInt8], serverKey: [UInt8]) {
        self.storedKey = storedKey
        self.serverKey = serverKey
    }
}

/// What an account stores instead of its password.
public struct StoredCredentials: Sendable, Hashable {
    public var salt: [UInt8]
    public var iterations: Int
    public var sha1: SCRAMKeys
    public var sha256: SCRAMKeys

    public init(salt: [UInt8], iterations: Int, sha1: SCRAMKeys, sha256: SCRAMKeys) {
        self.salt = salt
        self.iterations = iterations
        self.sha1 = sha1
        self.sha256 = sha256
    }
}

public enum AccountStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    case accountExists(JID)
    case accountNotFound(JID)

    public var description: String {
        switch self {
        case .accountExists(let jid): "account \(jid) already exists"
        case .accountNotFound(let jid): "account \(jid) does not exist"
        }
    }
}

/// Accounts of the served domains, keyed by bare JID.
public protocol AccountStore: Sendable {
    func credentials(for account: JID) async throws -> StoredCredentials?
    /// Creates the account; throws `AccountStoreError.accountExists` if it exists.
    func createAccount(_ account: JID, credentials: StoredCredentials) async throws
    /// Replaces the credentials; throws `AccountStoreError.accountNotFound` if absent.
    func updateCredentials(_ account: JID, credentials: StoredCredentials) async throws
    /// Deletes the account; throws `AccountStoreError.accountNotFound` if absent.
    func deleteAccount(_ account: JID) async throws
    /// Every account, sorted, optionally only those of one domain.
    func listAccounts(domain: String?) async throws -> [JID]
}
