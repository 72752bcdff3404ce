public import Storage
public import XMPPCore

/// What a client connection needs from the rest of the node: accounts, and a place
/// for sessions and their stanzas. `ServerRuntime` implements it.
public protocol C2SDelegate: AnyObject, Sendable {
    func credentials(for account: JID) async throws -> StoredCredentials?
    /// Registers a freshly bound session. A session already bound to the same full
    /// JID is replaced (and closed with `<conflict/>` by the delegate).
    func sessionBound(_ session: C2SSession) async
    /// A stanza from a bound session, its `from` already stamped with the full JID.
    func route(_ stanza: XMLElement, from session: C2SSession)
    /// Work the session finishes before it reads the client's next stanza, after
    /// `stanza` was routed (the offline messages an initial presence brings): what it
    /// sends comes before the answers to anything the client sends next. `nil`: none.
    func completion(ofRouting stanza: XMLElement, from session: C2SSession) -> (@Sendable () async -> Void)?
    /// The session ended (stream closed, connection lost, or replaced). Called once,
    /// before the node answers the client's `</stream:stream>`.
    func sessionEnded(_ session: C2SSession) async
}

extension C2SDelegate {
    public func completion(ofRouting stanza: XMLElement, from session: C2SSession) -> (@Sendable () async -> Void)? { nil }
}
