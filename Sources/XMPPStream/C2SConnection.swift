import Logging
import NIOCore
import NIOSSL
import Storage
import XMPPCore
import XMPPXMLParser

/// Sent through a connection's pipeline to end it with `<system-shutdown/>`.
public struct SystemShutdownEvent: Sendable {
    public init() {}
}

/// One client connection (RFC 6120): carries out what its `C2SStreamMachine` decides
/// (stream negotiation, authentication, binding, a session's stanza checks) on its
/// channel, and does the I/O around it: parsing, pausing reads while a step runs or
/// the client does not read, batching a bound session's output per tick, deadlines,
/// and releasing an idle session's memory. Bound to its channel's event loop.
final class C2SConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let configuration: C2SConfiguration
    private let delegate: any C2SDelegate
    private let throttle: AuthThrottle
    private let admission: ConnectionAdmission
    /// The client's IP address (no port), for the per-address limits.
    private let address: String
    /// Holds a place among the connections not yet authenticated.
    private var admitted = false
    private var refusal: StreamError?
    private var negotiationDeadline: Scheduled<Void>?
    /// The next look at whether the bound session went idle (`idleRelease`), and the reads
    /// since the last one.
    private var idleCheck: Scheduled<Void>?
    private var readsSinceIdleCheck = 0
    private var preAuthBytes = 0
    /// The authentication attempt in progress (counted by the throttle until it ends).
    private var attempt: AuthThrottle.Attempt?
    /// Why reading from the client is paused: its output is backed up, or an
    /// asynchronous step runs (events already read wait in `pending`).
    private var outputBackedUp = false
    private var readingPaused = false
    /// Asynchronous steps started so far (see `beginStep`).
    private var steps = 0
    private var logger: Logger
    private let parser: XMLStreamParser
    private var context: ChannelHandlerContext?

    /// The protocol's state and decisions.
    private var machine: C2SStreamMachine
    /// The bound session, until it ends.
    private var session: C2SSession?
    /// This tick's stanzas, written at its end (`appendOutput`), and the buffer of an
    /// earlier tick to use again.
    private var output: ByteBuffer?
    private var spareOutput: ByteBuffer?
    /// The certificate this connection uses (a reload affects later connections only).
    private let tls: C2STLS?
    /// Set while an asynchronous step (account lookup, a throttling delay) runs;
    /// events arriving meanwhile wait in `pending`.
    private var busy = false
    /// Events read and not yet handled, from `pendingHead` on.
    private var pending: [XMLStreamEvent] = []
    private var pendingHead = 0
    /// The session's traffic shaping, and the waits it set: for the next read (bytes) and
    /// for the first stanza in `pending` (stanzas).
    private var shaper: SessionShaper
    private var shapedRead: Scheduled<Void>?
    private var shapedStanza: Scheduled<Void>?
    /// The loop's lag, and the bytes this session read in the current window: while the
    /// loop lags, a session that read more than `yieldAfterBytes` in the window yields.
    private var loopLag: LoopLag?
    private var windowStart: NIODeadline = .uptimeNanoseconds(0)
    private var bytesInWindow = 0
    /// Set while reading yields to a late loop (its end at the latest).
    private var yielding: Scheduled<Void>?
    /// This connection has a waiter with the loop's `LoopLag`.
    private var awaitingCatchUp = false
    /// Bumped on every parser reset, so events of the old stream are dropped.
    private var generation = 0

    init(
        configuration: C2SConfiguration,
        delegate: any C2SDelegate,
        throttle: AuthThrottle,
        admission: ConnectionAdmission,
        address: String,
        tls: C2STLS?,
        directTLS: Bool,
        remoteIsLoopback: Bool,
        logger: Logger
    ) {
        self.tls = tls
        self.configuration = configuration
        self.delegate = delegate
        self.throttle = throttle
        self.admission = admission
        self.address = address
        self.logger = logger
        self.parser = XMLStreamParser(options: configuration.options.parser)
        self.shaper = SessionShaper(limits: configuration.options.shaping)
        self.machine = C2SStreamMachine(
            domain: configuration.domain, options: configuration.options, tlsAvailable: tls != nil,
            channelBindingData: tls?.serverEndPoint, directTLS: directTLS,
            plaintextAllowed: configuration.options.allowPlaintextOnLoopback && remoteIsLoopback
        )
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        configuration.metrics.connectionOpened()
        let options = configuration.options
        if options.maxConnections > 0, configuration.metrics.connectionsOpen > options.maxConnections {
            // This one counted already: past the budget means more than it.
            refusal = StreamError(.resourceConstraint, text: "this server is full; try again later or another server")
        } else if options.admissionRefusal?() != nil {
            refusal = StreamError(.resourceConstraint, text: "this server is full; try again later or another server")
        } else {
            refusal = admission.admit(address, options: options).map { StreamError(.policyViolation, text: $0) }
        }
        admitted = refusal == nil
        let timeout = configuration.options.negotiationTimeout
        negotiationDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            if machine.boundJID != nil { return }
            fail(StreamError(.connectionTimeout, text: "log in within \(timeout.nanoseconds / 1_000_000_000) s"))
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        if let refusal {
            configuration.metrics.refusedConnection()
            fail(refusal)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        configuration.metrics.connectionClosed()
        negotiationDeadline?.cancel()
        idleCheck?.cancel()
        idleCheck = nil
        shapedRead?.cancel()
        shapedRead = nil
        shapedStanza?.cancel()
        shapedStanza = nil
        yielding?.cancel()
        yielding = nil
        if outputBackedUp {
            outputBackedUp = false
            configuration.metrics.outputBackedUp(false)
        }
        releaseAdmission()
        if let attempt = attempt.take() {
            // An attempt abandoned halfway counts as a failure.
            throttle.finish(attempt, succeeded: false, options: configuration.options)
        }
    }

    /// A bound session that read nothing since the last check releases its parser's
    /// state (between stanzas only) and its spare output buffer; one that read goes on
    /// being watched. Nothing is watched while released: the next read starts it again.
    private func scheduleIdleCheck() {
        guard idleCheck == nil, let context else { return }
        readsSinceIdleCheck = 0
        idleCheck = context.eventLoop.assumeIsolated().scheduleTask(in: configuration.options.idleRelease) { [self] in
            idleCheck = nil
            guard session != nil else { return }
            guard !held, readsSinceIdleCheck == 0 else { return scheduleIdleCheck() }
            spareOutput = nil
            guard !parser.hibernating else { return }
            if parser.hibernate() {
                configuration.metrics.idleSessionReleased()
            } else {
                scheduleIdleCheck()  // in the middle of a stanza: look again later
            }
        }
    }

    private func releaseAdmission() {
        guard admitted else { return }
        admitted = false
        admission.release(address)
    }

    // MARK: - Input

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !isClosed else { return }
        let buffer = unwrapInboundIn(data)
        readsSinceIdleCheck += 1
        if machine.authenticated == nil {
            preAuthBytes += buffer.readableBytes
            if preAuthBytes > configuration.options.maxPreAuthBytes {
                fail(StreamError(.policyViolation, text: "too much data before authentication"))
                return
            }
        }
        let events: [XMLStreamEvent]
        do {
            events = try buffer.withUnsafeReadableBytes { bytes in try parser.parse(bytes) }
        } catch let error as XMLStreamParserError {
            fail(error.streamError)
            return
        } catch {
            fail(StreamError(.internalServerError))
            return
        }
        if session != nil {
            let now = context.eventLoop.now
            if let wait = shaper.read(buffer.readableBytes, now: now) {
                delayReading(by: wait, context: context)
            } else if let lag = loadYield(buffer.readableBytes, now: now) {
                yield(to: lag, context: context)
            }
        }
        enqueue(events)
        if session != nil, idleCheck == nil { scheduleIdleCheck() }
    }

    private func enqueue(_ events: [XMLStreamEvent]) {
        let generation = self.generation
        for event in events {
            guard generation == self.generation, !isClosed else { return }
            if held || pendingHead < pending.count {
                pending.append(event)
            } else if let wait = shapingWait(for: event) {
                pending.append(event)
                holdStanzas(for: wait)
            } else {
                handle(event)
            }
        }
        let limits = configuration.options.shaping
        if shapedStanza != nil, pending.count - pendingHead > limits.maxHeldStanzas {
            configuration.metrics.shapedSessionEnded()
            fail(StreamError(.policyViolation, text: "sending faster than this server allows (\(limits.stanzasPerSecond) stanzas a second)"))
            return
        }
        updateReading()
    }

    /// Events wait in `pending` while a step runs or the shaper holds them.
    private var held: Bool { busy || shapedStanza != nil }

    /// How long a bound session's stanza waits for the shaper (taking its token when it
    /// need not wait), or `nil`.
    private func shapingWait(for event: XMLStreamEvent) -> TimeAmount? {
        guard case .element = event, session != nil, let context else { return nil }
        return shaper.stanza(now: context.eventLoop.now)
    }

    /// While the loop lags (it is given more than it can do), a session that read more
    /// than `yieldAfterBytes` in the current 100 ms pauses its reading for a while, so that
    /// sessions that send little go first; the flood waits in its sender's socket.
    private func loadYield(_ bytes: Int, now: NIODeadline) -> LoopLag? {
        let threshold = configuration.options.yieldAfterBytes
        guard threshold > 0, let context else { return nil }
        if now - windowStart > .milliseconds(100) {
            windowStart = now
            bytesInWindow = 0
        }
        bytesInWindow += bytes
        // A read of a quarter of the threshold counts on its own: when the loop's turns
        // are long, a window holds one read per connection.
        guard bytesInWindow > threshold || bytes >= threshold / 4 else { return nil }
        let lag = loopLag ?? LoopLag.of(context.eventLoop)
        loopLag = lag
        return lag.isLagging ? lag : nil
    }

    /// Pauses reading until the loop runs on time again (250 ms at most). One waiter per
    /// connection stays with the loop while it runs late, and resumes whatever yield is
    /// current when its turn comes.
    private func yield(to lag: LoopLag, context: ChannelHandlerContext) {
        guard yielding == nil else { return }
        configuration.metrics.yielded()
        yielding = context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(250)) { [self] in
            yielding = nil
            endYield()
        }
        if !awaitingCatchUp {
            awaitingCatchUp = true
            lag.whenCaughtUp { [weak self] in
                guard let self else { return false }
                awaitingCatchUp = false
                guard let pending = yielding else { return false }
                pending.cancel()
                yielding = nil
                endYield()
                return true
            }
        }
        updateReading()
    }

    private func endYield() {
        bytesInWindow = 0
        updateReading()
    }

    /// The bytes read put the session's shaper in debt: the next read waits it off.
    private func delayReading(by wait: TimeAmount, context: ChannelHandlerContext) {
        guard shapedRead == nil else { return }
        configuration.metrics.sessionShaped()
        shapedRead = context.eventLoop.assumeIsolated().scheduleTask(in: wait) { [self] in
            shapedRead = nil
            updateReading()
        }
        updateReading()
    }

    /// The first stanza in `pending` has no token yet: it, and what follows, waits.
    private func holdStanzas(for wait: TimeAmount) {
        guard shapedStanza == nil, let context else { return }
        configuration.metrics.sessionShaped()
        shapedStanza = context.eventLoop.assumeIsolated().scheduleTask(in: wait) { [self] in
            shapedStanza = nil
            guard !isClosed else { return }
            drain()
        }
        updateReading()
    }

    /// Reading stops while the client's output is backed up (it does not read what we
    /// send, so it must not make us produce more) and while an asynchronous step runs
    /// (what was read meanwhile waits in `pending`, bounded by one read).
    private func updateReading() {
        guard let context, !isClosed else { return }
        let pause = outputBackedUp || held || shapedRead != nil || yielding != nil
        guard pause != readingPaused else { return }
        readingPaused = pause
        if pause { configuration.metrics.readingPaused() }
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: !pause)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let backedUp = !context.channel.isWritable
        if backedUp != outputBackedUp { configuration.metrics.outputBackedUp(backedUp) }
        outputBackedUp = backedUp
        updateReading()
        context.fireChannelWritabilityChanged()
    }

    /// Ends a stream whose client leaves more than `maxUnsentBytes` unread.
    private func checkUnsentOutput(_ context: ChannelHandlerContext) {
        guard !context.channel.isWritable,
            let unsent = try? context.channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes),
            unsent > configuration.options.maxUnsentBytes
        else { return }
        configuration.metrics.slowConsumerEnded()
        logger.info("ending a stream whose client does not read", metadata: ["unsent": "\(unsent)"])
        fail(StreamError(.policyViolation, text: "too much output left unread"))
    }

    /// Starts an asynchronous step: events wait in `pending` (and reading pauses) until
    /// it ends. Steps may start steps; only the latest one resumes the input.
    private func beginStep() -> Int {
        steps += 1
        busy = true
        updateReading()
        return steps
    }

    private func endStep(_ step: Int) {
        guard !isClosed, busy, step == steps else { return }
        resume()
    }

    private func resume() {
        busy = false
        drain()
    }

    /// Handles what waits in `pending`, in order, until a step or the shaper holds it.
    private func drain() {
        updateReading()
        let generation = self.generation
        while !held, pendingHead < pending.count, generation == self.generation, !isClosed {
            let event = pending[pendingHead]
            if let wait = shapingWait(for: event) {
                holdStanzas(for: wait)
                break
            }
            pendingHead += 1
            handle(event)
        }
        if generation == self.generation {
            if pendingHead == pending.count {
                pending.removeAll()
                pendingHead = 0
            } else if pendingHead >= 1024 {
                pending.removeFirst(pendingHead)
                pendingHead = 0
            }
        }
        updateReading()
    }

    private var isClosed: Bool { machine.isClosed }

    private func handle(_ event: XMLStreamEvent) {
        switch event {
        case .streamOpen(let header, let defaultNamespace):
            feed(.streamOpened(header: header, defaultNamespace: defaultNamespace))
        case .element(let element):
            if machine.boundJID != nil { configuration.metrics.received(element.name) }
            feed(.element(element))
        case .streamClose:
            feed(.streamClosed)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        feed(.connectionLost)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is SystemShutdownEvent {
            fail(StreamError(.systemShutdown))
        } else if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            fail(StreamError(.connectionTimeout))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error: \(error)")
        // TLS failing, or the socket (a client gone: reset, broken pipe): nothing can be
        // said on this connection any more, and it is not the server's error.
        if error is NIOSSLError || error is BoringSSLError || error is IOError {
            context.close(promise: nil)
        } else {
            fail(StreamError(.internalServerError))
        }
    }

    // MARK: - Carrying out the machine's actions

    private func feed(_ input: C2SStreamMachine.Input) {
        let actions = machine.handle(input)
        let wasOpen = !machine.isClosed
        for action in actions {
            // Ended meanwhile by something an action did (a client that does not read):
            // the rest of what was decided for the open stream is not done.
            if wasOpen, machine.isClosed { break }
            perform(action)
        }
    }

    private func perform(_ action: C2SStreamMachine.Action) {
        switch action {
        case .write(let text):
            write(text)
        case .send(let element):
            emit(element)
        case .streamError(let error):
            logger.info("stream error", metadata: ["condition": "\(error.condition.rawValue)"])
            configuration.metrics.streamError(error.condition.rawValue)
        case .startTLS:
            startTLS()
        case .restartStream:
            parser.reset()
            generation += 1
            pending.removeAll()
            pendingHead = 0
        case .beginAttempt(let account):
            beginAttempt(account)
        case .authenticationFailed(let account, let failure):
            logger.info("authentication failed", metadata: ["account": "\(account?.description ?? "-")", "reason": "\(failure)"])
            if let attempt = attempt.take() {
                throttle.finish(attempt, succeeded: false, options: configuration.options)
            } else if let (attempt, _) = throttle.begin(account: account, address: address, options: configuration.options) {
                // Refused before an attempt began (a malformed first message): it still counts.
                throttle.finish(attempt, succeeded: false, options: configuration.options)
            }
        case .authenticationSucceeded:
            if let attempt = attempt.take() {
                throttle.finish(attempt, succeeded: true, options: configuration.options)
            }
            releaseAdmission()
        case .lookUpCredentials(let account):
            let delegate = self.delegate
            lookUp({ try await delegate.credentials(for: account) }) { .credentials($0) }
        case .checkPassword(let account, let password):
            let delegate = self.delegate
            // PBKDF2 takes milliseconds: it runs off the event loop, which serves other clients.
            lookUp({ try await delegate.credentials(for: account)?.verify(password: password) ?? false }) {
                .passwordChecked($0)
            }
        case .bind(let jid, let reply):
            bind(jid, reply: reply)
        case .route(let stanza):
            route(stanza)
        case .endSession(let next):
            if next == .closeStream { busy = true }
            endSession {
                switch next {
                case .closeStream?:
                    $0.write("</stream:stream>")
                    $0.close()
                case .close?:
                    $0.close()
                case nil:
                    break
                }
            }
        case .close:
            close()
        }
    }

    private func startTLS() {
        guard let tls, let context else { return close() }
        // The TLS handler goes first in the pipeline in this same tick, so the
        // client's handshake meets it.
        let handler = NIOSSLServerHandler(context: tls.context)
        do {
            try context.pipeline.syncOperations.addHandler(handler, position: .first)
        } catch {
            close()
        }
    }

    /// Counts an authentication attempt with the throttle and tells the machine to go
    /// on after the delay the throttle asks for.
    private func beginAttempt(_ account: JID?) {
        if let previous = attempt.take() {
            throttle.finish(previous, succeeded: false, options: configuration.options)
        }
        guard let (attempt, delay) = throttle.begin(account: account, address: address, options: configuration.options)
        else {
            return feed(.attemptRefused)
        }
        self.attempt = attempt
        guard delay > .zero, let context else { return feed(.attemptStarted) }
        configuration.metrics.authenticationDelayed()
        let step = beginStep()
        context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            guard !self.isClosed else { return }
            self.feed(.attemptStarted)
            self.endStep(step)
        }
    }

    /// Runs `work` (an account lookup, a password hash) off the event loop, with reading
    /// paused, then gives the machine its outcome back on the loop.
    private func lookUp<Result: Sendable>(
        _ work: @escaping @Sendable () async throws -> Result,
        then outcome: @escaping (Result) -> C2SStreamMachine.Input
    ) {
        guard let context else { return }
        let step = beginStep()
        let promise = context.eventLoop.makePromise(of: Result.self)
        promise.completeWithTask(work)
        promise.futureResult.assumeIsolated().whenComplete { result in
            guard !self.isClosed else { return }
            switch result {
            case .success(let value):
                self.feed(outcome(value))
            case .failure(let error):
                self.logger.error("account lookup failed: \(error)")
                if let attempt = self.attempt.take() { self.throttle.cancel(attempt) }
                self.feed(.lookupFailed)
            }
            self.endStep(step)
        }
    }

    private func bind(_ jid: JID, reply: XMLElement) {
        guard let context else { return }
        let session = C2SSession(jid: jid, streamID: machine.streamID, connection: self, eventLoop: context.eventLoop)
        self.session = session
        negotiationDeadline?.cancel()
        negotiationDeadline = nil
        scheduleIdleCheck()
        logger[metadataKey: "jid"] = "\(jid)"
        // The session is registered (in the cluster's directory too) before the client
        // learns its JID, so that nobody can address it before it is found.
        busy = true
        let promise = context.eventLoop.makePromise(of: Void.self)
        let delegate = self.delegate
        promise.completeWithTask { await delegate.sessionBound(session) }
        promise.futureResult.assumeIsolated().whenComplete { _ in
            guard !self.isClosed else { return }
            self.emit(reply)
            self.resume()
        }
    }

    private func route(_ stanza: XMLElement) {
        guard let session else { return }
        delegate.route(stanza, from: session)
        guard let work = delegate.completion(ofRouting: stanza, from: session) else { return }
        // Reading waits for it (what was read meanwhile waits in `pending`).
        busy = true
        updateReading()
        let promise = context?.eventLoop.makePromise(of: Void.self)
        promise?.completeWithTask { await work() }
        promise?.futureResult.assumeIsolated().whenComplete { _ in
            guard !self.isClosed else { return }
            self.resume()
        }
    }

    /// Ends the bound session (if any) with the delegate, then runs `next`.
    private func endSession(then next: @escaping (C2SConnection) -> Void) {
        guard let session = session.take(), let context else {
            next(self)
            return
        }
        let delegate = self.delegate
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.completeWithTask { await delegate.sessionEnded(session) }
        promise.futureResult.assumeIsolated().whenComplete { _ in next(self) }
    }

    // MARK: - Output

    /// A stanza for the client (from the node: routed to this session).
    func send(_ element: XMLElement) {
        guard !isClosed else { return }
        emit(element)
    }

    /// An element the machine or the node sends: into this tick's output once bound,
    /// written at once before.
    private func emit(_ element: XMLElement) {
        configuration.metrics.sent(element.name, isError: element[attribute: "type"] == "error")
        let text = element.serialized(parentNamespace: Namespace.client)
        guard session != nil, let context else { return write(text) }
        appendOutput(context) { $0.writeString(text) }
    }

    /// A room's copy of a prepared stanza, for `recipient`.
    func send(_ stanza: PreparedStanza, to recipient: JID) {
        guard !isClosed, session != nil, let context else { return }
        configuration.metrics.sent(stanza.name, isError: stanza.isError)
        appendOutput(context) { stanza.write(to: recipient, into: &$0) }
    }

    /// The stanzas a bound session is sent during one event-loop tick go into one buffer,
    /// written and flushed at the end of the tick (one run of TLS records, one system
    /// call). Its memory serves again at a later tick once the channel has let go of it.
    private func appendOutput(_ context: ChannelHandlerContext, _ body: (inout ByteBuffer) -> Void) {
        if output == nil {
            if var buffer = spareOutput.take() {
                buffer.clear()
                output = buffer
            } else {
                output = context.channel.allocator.buffer(capacity: 1024)
            }
            context.eventLoop.assumeIsolated().execute { [self] in flushOutput() }
        }
        body(&output!)
    }

    private func flushOutput() {
        guard let buffer = output.take(), let context else { return }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        if !isClosed { checkUnsentOutput(context) }
        // Kept for the next tick only when small: a burst (an occupant list on joining)
        // must not stay as memory of an idle session.
        // Nor by a released idle session that only receives.
        if buffer.capacity <= 4 * 1024, !parser.hibernating { spareOutput = buffer }
    }

    /// Written and flushed at once (negotiation, stream errors, the end of the stream),
    /// after whatever this tick's output holds.
    private func write(_ text: String) {
        guard let context else { return }
        if let pending = output.take() { context.write(wrapOutboundOut(pending), promise: nil) }
        let buffer = context.channel.allocator.buffer(string: text)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        if !isClosed { checkUnsentOutput(context) }
    }

    /// Ends the stream with `error` and closes the connection.
    func fail(_ error: StreamError) {
        feed(.failed(error))
    }

    private func close() {
        machine.markClosed()
        flushOutput()
        context?.close(promise: nil)
    }
}
