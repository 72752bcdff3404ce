import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import XMPPCore

/// The sending half of the link to one peer: the queue of frames not yet acknowledged,
/// and the connection that carries them (re-established until the link is closed).
///
/// The queue is bounded in frames and in bytes (`NodeLinks.Options`); beyond either bound
/// new frames are refused (the caller bounces them: room input is routed again, a stanza
/// for a user gets an error), while what is queued keeps its order and stays. Refusing,
/// rather than dropping the link, keeps a slow peer's queue from growing without taking
/// from it what it will still receive; a dead peer's queue is bounced when membership
/// declares it gone.
///
/// A frame the peer cannot read would end every connection that carries it, and be sent
/// again on the next one, forever. When the peer reports one (`<bad-frame/>`), the frames
/// that were in flight are sent again one at a time ("probation"); the one that fails
/// alone is dropped and counted.
final class OutboundLink: Sendable {
    let peer: String
    let address: String
    let peerIncarnation: Int64
    private let links: NodeLinks
    private let state = Mutex(State())
    /// The queue's bytes with the marks between which this node's sessions that send
    /// room input to the peer stop being read (`NodeLinks.pressure(to:)`).
    let pressure: PressureGauge

    struct State {
        var nextSeq: UInt64 = 1
        /// Sent or not, not yet acknowledged; in order. `keep`: what the sender keeps alive
        /// until the frame is acknowledged (the receipt of forwarded room input).
        var unacked: [Entry] = []
        /// Encoded bytes in `unacked`.
        var bytes = 0
        /// How many of `unacked` have been written on the current connection.
        var written = 0
        /// Frames up to this sequence number are written one at a time (probation).
        var probationUntil: UInt64 = 0
        /// The queue refused a frame and has not accepted one since (logged once).
        var full = false
        var channel: (any Channel)?
        var ready = false
        var flushScheduled = false
        var closed = false
        var task: Task<Void, Never>?
    }

    /// `bytes`: the frame encoded (`LinkFrameCodec`), with its length prefix.
    typealias Entry = (seq: UInt64, frame: LinkFrame, bytes: [UInt8], keep: (any AnyObject & Sendable)?)

    init(links: NodeLinks, peer: String, address: String, peerIncarnation: Int64) {
        self.links = links
        self.peer = peer
        self.address = address
        self.peerIncarnation = peerIncarnation
        let bound = links.options.maxQueueBytes
        pressure = PressureGauge(high: max(1, bound / 8), low: bound / 16)
    }

    var queued: Int { state.withLock { $0.unacked.count } }
    var queuedBytes: Int { state.withLock { $0.bytes } }

    func start() {
        let task = Task { await self.connectLoop() }
        state.withLock { $0.task = task }
    }

    /// Closes the link; returns the frames never acknowledged, with what was kept for them.
    @discardableResult
    func close() -> [(frame: LinkFrame, keep: (any AnyObject & Sendable)?)] {
        let (channel, task, unsent, bytes) = state.withLock { state in
            state.closed = true
            defer {
                state.unacked = []
                state.bytes = 0
            }
            return (state.channel, state.task, state.unacked.map { ($0.frame, $0.keep) }, state.bytes)
        }
        pressure.add(-bytes)
        task?.cancel()
        channel?.close(promise: nil)
        return unsent
    }

    /// Closes the current connection (as a network failure would): the link connects
    /// again and sends what is unacknowledged.
    func dropConnection() {
        state.withLock { $0.channel }?.close(promise: nil)
    }

    /// Queues `frame`; `false` when the link is closed, its queue is full or the frame is
    /// larger than the largest frame.
    func enqueue(_ frame: LinkFrame, keeping keep: (any AnyObject & Sendable)? = nil) -> Bool {
        let options = links.options
        enum Outcome { case queued(Int), closed, full(first: Bool), tooLarge(Int) }
        let outcome = state.withLock { state -> Outcome in
            guard !state.closed else { return .closed }
            let seq = state.nextSeq
            let bytes = LinkFrameCodec.encode(frame, seq: seq)
            let size = bytes.count
            guard size <= options.maxFrameBytes else { return .tooLarge(size) }
            guard state.unacked.count < options.maxQueueFrames, state.bytes + size <= options.maxQueueBytes else {
                defer { state.full = true }
                return .full(first: !state.full)
            }
            state.nextSeq += 1
            state.unacked.append((seq, frame, bytes, keep))
            state.bytes += size
            scheduleFlush(&state)
            return .queued(size)
        }
        switch outcome {
        case .queued(let size):
            pressure.add(size)
            return true
        case .closed:
            return false
        case .full(let first):
            links.record(.queueFull)
            if first {
                links.logger.warning(
                    "node link: queue full; refusing frames until the peer catches up",
                    metadata: ["peer": "\(peer)", "frames": "\(queued)", "bytes": "\(queuedBytes)"]
                )
            }
            return false
        case .tooLarge(let size):
            links.record(.frameTooLarge)
            links.logger.error(
                "node link: frame larger than the largest frame refused",
                metadata: ["peer": "\(peer)", "bytes": "\(size)", "limit": "\(options.maxFrameBytes)"]
            )
            return false
        }
    }

