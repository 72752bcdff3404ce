public import Logging
public import XMPPCore

/// Where users' sessions are in the cluster (`sessions(jid, bare, node)` in PostgreSQL):
/// this node's sessions written as they are bound, change availability and end, and
/// stanzas for users on other nodes looked up and sent to those nodes as `user` frames.
///
/// Lookups are not cached (a user who reconnects elsewhere is found at once) and are made
/// in order by one task (`run`), so that stanzas for a user leave in the order they came.
public final class SessionDirectory: Sendable {
    public let nodeName: String
    private let database: ClusterDatabase
    private let links: NodeLinks
    private let isReachable: @Sendable (String) -> Bool
    private let logger: Logger
    private let input: AsyncStream<Lookup>.Continuation
    private let lookups: AsyncStream<Lookup>

    struct Lookup: Sendable {
        var stanza: XMLElement
        var to: JID
        var bounce: (@Sendable (XMLElement) -> Void)?
        /// Only to nodes with an available resource of non-negative priority (a chat or
        /// normal message to a bare JID: without one, it is kept offline).
        var availableOnly = false
        /// The stanza went to every node already: only whether another node has an
        /// available resource is asked (`bounce` if none has).
        var lookupOnly = false
    }

    /// `isReachable`: whether a node is live for this one now (sessions of a node that is
    /// gone are not sent to).
    public init(
        nodeName: String, database: ClusterDatabase, links: NodeLinks, isReachable: @escaping @Sendable (String) -> Bool,
        logger: Logger
    ) {
        self.nodeName = nodeName
        self.database = database
        self.links = links
        self.isReachable = isReachable
        self.logger = logger
        (lookups, input) = AsyncStream.makeStream(of: Lookup.self)
    }

    /// Sends `stanza` to the node(s) holding `to` (full: that session; bare: every node
    /// with a resource of the user); `bounce` is called when there is none.
    public func route(_ stanza: XMLElement, to: JID, bounce: (@Sendable (XMLElement) -> Void)?) {
        input.yield(Lookup(stanza: stanza, to: to, bounce: bounce))
    }

    /// Sends `stanza` to the nodes holding an available resource of `to` (bare) with a
    /// non-negative priority; `otherwise` is called when there is none.
    public func routeToAvailable(_ stanza: XMLElement, to: JID, otherwise: (@Sendable (XMLElement) -> Void)?) {
        input.yield(Lookup(stanza: stanza, to: to, bounce: otherwise, availableOnly: true))
    }

    /// `stanza` was sent to every node already: calls `otherwise` when no other node has
    /// an available resource of `to` with a non-negative priority.
    public func unlessAvailableElsewhere(_ stanza: XMLElement, to: JID, otherwise: @escaping @Sendable (XMLElement) -> Void) {
        input.yield(Lookup(stanza: stanza, to: to, bounce: otherwise, availableOnly: true, lookupOnly: true))
    }

    public func bound(_ jid: JID) async {
        await write(jid) { try await $0.bindSession(jid.description, bare: jid.bare.description, node: self.nodeName) }
    }

    public func ended(_ jid: JID) async {
        await write(jid) { try await $0.unbindSession(jid.description, node: self.nodeName) }
    }

    /// Records whether `jid` (a session of this node) is available, and its priority.
    public func availability(_ jid: JID, available: Bool, priority: Int) async {
        await write(jid) { try await $0.setAvailability(jid.description, node: self.nodeName, available: available, priority: priority) }
    }

    private func write(_ jid: JID, _ body: @Sendable (ClusterDatabase) async throws -> Void) async {
        do {
            try await body(database)
        } catch {
            logger.warning("session directory write failed", metadata: ["jid": "\(jid)", "error": "\(error)"])
        }
    }

    /// Looks the users up and sends, in order, until `finish`.
    public func run() async {
        for await lookup in lookups {
            var entries: [(JID, String)] = []
            do {
                entries = try await database.sessions(ofBare: lookup.to.bare.description).compactMap { row -> (JID, String)? in
                    guard let jid = try? JID(row.jid), !lookup.availableOnly || (row.available && row.priority >= 0) else { return nil }
                    return (jid, row.node)
                }
            } catch {
                logger.warning("session directory lookup failed", metadata: ["error": "\(error)"])
            }
            let nodes = Set(
                entries.filter { (lookup.to.isFull ? $0.0 == lookup.to : true) && $0.1 != nodeName && isReachable($0.1) }
                    .map(\.1)
            )
            if nodes.isEmpty {
                lookup.bounce?(lookup.stanza)
                continue
            }
            if lookup.lookupOnly { continue }
            for node in nodes.sorted() { links.send(.user(lookup.stanza), to: node) }
        }
    }

    /// Ends `run` once what was asked before is done.
    public func finish() {
        input.finish()
    }
}
