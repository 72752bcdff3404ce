public import Logging
public import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
public import XMPPCore
import XMPPXMLParser

/// Node-to-node links: one ordered, authenticated stream per ordered pair of nodes.
///
/// Node A opens its own connection to B for what A sends to B. Every frame carries a
/// sequence number; B acknowledges what it has handled, A keeps what is not yet
/// acknowledged and sends it again, in order, after a reconnect; B skips sequence
/// numbers it has already handled. So a short outage loses nothing and duplicates
/// nothing. Frames for a node that is declared dead (or that stays unreachable) are
/// handed to `bounce`, which re-routes or answers them with an error.
///
/// Authentication is mutual (`LinkHandshake`): each side proves the cluster secret over
/// nonces from both sides, and over both certificates with TLS. Until a connection has
/// authenticated it has a deadline, a small byte budget, and a place among a bounded
/// number of unauthenticated connections (`Options`). A frame the peer cannot read is
/// sent again alone, and dropped if it fails again, so it cannot stall the link.
public final class NodeLinks: Sendable {
    /// Receives each new frame. For room input the receipt is to be held until the input
    /// is handled: the frame is acknowledged to its sender when it is released.
    public typealias Handler = @Sendable (_ frame: LinkFrame, _ from: String, _ receipt: LinkReceipt) -> Void

    /// Limits of the link protocol; every one is a configuration key (docs/configuration.md).
    public struct Options: Sendable, Hashable {
        /// Time a new connection has to complete TLS and the handshake, on either side.
        public var authenticationTimeout: Duration = .seconds(5)
        /// Bytes a peer may send before it has authenticated (its header is a few hundred).
        public var preAuthenticationBytes = 4096
        /// Unauthenticated connections to the link port, in total and from one address.
        public var maxUnauthenticated = 64
        public var maxUnauthenticatedPerAddress = 8
        /// Bytes (serialized) and frames kept for one peer before new frames are refused.
        public var maxQueueBytes = 64 * 1024 * 1024
        public var maxQueueFrames = 100_000
        /// Largest frame, serialized: larger ones are refused when sent and end the link
        /// when received.
        public var maxFrameBytes = 16 * 1024 * 1024
        public init() {}
    }

    let name: String
    let incarnation: Mutex<Int64>
    let handshake: LinkHandshake
    let options: Options
    let unauthenticated: Mutex<UnauthenticatedLinks>
    private let events = Mutex<[LinkEvent: Int]>([:])
    let group: any EventLoopGroup
    let logger: Logger
    let handler: Handler
    public let bounce: @Sendable (LinkFrame) -> Void
    /// Mutual TLS, when the cluster has a CA; else plain TCP (HMAC-authenticated).
    /// Replaceable (a certificate reload): new connections use the new one.
    private let tlsState: Mutex<LinkTLS?>
    var tls: LinkTLS? { tlsState.withLock { $0 } }
    private let outbound = Mutex<[String: OutboundLink]>([:])
    /// The last sequence number handled per sending link: sender, its incarnation, and
    /// the incarnation of this node it addressed (a link to an earlier run of this node
    /// numbered its frames on its own).
    let received = Mutex<[String: (incarnation: Int64, seq: UInt64)]>([:])
    /// Room input taken from each sending link that its rooms have not handled yet.
    let heldInput = HeldRoomInputs()
    /// Incarnations of peers the membership has declared gone, and the newest incarnation
    /// seen per peer: what such a run still sends (a paused node that resumes and flushes
    /// output of rooms that have moved on) is dropped, not delivered late.
    private let gone = Mutex<(departed: Set<String>, newest: [String: Int64])>(([], [:]))
    private let serverChannel = Mutex<(any Channel)?>(nil)
    /// The time of the reconnect backoff.
    let clock: ServiceClock

    public init(
        name: String, incarnation: Int64, secret: String, tls: LinkTLS? = nil, options: Options = Options(),
        group: any EventLoopGroup, clock: ServiceClock = .continuous, logger: Logger,
        handler: @escaping Handler, bounce: @escaping @Sendable (LinkFrame) -> Void
    ) {
        self.clock = clock
        self.tlsState = Mutex(tls)
        self.name = name
        self.incarnation = Mutex(incarnation)
        self.handshake = LinkHandshake(secret: secret)
        self.options = options
        self.unauthenticated = Mutex(
            UnauthenticatedLinks(
                maxTotal: options.maxUnauthenticated, maxPerAddress: options.maxUnauthenticatedPerAddress)
        )
        self.group = group
        self.logger = logger
        self.handler = handler
        self.bounce = bounce
    }

