import Crypto
import Foundation
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
/// Authentication: the accepting node sends a random nonce in its stream header; the
/// connecting node answers with HMAC-SHA256(cluster secret, nonce, its name and
/// incarnation). A wrong MAC closes the connection.
public final class NodeLinks: Sendable {
    public typealias Handler = @Sendable (_ frame: LinkFrame, _ from: String) -> Void

    let name: String
    let incarnation: Mutex<Int64>
    let secret: SymmetricKey
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
    private let serverChannel = Mutex<(any Channel)?>(nil)
    /// The most frames kept for one peer before new ones are bounced.
    public static let queueLimit = 100_000

    public init(
        name: String, incarnation: Int64, secret: String, tls: LinkTLS? = nil, group: any EventLoopGroup, logger: Logger,
        handler: @escaping Handler, bounce: @escaping @Sendable (LinkFrame) -> Void
    ) {
        self.tlsState = Mutex(tls)
        self.name = name
        self.incarnation = Mutex(incarnation)
        self.secret = SymmetricKey(data: Data(secret.utf8))
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
    }

    // MARK: - Listening

    /// Starts accepting links; returns the bound port.
    public func listen(host: String, port: Int) async throws -> Int {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls = self.tls {  // read per connection: a reload applies to the next one
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.server))
                    }
                    try channel.pipeline.syncOperations.addHandler(InboundLinkHandler(links: self))
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
    public func enqueue(_ frame: LinkFrame, to node: String) -> Bool {
        guard let link = outbound.withLock({ $0[node] }) else {
            logger.warning("no link to node", metadata: ["peer": "\(node)"])
            return false
        }
        return link.enqueue(frame)
    }

    /// Frames waiting for an acknowledgement, per peer (a metric).
    public var queueDepths: [String: Int] {
        outbound.withLock { $0.mapValues { $0.queued } }
    }

    /// Brings the links in line with the membership: links to new peers, new addresses
    /// for restarted ones; the frames for peers no longer reachable are bounced.
    public func update(peers: [(name: String, address: String, incarnation: Int64)]) {
        for frame in replace(peers: peers) { bounce(frame) }
    }

    /// `update(peers:)`, returning the frames of the links it closed instead of bouncing
    /// them, in the order they were sent per peer: the caller re-routes them.
    public func replace(peers: [(name: String, address: String, incarnation: Int64)]) -> [LinkFrame] {
        var stale: [OutboundLink] = []
        var fresh: [OutboundLink] = []
        outbound.withLock { links in
            let wanted = Dictionary(peers.filter { $0.name != name }.map { ($0.name, $0) }) { first, _ in first }
            for (peer, link) in links {
                if let want = wanted[peer], want.address == link.address, want.incarnation == link.peerIncarnation {
                    continue
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
        var unsent: [LinkFrame] = []
        for link in stale { unsent += link.close() }
        for link in fresh { link.start() }
        return unsent
    }

    func mac(nonce: String, node: String, incarnation: Int64) -> String {
        let code = HMAC<SHA256>.authenticationCode(
            for: Data("conclave-link|\(nonce)|\(node)|\(incarnation)".utf8), using: secret
        )
        return code.map { String(format: "%02x", $0) }.joined()
    }

    static func streamHeader(_ attributes: [(String, String)]) -> String {
        var text = "<?xml version='1.0'?><stream:stream xmlns='\(Namespace.client)' xmlns:stream='\(Namespace.stream)'"
        for (name, value) in attributes {
            text += " \(name)='\(XMLEscaping.escapeAttribute(value))'"
        }
        return text + ">"
    }

    static var parserOptions: XMLStreamParser.Options {
        var options = XMLStreamParser.Options()
        options.maxStanzaBytes = 16 * 1024 * 1024
        options.maxDepth = 128
        return options
    }
}

// MARK: - Accepting side

final class InboundLinkHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let links: NodeLinks
    private let parser = XMLStreamParser(options: NodeLinks.parserOptions)
    private let nonce = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    /// The dedup key: sender name and this node's incarnation it addressed.
    private var peer: String?
    private var peerName = ""
    private var peerIncarnation: Int64 = 0
    private var handled: UInt64 = 0
    private var acked: UInt64 = 0

    init(links: NodeLinks) { self.links = links }

    func channelActive(context: ChannelHandlerContext) {
        let header = NodeLinks.streamHeader([("nonce", nonce), ("node", links.name)])
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: header)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let events: [XMLStreamEvent]
        do {
            events = try buffer.withUnsafeReadableBytes { try parser.parse($0) }
        } catch {
            links.logger.warning("node link: bad input", metadata: ["error": "\(error)"])
            context.close(promise: nil)
            return
        }
        for event in events {
            switch event {
            case .streamOpen(let header, _):
                let mine = links.incarnation.withLock { $0 }
                guard let node = header[attribute: "node"], let incarnation = header[attribute: "incarnation"].flatMap(Int64.init),
                    let mac = header[attribute: "mac"],
                    mac == links.mac(nonce: nonce, node: node, incarnation: incarnation),
                    header[attribute: "to-incarnation"].flatMap(Int64.init) == mine
                else {
                    links.logger.warning("node link refused: bad credentials")
                    context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: "</stream:stream>")))
                        .whenComplete { _ in context.close(promise: nil) }
                    return
                }
                peer = node + "|" + String(mine)
                peerName = node
                peerIncarnation = incarnation
                let key = peer!
                let last = links.received.withLock { received -> UInt64 in
                    if let entry = received[key], entry.incarnation == incarnation { return entry.seq }
                    received[key] = (incarnation, 0)
                    return 0
                }
                handled = last
                acked = last
                let ok = "<ok last='\(last)'/>"
                context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: ok)), promise: nil)
            case .element(let element):
                guard let peer else {
                    context.close(promise: nil)
                    return
                }
                guard let (seq, frame) = LinkFrame.parse(element) else {
                    links.logger.warning("node link: unknown frame", metadata: ["name": "\(element.name)"])
                    continue
                }
                // Shared with other connections from the same peer (a reconnect).
                let isNew = links.received.withLock { received -> Bool in
                    guard let entry = received[peer], entry.incarnation == peerIncarnation else { return false }
                    guard seq > entry.seq else { return false }
                    received[peer] = (peerIncarnation, seq)
                    return true
                }
                handled = max(handled, seq)
                if isNew { links.handler(frame, peerName) }
            case .streamClose:
                context.close(promise: nil)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if handled > acked {
            acked = handled
            context.writeAndFlush(
                wrapOutboundOut(context.channel.allocator.buffer(string: "<ack seq='\(handled)'/>")), promise: nil
            )
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

// MARK: - Connecting side

/// The sending half of the link to one peer.
final class OutboundLink: Sendable {
    let peer: String
    let address: String
    let peerIncarnation: Int64
    private let links: NodeLinks
    private let state = Mutex(State())

    struct State {
        var nextSeq: UInt64 = 1
        /// Sent or not, not yet acknowledged; in order.
        var unacked: [(seq: UInt64, frame: LinkFrame, bytes: String)] = []
        /// How many of `unacked` have been written on the current connection.
        var written = 0
        var channel: (any Channel)?
        var ready = false
        var flushScheduled = false
        var closed = false
        var task: Task<Void, Never>?
    }

    init(links: NodeLinks, peer: String, address: String, peerIncarnation: Int64) {
        self.links = links
        self.peer = peer
        self.address = address
        self.peerIncarnation = peerIncarnation
    }

    var queued: Int { state.withLock { $0.unacked.count } }

    func start() {
        let task = Task { await self.connectLoop() }
        state.withLock { $0.task = task }
    }

    /// Closes the link; returns the frames never acknowledged.
    @discardableResult
    func close() -> [LinkFrame] {
        let (channel, task, unsent) = state.withLock { state in
            state.closed = true
            defer { state.unacked = [] }
            return (state.channel, state.task, state.unacked.map(\.frame))
        }
        task?.cancel()
        channel?.close(promise: nil)
        return unsent
    }

    /// Queues `frame`; `false` when the link is closed or its queue is full.
    func enqueue(_ frame: LinkFrame) -> Bool {
        state.withLock { state -> Bool in
            guard !state.closed, state.unacked.count < NodeLinks.queueLimit else { return false }
            let seq = state.nextSeq
            state.nextSeq += 1
            let bytes = frame.element(seq: seq).serialized(parentNamespace: Namespace.client)
            state.unacked.append((seq, frame, bytes))
            scheduleFlush(&state)
            return true
        }
    }

    /// Writes what is not yet written on the current connection, once per event-loop tick.
    private func scheduleFlush(_ state: inout State) {
        guard state.ready, let channel = state.channel, !state.flushScheduled else { return }
        state.flushScheduled = true
        channel.eventLoop.execute { self.flush() }
    }

    private func flush() {
        let (channel, text) = state.withLock { state -> ((any Channel)?, String) in
            state.flushScheduled = false
            guard state.ready, let channel = state.channel, state.written < state.unacked.count else { return (nil, "") }
            var text = ""
            for entry in state.unacked[state.written...] { text += entry.bytes }
            state.written = state.unacked.count
            return (channel, text)
        }
        guard let channel else { return }
        channel.writeAndFlush(channel.allocator.buffer(string: text), promise: nil)
    }

    func acknowledged(_ seq: UInt64) {
        state.withLock { state in
            let count = state.unacked.prefix { $0.seq <= seq }.count
            state.unacked.removeFirst(count)
            state.written = max(0, state.written - count)
        }
    }

    /// The peer accepted us and has handled everything up to `last`.
    func accepted(channel: any Channel, last: UInt64) {
        state.withLock { state in
            let count = state.unacked.prefix { $0.seq <= last }.count
            state.unacked.removeFirst(count)
            state.written = 0
            state.channel = channel
            state.ready = true
            scheduleFlush(&state)
        }
    }

    private func connectLoop() async {
        var delay: Duration = .milliseconds(20)
        while !Task.isCancelled, !state.withLock({ $0.closed }) {
            let parts = address.split(separator: ":")
            guard parts.count >= 2, let port = Int(parts.last!) else {
                links.logger.error("bad link address", metadata: ["peer": "\(peer)", "address": "\(address)"])
                return
            }
            let host = parts.dropLast().joined(separator: ":")
            do {
                let handler = OutboundLinkHandler(link: self, links: links)
                let tls = links.tls
                let channel = try await ClientBootstrap(group: links.group)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .connectTimeout(.seconds(2))
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            if let tls {
                                try channel.pipeline.syncOperations.addHandler(
                                    try NIOSSLClientHandler(context: tls.client, serverHostname: nil)
                                )
                            }
                            try channel.pipeline.syncOperations.addHandler(handler)
                        }
                    }
                    .connect(host: host, port: port).get()
                links.logger.debug("node link connected", metadata: ["peer": "\(peer)"])
                try? await channel.closeFuture.get()
                let wasReady = state.withLock { state -> Bool in
                    defer {
                        state.ready = false
                        state.channel = nil
                    }
                    return state.ready
                }
                if wasReady { delay = .milliseconds(20) }
                if !state.withLock({ $0.closed }) {
                    links.logger.info("node link lost; reconnecting", metadata: ["peer": "\(peer)"])
                }
            } catch {
                links.logger.debug("node link connect failed", metadata: ["peer": "\(peer)", "error": "\(error)"])
            }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(1))
        }
    }
}

