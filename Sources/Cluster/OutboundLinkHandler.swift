import Logging
import NIOCore
import NIOSSL
import Synchronization
import XMPPCore
import XMPPXMLParser

/// The connecting end of one link connection: it proves the cluster secret to the peer,
/// checks the peer's proof in return, and only then lets `OutboundLink` write frames.
/// Until then the connection has the same deadline and byte budget as on the accepting
/// side: a peer that is not a node of the cluster learns nothing and holds nothing.
final class OutboundLinkHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let link: OutboundLink
    private let links: NodeLinks
    /// The TLS configuration this connection was opened with (nil: plain TCP).
    private let tls: LinkTLS?
    private let parser: XMLStreamParser
    private let nonce = LinkHandshake.makeNonce()
    /// Set once this side has sent its proof: what the peer's proof must cover.
    private var transcript: LinkHandshake.Transcript?
    private var authenticated = false
    private var preAuthenticationBytes = 0
    private var deadline: Scheduled<Void>?
    private var closing = false

    init(link: OutboundLink, links: NodeLinks, tls: LinkTLS?) {
        self.link = link
        self.links = links
        self.tls = tls
        self.parser = XMLStreamParser(options: links.parserOptions)
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        let links = self.links
        let peer = link.peer
        deadline = context.eventLoop.scheduleTask(in: TimeAmount(links.options.authenticationTimeout)) {
            links.record(.authenticationTimeout)
            links.logger.warning(
                "node link closed: the peer did not authenticate in time", metadata: ["peer": "\(peer)"])
            channel.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let buffer = unwrapInboundIn(data)
        if !authenticated {
            preAuthenticationBytes += buffer.readableBytes
            guard preAuthenticationBytes <= links.options.preAuthenticationBytes else {
                refuse("too much input before authentication", event: .preAuthenticationBytesExceeded, context: context)
                return
            }
        }
        let events: [XMLStreamEvent]
        do {
            events = try buffer.withUnsafeReadableBytes { try parser.parse($0) }
        } catch {
            links.logger.warning(
                "node link closed: bad input from the peer", metadata: ["peer": "\(link.peer)", "error": "\(error)"])
            close(context)
            return
        }
        for event in events where !closing {
            switch event {
            case .streamOpen(let header, _):
                prove(header, context: context)
            case .element(let element):
                switch element.name {
                case "ok":
                    checkProof(element, context: context)
                case "ack" where authenticated:
                    if let seq = element[attribute: "seq"].flatMap(UInt64.init) {
                        let (through, pending) = Self.beyond(element)
                        link.acknowledged(seq, through: through, except: pending)
                    }
                case "bad-frame" where authenticated:
                    link.peerRejectedFrame(after: element[attribute: "after"].flatMap(UInt64.init) ?? 0)
                default:
                    break
                }
            case .streamClose:
                links.logger.warning("node link refused by peer", metadata: ["peer": "\(link.peer)"])
                close(context)
            }
        }
    }

    /// The peer's header: answers with this node's proof.
    private func prove(_ header: XMLElement, context: ChannelHandlerContext) {
        guard transcript == nil, header[attribute: "node"] == link.peer, let theirNonce = header[attribute: "nonce"],
            LinkHandshake.isNonce(theirNonce), theirNonce != nonce
        else {
            refuse("unexpected peer or malformed handshake", context: context)
            return
        }
        var binding = ""
        if let tls {
            switch tls.binding(forPeer: link.peer, on: context, weAccepted: false) {
            case .success(let peerBinding): binding = peerBinding
            case .failure(let refusal):
                refuse(refusal.reason, event: refusal.isNameMismatch ? .refusedCertificateName : .refusedAcceptor, context: context)
                return
            }
        }
        let incarnation = links.incarnation.withLock { $0 }
        let transcript = LinkHandshake.Transcript(
            connector: links.name, acceptor: link.peer, connectorNonce: nonce, acceptorNonce: theirNonce,
            connectorIncarnation: incarnation, acceptorIncarnation: link.peerIncarnation, binding: binding
        )
        self.transcript = transcript
        let reply = NodeLinks.streamHeader([
            ("node", links.name), ("incarnation", String(incarnation)),
            ("to-incarnation", String(link.peerIncarnation)),
            ("nonce", nonce), ("mac", links.handshake.proof(.connector, transcript)),
        ])
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: reply)), promise: nil)
    }

    /// The peer's `<ok/>`: it accepted this node; frames flow once it has proved itself too.
    private func checkProof(_ ok: XMLElement, context: ChannelHandlerContext) {
        guard !authenticated, let transcript, let proof = ok[attribute: "mac"],
            links.handshake.verify(proof, .acceptor, transcript)
        else {
            refuse("the peer did not prove the cluster secret", context: context)
            return
        }
        authenticated = true
        deadline?.cancel()
        deadline = nil
        let (through, pending) = Self.beyond(ok)
        link.accepted(channel: context.channel, last: ok[attribute: "last"].flatMap(UInt64.init) ?? 0, through: through, except: pending)
    }

    /// `through` and `pending` of an acknowledgement: beyond its `seq` (or `last`), every
    /// frame up to `through` was handled except the room input still in its rooms' hands.
    static func beyond(_ element: XMLElement) -> (through: UInt64?, pending: Set<UInt64>) {
        let through = element[attribute: "through"].flatMap(UInt64.init)
        let pending = (element[attribute: "pending"] ?? "").split(separator: " ").compactMap { UInt64($0) }
        return (through, Set(pending))
    }

    private func refuse(_ reason: String, event: LinkEvent = .refusedAcceptor, context: ChannelHandlerContext) {
        links.record(event)
        links.logger.warning("node link to peer refused", metadata: ["peer": "\(link.peer)", "reason": "\(reason)"])
        close(context)
    }

    private func close(_ context: ChannelHandlerContext) {
        closing = true
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        links.logger.debug("node link error; closing", metadata: ["peer": "\(link.peer)", "error": "\(error)"])
        close(context)
    }
}