    /// Writes what is not yet written on the current connection, once per event-loop tick.
    private func scheduleFlush(_ state: inout State) {
        guard state.ready, let channel = state.channel, !state.flushScheduled else { return }
        state.flushScheduled = true
        channel.eventLoop.execute { self.flush() }
    }

    private func flush() {
        let (channel, frames) = state.withLock { state -> ((any Channel)?, [[UInt8]]) in
            state.flushScheduled = false
            guard state.ready, let channel = state.channel, state.written < state.unacked.count else {
                return (nil, [])
            }
            if state.unacked[0].seq <= state.probationUntil {
                // On probation: one frame at a time, the next once this one is acknowledged.
                guard state.written == 0 else { return (nil, []) }
                state.written = 1
                return (channel, [state.unacked[0].bytes])
            }
            let frames = state.unacked[state.written...].map(\.bytes)
            state.written = state.unacked.count
            return (channel, frames)
        }
        guard let channel else { return }
        var buffer = channel.allocator.buffer(capacity: frames.reduce(0) { $0 + $1.count })
        for frame in frames { buffer.writeBytes(frame) }
        channel.writeAndFlush(buffer, promise: nil)
    }

    /// The peer handled every frame up to `seq`, and, when `through` is given, every
    /// frame up to `through` except those in `pending` (room input its rooms still hold:
    /// one slow room does not keep the frames after it from being acknowledged).
    func acknowledged(_ seq: UInt64, through: UInt64? = nil, except pending: Set<UInt64> = []) {
        changingBytes { state in
            removeAcknowledged(upTo: seq, &state)
            if let through, through > seq { removeHandled(through: through, except: pending, &state) }
            if state.written == 0, !state.unacked.isEmpty { scheduleFlush(&state) }
        }
    }

    /// Runs `body` under the lock and tells the gauge what it did to the queue's bytes.
    private func changingBytes<Result>(_ body: (inout State) -> Result) -> Result {
        let (result, delta) = state.withLock { state in
            let before = state.bytes
            let result = body(&state)
            return (result, state.bytes - before)
        }
        pressure.add(delta)
        return result
    }

    private func removeHandled(through: UInt64, except pending: Set<UInt64>, _ state: inout State) {
        guard state.unacked.contains(where: { $0.seq <= through && !pending.contains($0.seq) }) else { return }
        var kept: [Entry] = []
        kept.reserveCapacity(state.unacked.count)
        var written = state.written
        for (index, entry) in state.unacked.enumerated() {
            if entry.seq <= through && !pending.contains(entry.seq) {
                state.bytes -= entry.bytes.count
                if index < state.written { written -= 1 }
            } else {
                kept.append(entry)
            }
        }
        state.unacked = kept
        state.written = written
    }

    private func removeAcknowledged(upTo seq: UInt64, _ state: inout State) {
        let count = state.unacked.prefix { $0.seq <= seq }.count
        guard count > 0 else { return }
        state.bytes -= state.unacked[..<count].reduce(0) { $0 + $1.bytes.count }
        state.unacked.removeFirst(count)
        state.written = max(0, state.written - count)
        let options = links.options
        if state.full, state.bytes < options.maxQueueBytes / 2, state.unacked.count < options.maxQueueFrames / 2 {
            state.full = false
        }
    }

    /// The peer could not read what followed frame `after` and is closing the connection.
    /// A frame on probation that was sent alone is the culprit: dropped. Otherwise every
    /// frame in flight goes on probation for the next connection.
    func peerRejectedFrame(after: UInt64) {
        let dropped = changingBytes { state -> (seq: UInt64, frame: LinkFrame)? in
            removeAcknowledged(upTo: after, &state)
            guard state.written > 0 else { return nil }
            if state.written == 1, state.unacked[0].seq <= state.probationUntil {
                let entry = state.unacked.removeFirst()
                state.bytes -= entry.bytes.count
                state.written = 0
                return (entry.seq, entry.frame)
            }
            state.probationUntil = max(state.probationUntil, state.unacked[state.written - 1].seq)
            state.written = 0
            return nil
        }
        guard let dropped else { return }
        links.record(.poisonFrameDropped)
        links.logger.error(
            "node link: the peer cannot read a frame; dropped it",
            metadata: ["peer": "\(peer)", "seq": "\(dropped.seq)", "frame": "\(dropped.frame.kind)"]
        )
    }

    /// The peer accepted us and has handled everything up to `last`.
    func accepted(channel: any Channel, last: UInt64, through: UInt64? = nil, except pending: Set<UInt64> = []) {
        changingBytes { state in
            removeAcknowledged(upTo: last, &state)
            if let through, through > last { removeHandled(through: through, except: pending, &state) }
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
                let tls = links.tls
                let handler = OutboundLinkHandler(link: self, links: links, tls: tls)
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
            try? await links.clock.sleep(delay)
            delay = min(delay * 2, .seconds(1))
        }
    }
}