final class OutboundLinkHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let link: OutboundLink
    private let links: NodeLinks
    private let parser = XMLStreamParser(options: NodeLinks.parserOptions)

    init(link: OutboundLink, links: NodeLinks) {
        self.link = link
        self.links = links
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let events = try? buffer.withUnsafeReadableBytes({ try parser.parse($0) }) else {
            context.close(promise: nil)
            return
        }
        for event in events {
            switch event {
            case .streamOpen(let header, _):
                guard let nonce = header[attribute: "nonce"], header[attribute: "node"] == link.peer else {
                    links.logger.warning("node link: unexpected peer", metadata: ["peer": "\(link.peer)"])
                    context.close(promise: nil)
                    return
                }
                let incarnation = links.incarnation.withLock { $0 }
                let mac = links.mac(nonce: nonce, node: links.name, incarnation: incarnation)
                let header = NodeLinks.streamHeader([
                    ("node", links.name), ("incarnation", String(incarnation)), ("mac", mac),
                    ("to-incarnation", String(link.peerIncarnation)),
                ])
                context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: header)), promise: nil)
            case .element(let element):
                switch element.name {
                case "ok":
                    link.accepted(channel: context.channel, last: element[attribute: "last"].flatMap(UInt64.init) ?? 0)
                case "ack":
                    if let seq = element[attribute: "seq"].flatMap(UInt64.init) { link.acknowledged(seq) }
                default:
                    break
                }
            case .streamClose:
                links.logger.warning("node link refused by peer", metadata: ["peer": "\(link.peer)"])
                context.close(promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
