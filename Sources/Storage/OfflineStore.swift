public import XMPPCore

/// A message kept for an account while none of its resources was available (XEP-0160).
public struct OfflineMessage: Sendable, Hashable {
    /// The stanza as it was routed, serialized.
    public var stanza: String
    /// When it was kept, in seconds since 1970.
    public var stamp: Double

    public init(stanza: String, stamp: Double) {
        self.stanza = stanza
        self.stamp = stamp
    }
}

/// Offline messages, per account (bare JID).
public protocol OfflineStore: Sendable {
    /// Keeps `stanza` for `account`. `false` when it was not kept: the account does not
    /// exist, already has `limit` messages waiting, or they and `stanza` would take more
    /// than `bytes` bytes (UTF-8).
    func keep(_ stanza: String, for account: JID, limit: Int, bytes: Int) async throws -> Bool
    /// Takes what is kept for `account`, oldest first: returned and deleted at once.
    func take(for account: JID) async throws -> [OfflineMessage]
}