    /// Uses `tls` for the links opened from now on.
    public func replaceTLS(_ tls: LinkTLS) { tlsState.withLock { $0 = tls } }

    /// A new incarnation (the node rejoined): links from others start afresh.
    public func setIncarnation(_ value: Int64) {
        incarnation.withLock { $0 = value }
        received.withLock { $0 = [:] }
        heldInput.removeAll()
        acknowledging.store(true, ordering: .relaxed)
    }

    /// This node lost its lease and drops its rooms: nothing is taken from the links (nor
    /// acknowledged) until the node runs again as a new incarnation. Its senders route
    /// what they still hold again.
    public func stopAcknowledging() {
        acknowledging.store(false, ordering: .relaxed)
    }

    /// This node lost its lease: what its links still queue belongs to the run the others
    /// declared gone — room input they route again themselves, output of rooms that have
    /// moved on. Dropped with the links (sent by the next run, it would be taken as the
    /// next run's: input handled twice, output late). The next membership read links the
    /// next run anew. Returns how many frames were dropped.
    @discardableResult
    public func dropAllLinks() -> Int {
        let links = outbound.withLock { links in
            defer { links = [:] }
            return Array(links.values)
        }
        return links.reduce(0) { $0 + $1.close().count }
    }

    /// Whether links acknowledge frames (`false` between a lost lease and the new run).
    let acknowledging = Atomic<Bool>(true)

    // MARK: - Listening

