import Logging
import NIOCore
import NIOSSL
import Synchronization
import XMPPCore
import XMPPXMLParser

/// The accepting end of one link connection: it checks the connecting node's proof of the
/// cluster secret, proves its own, then hands the frames it receives to `NodeLinks`.
///
/// Until the peer has authenticated, the connection counts among the unauthenticated ones
/// (`UnauthenticatedLinks`), has `authenticationTimeout` to finish, and may send at most
/// `preAuthenticationBytes`. A frame an authenticated peer sends that does not read
/// (`LinkFrameCodec`) ends the connection with `<bad-frame/>`, so that the sender isolates
/// the frame and drops it.
final class InboundLinkHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let links: NodeLinks
    /// The TLS configuration this connection was accepted with (nil: plain TCP).
    private let tls: LinkTLS?
    /// Reads the connector's header (the handshake is XML; the frames after it are not):
    /// released once the peer has authenticated.
    private var parser: XMLStreamParser?
    /// The start of a frame whose rest has not arrived yet.
    private var input: ByteBuffer?
    private let nonce = LinkHandshake.makeNonce()
    /// The remote address while the connection counts among the unauthenticated.
    private var pendingAddress: String?
    private var deadline: Scheduled<Void>?
    private var preAuthenticationBytes = 0
    private var closing = false
    /// The dedup key: sender name and this node's incarnation it addressed.
    private var peer: String?
    private var peerName = ""
    private var peerIncarnation: Int64 = 0
    /// The incarnation of this node the peer addressed: once this node runs as another
    /// one (it rejoined), the connection carries nothing more.
    private var addressed: Int64 = 0
    private var handled: UInt64 = 0
    /// The last acknowledgement sent (see `acknowledge`).
    private var lastAcknowledgement = ""
    /// Tells `HeldRoomInputs` which connection serves the link now.
    private let connectionID = HeldRoomInputs.nextConnectionID()

    init(links: NodeLinks, tls: LinkTLS?) {
        self.links = links
        self.tls = tls
        self.parser = XMLStreamParser(options: links.parserOptions)
    }

    private var remote: Logger.Metadata.Value { "\(pendingAddress ?? peerName)" }

    func channelActive(context: ChannelHandlerContext) {
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        guard links.unauthenticated.withLock({ $0.admit(address) }) else {
            links.record(.refusedUnauthenticatedLimit)
            links.logger.warning(
                "node link refused: too many unauthenticated connections", metadata: ["address": "\(address)"])
            closing = true
            context.close(promise: nil)
            return
        }
        pendingAddress = address
        let channel = context.channel
        let links = self.links
        deadline = context.eventLoop.scheduleTask(in: TimeAmount(links.options.authenticationTimeout)) {
            links.record(.authenticationTimeout)
            links.logger.warning("node link closed: no authentication in time", metadata: ["address": "\(address)"])
            channel.close(promise: nil)
        }
        let header = NodeLinks.streamHeader([
            ("node", links.name), ("nonce", nonce), ("incarnation", String(links.incarnation.withLock { $0 })),
        ])
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: header)), promise: nil)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        leavePending()
        if let peer { links.heldInput.detach(key: peer, connection: connectionID) }
        context.fireChannelInactive()
    }

    /// No longer counted among the unauthenticated: authenticated, or gone.
    private func leavePending() {
        deadline?.cancel()
        deadline = nil
        if let address = pendingAddress {
            links.unauthenticated.withLock { $0.release(address) }
            pendingAddress = nil
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var buffer = unwrapInboundIn(data)
        if peer == nil {
            preAuthenticationBytes += buffer.readableBytes
            guard preAuthenticationBytes <= links.options.preAuthenticationBytes else {
                links.record(.preAuthenticationBytesExceeded)
                links.logger.warning(
                    "node link closed: too much input before authentication",
                    metadata: ["address": remote, "bytes": "\(preAuthenticationBytes)"]
                )
                close(context)
                return
            }
            // The handshake is XML, and frames follow the connector's header once it has
            // authenticated: the parser gets the input up to each `>`, so that it never
            // takes the first bytes of a frame.
            while peer == nil, !closing, buffer.readableBytes > 0 {
                let view = buffer.readableBytesView
                let length = view.firstIndex(of: UInt8(ascii: ">")).map { view.distance(from: view.startIndex, to: $0) + 1 }
                guard let slice = buffer.readSlice(length: length ?? buffer.readableBytes) else { return }
                handshake(slice, context: context)
            }
            guard peer != nil, !closing, buffer.readableBytes > 0 else { return }
        }
        receiveFrames(&buffer, context: context)
    }

    /// Input before authentication: the connector's header.
    private func handshake(_ input: ByteBuffer, context: ChannelHandlerContext) {
        guard let parser else { return }
        let events: [XMLStreamEvent]
        do {
            events = try input.withUnsafeReadableBytes { try parser.parse($0) }
        } catch {
            links.logger.warning("node link closed: bad input", metadata: ["address": remote, "error": "\(error)"])
            close(context)
            return
        }
        for event in events where !closing {
            switch event {
            case .streamOpen(let header, _) where peer == nil:
                authenticate(header, context: context)
            case .streamOpen, .element:
                refuse("a frame before authentication", context: context)
            case .streamClose:
                close(context)
            }
        }
    }

    /// Frames (`LinkFrameCodec`): each one whole is taken; a part waits for the rest.
    private func receiveFrames(_ buffer: inout ByteBuffer, context: ChannelHandlerContext) {
        if var waiting = input {
            input = nil
            waiting.writeBuffer(&buffer)
            buffer = waiting
        }
        let largest = UInt32(clamping: links.options.maxFrameBytes - LinkFrameCodec.lengthBytes)
        while !closing, let prefix = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) {
            guard prefix >= LinkFrameCodec.headerBytes, prefix <= largest else {
                rejectFrame("a frame larger than the largest frame, or too short", context: context)
                return
            }
            let length = Int(prefix)
            guard buffer.readableBytes >= LinkFrameCodec.lengthBytes + length else { break }
            buffer.moveReaderIndex(forwardBy: LinkFrameCodec.lengthBytes)
            let decoded = buffer.withUnsafeReadableBytes { LinkFrameCodec.decode(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            buffer.moveReaderIndex(forwardBy: length)
            receive(decoded, context: context)
        }
        if !closing, buffer.readableBytes > 0 {
            buffer.discardReadBytes()
            input = buffer
        }
    }

    /// A frame from the peer that does not read: everything up to `handled` was fine; the
    /// sender sends what follows one frame at a time and drops the one that fails alone
    /// (`OutboundLink.peerRejectedFrame`).
    private func rejectFrame(_ reason: String, context: ChannelHandlerContext) {
        links.record(.badFrameReceived)
        links.logger.error(
            "node link: a frame from the peer does not read; dropping the link",
            metadata: ["peer": "\(peerName)", "after": "\(handled)", "reason": "\(reason)"]
        )
        closing = true
        input = nil
        let channel = context.channel
        context.writeAndFlush(
            wrapOutboundOut(channel.allocator.buffer(string: "<bad-frame after='\(acknowledgedUpTo)'/>"))
        ).whenComplete { _ in channel.close(promise: nil) }
    }

    private func authenticate(_ header: XMLElement, context: ChannelHandlerContext) {
        let mine = links.incarnation.withLock { $0 }
        guard peer == nil, let node = header[attribute: "node"], !node.isEmpty,
            let incarnation = header[attribute: "incarnation"].flatMap(Int64.init),
            let theirNonce = header[attribute: "nonce"], LinkHandshake.isNonce(theirNonce), theirNonce != nonce,
            let proof = header[attribute: "mac"]
        else {
            refuse("malformed handshake", context: context)
            return
        }
        guard header[attribute: "to-incarnation"].flatMap(Int64.init) == mine else {
            refuse("addressed to another incarnation of this node", context: context)
            return
        }
        var binding = ""
        if let tls {
            switch tls.binding(forPeer: node, on: context, weAccepted: true) {
            case .success(let peerBinding): binding = peerBinding
            case .failure(let refusal):
                refuse(refusal.reason, event: refusal.isNameMismatch ? .refusedCertificateName : .refusedConnector, context: context)
                return
            }
        }
        let transcript = LinkHandshake.Transcript(
            connector: node, acceptor: links.name, connectorNonce: theirNonce, acceptorNonce: nonce,
            connectorIncarnation: incarnation, acceptorIncarnation: mine, binding: binding
        )
        guard links.handshake.verify(proof, .connector, transcript) else {
            refuse("bad credentials", context: context)
            return
        }
        guard !links.hasDeparted(node, incarnation: incarnation) else {
            refuse("a run of the peer the cluster declared gone", event: .departedPeerRefused, context: context)
            return
        }
        let key = node + "|" + String(mine)
        peer = key
        parser = nil
        peerName = node
        peerIncarnation = incarnation
        addressed = mine
        leavePending()
        let last = links.received.withLock { received -> UInt64 in
            if let entry = received[key], entry.incarnation == incarnation { return entry.seq }
            received[key] = (incarnation, 0)
            links.heldInput.reset(key: key)  // a new run of the peer numbers afresh
            return 0
        }
        handled = last
        // What rooms still hold of what earlier connections took is not acknowledged.
        let acknowledgement = acknowledgementAttributes()
        lastAcknowledgement = acknowledgement
        let ok = "<ok last\(acknowledgement.dropFirst(3)) mac='\(links.handshake.proof(.acceptor, transcript))'/>"
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: ok)), promise: nil)
        let loop = context.eventLoop
        let me = NIOLoopBound(self, eventLoop: loop)
        let bound = NIOLoopBound(context, eventLoop: loop)
        links.heldInput.attach(key: key, connection: connectionID) {
            loop.execute { me.value.acknowledge(bound.value) }
        }
    }

    private func receive(_ decoded: LinkFrameCodec.Decoded, context: ChannelHandlerContext) {
        guard let peer else { return }
        guard addressed == links.incarnation.withLock({ $0 }) else {
            // This node rejoined as a new run: the peer routes what it sent again once it
            // sees the new run, so nothing of it may be taken (or acknowledged) here.
            close(context)
            return
        }
        guard links.acknowledging.load(ordering: .relaxed) else {
            // This node lost its lease and drops its rooms: what it took now would be
            // handled by a run the others declared gone (rooms activated again, input
            // forwarded and sent on by the next run: handled twice). Not taken; the peer
            // keeps it and routes it again.
            links.record(.refusedWhileRejoining)
            close(context)
            return
        }
        guard !links.hasDeparted(peerName, incarnation: peerIncarnation) else {
            // Declared gone while it was paused: its rooms and sessions have moved on, and
            // what it still sends would arrive late or twice.
            links.record(.departedPeerRefused)
            links.logger.warning(
                "node link: a run of the peer declared gone still sends; dropped, link closed",
                metadata: ["peer": "\(peerName)", "incarnation": "\(peerIncarnation)"]
            )
            close(context)
            return
        }
        let seq: UInt64
        var frame: LinkFrame?
        switch decoded {
        case .frame(let number, let known):
            seq = number
            frame = known
        case .unknown(let number, let kind):
            // A newer node's kind of frame: skipped, and acknowledged with the others.
            links.record(.unknownFrameSkipped)
            links.logger.warning("node link: unknown frame skipped", metadata: ["peer": "\(peerName)", "kind": "\(kind)"])
            seq = number
        case .malformed:
            rejectFrame("a frame that does not read as its kind", context: context)
            return
        }
        // Shared with other connections from the same peer (a reconnect).
        let isNew = links.received.withLock { received -> Bool in
            guard let entry = received[peer], entry.incarnation == peerIncarnation else { return false }
            guard seq > entry.seq else { return false }
            received[peer] = (peerIncarnation, seq)
            return true
        }
        handled = max(handled, seq)
        guard isNew, let frame else { return }
        switch frame {
        case .room, .sessionEnded: break  // room input: acknowledged once handled
        default: return links.handler(frame, peerName, .unneeded)
        }
        let held = links.heldInput
        held.hold(seq, key: peer)
        links.handler(frame, peerName, LinkReceipt(released: { held.release(seq, key: peer) }))
    }

    /// `seq='…'`, and `through='…' pending='…'` when room input is still held: every frame
    /// up to `seq` is handled, and beyond it every frame up to `through` except the room
    /// input still in its rooms' hands (one slow room does not hold back the frames after
    /// it). Room input taken on earlier connections of the link counts too.
    private func acknowledgementAttributes() -> String {
        guard let peer else { return "seq='\(handled)'" }
        let (upTo, pending) = links.heldInput.acknowledgement(key: peer, handled: handled)
        guard let pending, handled > upTo else { return "seq='\(upTo)'" }
        return "seq='\(upTo)' through='\(handled)' pending='\(pending.map(String.init).joined(separator: " "))'"
    }

    /// Every frame up to this one is handled (room input included).
    private var acknowledgedUpTo: UInt64 {
        peer.map { links.heldInput.acknowledgement(key: $0, handled: handled).upTo } ?? handled
    }

    /// Acknowledges what was handled, when that changed since the last acknowledgement.
    private func acknowledge(_ context: ChannelHandlerContext) {
        guard !closing, peer != nil, context.channel.isActive, links.acknowledging.load(ordering: .relaxed),
            addressed == links.incarnation.withLock({ $0 })
        else { return }
        let attributes = acknowledgementAttributes()
        guard attributes != lastAcknowledgement else { return }
        lastAcknowledgement = attributes
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: "<ack \(attributes)/>")), promise: nil)
    }

    /// Refuses the handshake: the peer reads the end of the stream, then the connection closes.
    private func refuse(_ reason: String, event: LinkEvent = .refusedConnector, context: ChannelHandlerContext) {
        links.record(event)
        links.logger.warning("node link refused", metadata: ["address": remote, "reason": "\(reason)"])
        closing = true
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(string: "</stream:stream>")))
            .whenComplete { _ in channel.close(promise: nil) }
    }

    private func close(_ context: ChannelHandlerContext) {
        closing = true
        context.close(promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        acknowledge(context)
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A TLS handshake refused (a certificate of another CA, or no TLS) ends up here.
        links.logger.warning("node link error; closing", metadata: ["address": remote, "error": "\(error)"])
        close(context)
    }
}