    /// Starts accepting links; returns the bound port.
    public func listen(host: String, port: Int) async throws -> Int {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let tls = self.tls  // read per connection: a reload applies to the next one
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.server))
                    }
                    try channel.pipeline.syncOperations.addHandler(InboundLinkHandler(links: self, tls: tls))
                }
            }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        serverChannel.withLock { $0 = channel }
        return channel.localAddress?.port ?? port
    }

    /// Stops listening and closes every outbound link.
    public func shutdown() async {
        let server = serverChannel.withLock { $0 }
        try? await server?.close()
        let links = outbound.withLock { links in
            defer { links = [:] }
            return Array(links.values)
        }
        for link in links { link.close() }
    }

    // MARK: - Sending

    /// Sends `frame` to `node` (whose link address is known from membership).
    public func send(_ frame: LinkFrame, to node: String) {
        if !enqueue(frame, to: node) { bounce(frame) }
    }

    /// Queues `frame` for `node`, or returns `false` (no link to it, or its queue is
    /// full) without bouncing it: for callers that hold a lock the bounce would take.
    /// `keep` stays alive until the peer acknowledges the frame (or the link closes and
    /// returns it with the frame): forwarded room input keeps its own receipt, so that
    /// the node it came from hears of it only once the next node took it for good.
    public func enqueue(_ frame: LinkFrame, to node: String, keeping keep: (any AnyObject & Sendable)? = nil) -> Bool {
        guard let link = outbound.withLock({ $0[node] }) else {
            logger.warning("no link to node", metadata: ["peer": "\(node)"])
            return false
        }
        return link.enqueue(frame, keeping: keep)
    }

    /// Closes the current connection to `peer`, as a network failure would.
    func dropConnection(to peer: String) {
        outbound.withLock { $0[peer] }?.dropConnection()
    }

    /// Frames waiting for an acknowledgement, per peer (a metric).
    public var queueDepths: [String: Int] {
        outbound.withLock { $0.mapValues { $0.queued } }
    }

    /// The depth of the queue to `node`, in bytes, with its marks: while it is high, the
    /// sessions that send room input there stop being read. `nil`: no link to it.
    public func pressure(to node: String) -> PressureGauge? {
        outbound.withLock { $0[node] }?.pressure
    }

    /// Peers whose queue is above its high-water mark now.
    public var congestedPeers: [String] {
        outbound.withLock { $0.filter { $0.value.pressure.isHigh }.keys.sorted() }
    }

    /// Times each peer's queue went above its high-water mark (a metric).
    public var queueHighs: [String: Int] {
        outbound.withLock { $0.mapValues { $0.pressure.timesHigh } }
    }

    /// Bytes (serialized) waiting for an acknowledgement, per peer (a metric).
    public var queueBytes: [String: Int] {
        outbound.withLock { $0.mapValues { $0.queuedBytes } }
    }

    /// How often each `LinkEvent` happened since the start (a metric).
    public var eventCounts: [LinkEvent: Int] { events.withLock { $0 } }

    func record(_ event: LinkEvent) {
        events.withLock { $0[event, default: 0] += 1 }
    }

    /// Brings the links in line with the membership: links to new peers, new addresses
    /// for restarted ones; the frames for peers no longer reachable are bounced.
    public func update(peers: [(name: String, address: String, incarnation: Int64)]) {
        for frame in replace(peers: peers) { bounce(frame) }
    }

    /// `update(peers:)`, returning the frames of the links it closed instead of bouncing
    /// them, in the order they were sent per peer: the caller re-routes them.
    public func replace(peers: [(name: String, address: String, incarnation: Int64)]) -> [LinkFrame] {
        replaceKeeping(peers: peers).map(\.frame)
    }

    /// `replace(peers:)`, with the peer each frame was for and what was kept alive for it
    /// (`enqueue(_:to:keeping:)`).
    public func replaceKeeping(peers: [(name: String, address: String, incarnation: Int64)])
        -> [(peer: String, frame: LinkFrame, keep: (any AnyObject & Sendable)?)]
    {
        var stale: [OutboundLink] = []
        var fresh: [OutboundLink] = []
        let wanted = Dictionary(peers.filter { $0.name != name }.map { ($0.name, $0) }) { first, _ in first }
        outbound.withLock { links in
            for (peer, link) in links {
                if let want = wanted[peer], want.address == link.address, want.incarnation == link.peerIncarnation {
                    continue
                }
                if wanted[peer]?.incarnation != link.peerIncarnation {
                    gone.withLock { _ = $0.departed.insert(Self.key(peer, link.peerIncarnation)) }
                }
                stale.append(link)
                links[peer] = nil
            }
            for (peer, want) in wanted where links[peer] == nil {
                let link = OutboundLink(
                    links: self, peer: peer, address: want.address, peerIncarnation: want.incarnation
                )
                links[peer] = link
                fresh.append(link)
            }
        }
        gone.withLock { gone in
            for want in wanted.values {
                gone.departed.remove(Self.key(want.name, want.incarnation))
                gone.newest[want.name] = max(gone.newest[want.name] ?? 0, want.incarnation)
            }
        }
        var unsent: [(peer: String, frame: LinkFrame, keep: (any AnyObject & Sendable)?)] = []
        for link in stale { unsent += link.close().map { (link.peer, $0.frame, $0.keep) } }
        for link in fresh { link.start() }
        return unsent
    }

    private static func key(_ peer: String, _ incarnation: Int64) -> String { peer + "|" + String(incarnation) }

    /// Whether `peer`'s run `incarnation` has been declared gone (or a later run of it
    /// is known): its frames are no longer taken.
    func hasDeparted(_ peer: String, incarnation: Int64) -> Bool {
        gone.withLock { gone in
            gone.departed.contains(Self.key(peer, incarnation)) || (gone.newest[peer] ?? 0) > incarnation
        }
    }

    static func streamHeader(_ attributes: [(String, String)]) -> String {
        var text = "<?xml version='1.0'?><stream:stream xmlns='\(Namespace.client)' xmlns:stream='\(Namespace.stream)'"
        for (name, value) in attributes {
            text += " \(name)='\(XMLEscaping.escapeAttribute(value))'"
        }
        return text + ">"
    }

    /// The parser for the XML a link carries: the handshake, and the acknowledgements
    /// (whose list of pending frames can be long). Frames are binary (`LinkFrameCodec`).
    var parserOptions: XMLStreamParser.Options {
        var parser = XMLStreamParser.Options()
        parser.maxStanzaBytes = options.maxFrameBytes + 1024
        parser.maxDepth = 128
        parser.maxElementsPerStanza = max(parser.maxElementsPerStanza, options.maxFrameBytes / 8)
        return parser
    }
}
