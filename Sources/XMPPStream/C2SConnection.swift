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

/// One client connection (RFC 6120): stream negotiation (STARTTLS, SASL, bind), then
/// stanzas to and from the session. Bound to its channel's event loop.
/// The key for unknown accounts' salts when the configuration gives none: random, so
/// stable for the process's life only.
private let processSaltKey: [UInt8] = {
    var generator = SystemRandomNumberGenerator()
    return (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
}()

final class C2SConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase {
        /// Waiting for a stream header (first, or after a restart).
        case awaitingHeader
        case negotiating
        case bound(C2SSession)
        case closed
    }

    private let configuration: C2SConfiguration
    private let delegate: any C2SDelegate
    private let throttle: AuthThrottle
    private let admission: ConnectionAdmission
    /// The client's IP address (no port), for the per-address limits.
    private let address: String
    /// Holds a place among the connections not yet authenticated.
    private var admitted = false
    private var refusal: String?
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
    /// Set while a stream error is being written, so writing it cannot end it again.
    private var ending = false
    /// Asynchronous steps started so far (see `beginStep`).
    private var steps = 0
    private var logger: Logger
    private let parser: XMLStreamParser
    private var context: ChannelHandlerContext?

    private var phase = Phase.awaitingHeader
    private var headerSent = false
    /// This tick's stanzas, written at its end (`appendOutput`), and the buffer of an
    /// earlier tick to use again.
    private var output: ByteBuffer?
    private var spareOutput: ByteBuffer?
    private var tlsActive: Bool
    /// The certificate this connection uses (a reload affects later connections only).
    private let tls: C2STLS?
    private let plaintextAllowed: Bool
    private var authenticated: JID?
    private var streamID = ""
    /// The stream's default language (its header's `xml:lang`), given to the client's
    /// stanzas that name none (RFC 6120 §8.1.5).
    private var streamLanguage: String?
    /// Set while an asynchronous step (account lookup, a throttling delay) runs;
    /// events arriving meanwhile wait in `pending`.
    private var busy = false
    private var pending: [XMLStreamEvent] = []
    /// Bumped on every parser reset, so events of the old stream are dropped.
    private var generation = 0
    /// The SCRAM exchange waiting for the client's final message.
    private var scram: SCRAMServerExchange?
    private var authFailures = 0
    private var plusOffered = false

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
        self.tlsActive = directTLS
        self.plaintextAllowed = configuration.options.allowPlaintextOnLoopback && remoteIsLoopback
        self.logger = logger
        self.parser = XMLStreamParser(options: configuration.options.parser)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        configuration.metrics.connectionOpened()
        refusal = admission.admit(address, options: configuration.options)
        admitted = refusal == nil
        let timeout = configuration.options.negotiationTimeout
        negotiationDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            if case .bound = phase { return }
            fail(StreamError(.connectionTimeout, text: "log in within \(timeout.nanoseconds / 1_000_000_000) s"))
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        if let refusal {
            configuration.metrics.refusedConnection()
            fail(StreamError(.policyViolation, text: refusal))
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        configuration.metrics.connectionClosed()
        negotiationDeadline?.cancel()
        idleCheck?.cancel()
        idleCheck = nil
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
            guard case .bound = phase else { return }
            guard !busy, readsSinceIdleCheck == 0 else { return scheduleIdleCheck() }
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
        guard case .closed = phase else {
            let buffer = unwrapInboundIn(data)
            readsSinceIdleCheck += 1
            if authenticated == nil {
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
            enqueue(events)
            if case .bound = phase, idleCheck == nil { scheduleIdleCheck() }
            return
        }
    }

    private func enqueue(_ events: [XMLStreamEvent]) {
        let generation = self.generation
        for event in events {
            guard generation == self.generation, !isClosed else { return }
            if busy {
                pending.append(event)
            } else {
                handle(event)
            }
        }
        updateReading()
    }

    /// Reading stops while the client's output is backed up (it does not read what we
    /// send, so it must not make us produce more) and while an asynchronous step runs
    /// (what was read meanwhile waits in `pending`, bounded by one read).
    private func updateReading() {
        guard let context, !isClosed else { return }
        let pause = outputBackedUp || busy
        guard pause != readingPaused else { return }
        readingPaused = pause
        if pause { configuration.metrics.readingPaused() }
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: !pause)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        outputBackedUp = !context.channel.isWritable
        updateReading()
        context.fireChannelWritabilityChanged()
    }

    /// Ends a stream whose client leaves more than `maxUnsentBytes` unread.
    private func checkUnsentOutput(_ context: ChannelHandlerContext) {
        guard !ending, !context.channel.isWritable,
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
        updateReading()
        let generation = self.generation
        while !busy, !pending.isEmpty, generation == self.generation, !isClosed {
            handle(pending.removeFirst())
        }
    }

    private var isClosed: Bool {
        if case .closed = phase { return true }
        return false
    }

    private func handle(_ event: XMLStreamEvent) {
        switch event {
        case .streamOpen(let header, let defaultNamespace):
            openStream(header: header, defaultNamespace: defaultNamespace)
        case .element(let element):
            switch phase {
            case .awaitingHeader, .closed:
                fail(StreamError(.notWellFormed))
            case .negotiating:
                negotiate(element)
            case .bound(let session):
                stanza(element, session: session)
            }
        case .streamClose:
            closeStream()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        endSession(then: nil)
        phase = .closed
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
        if error is NIOSSLError || error is BoringSSLError {
            context.close(promise: nil)
        } else {
            fail(StreamError(.internalServerError))
        }
    }

    // MARK: - Stream header

    private func openStream(header: XMLElement, defaultNamespace: String?) {
        streamID = randomNonce().filter { $0.isLetter || $0.isNumber }
        // A language tag (BCP 47: letters, digits and hyphens, short); anything else is ignored.
        streamLanguage = header[attribute: "xml:lang"].flatMap { lang in
            lang.count <= 35 && !lang.isEmpty && lang.utf8.allSatisfy { $0 == UInt8(ascii: "-") || ($0 < 0x80 && Character(UnicodeScalar($0)).isLetter) || ($0 >= 0x30 && $0 <= 0x39) }
                ? lang : nil
        }
        let to = header[attribute: "to"].flatMap { try? JID($0) }
        var reply = "<?xml version='1.0'?><stream:stream xmlns='\(Namespace.client)' "
        reply += "xmlns:stream='\(Namespace.stream)' id='\(streamID)' "
        reply += "from='\(XMLEscaping.escapeAttribute(configuration.domain.description))' version='1.0' xml:lang='en'"
        if let from = header[attribute: "from"].flatMap({ try? JID($0) }) {
            reply += " to='\(XMLEscaping.escapeAttribute(from.description))'"
        }
        reply += ">"
        write(reply)
        headerSent = true
        guard header.name == "stream", header.namespace == Namespace.stream else {
            return fail(StreamError(.invalidNamespace, text: "expected a stream in \(Namespace.stream)"))
        }
        guard defaultNamespace == Namespace.client else {
            return fail(StreamError(.invalidNamespace, text: "the stream's namespace must be jabber:client"))
        }
        guard let version = header[attribute: "version"], version.hasPrefix("1.") else {
            return fail(StreamError(.unsupportedVersion, text: "XMPP 1.0 streams only"))
        }
        guard to == configuration.domain else {
            return fail(StreamError(.hostUnknown, text: "this server serves \(configuration.domain)"))
        }
        phase = .negotiating
        send(features())
    }

    private func features() -> XMLElement {
        var features = XMLElement("features", namespace: Namespace.stream)
        if authenticated != nil {
            features.append(XMLElement("bind", namespace: Namespace.bind))
            features.append(
                XMLElement("session", namespace: Namespace.session, children: [XMLElement("optional", namespace: Namespace.session)])
            )
            return features
        }
        if !tlsActive, tls != nil {
            var starttls = XMLElement("starttls", namespace: Namespace.tls)
            if !plaintextAllowed { starttls.append(XMLElement("required", namespace: Namespace.tls)) }
            features.append(starttls)
        }
        if tlsActive || plaintextAllowed {
            var mechanisms = XMLElement("mechanisms", namespace: Namespace.sasl)
            for mechanism in offeredMechanisms {
                mechanisms.append(XMLElement("mechanism", namespace: Namespace.sasl, text: mechanism.rawValue))
            }
            features.append(mechanisms)
            if plusOffered {
                features.append(
                    XMLElement(
                        "sasl-channel-binding",
                        namespace: Namespace.saslChannelBinding,
                        children: [
                            XMLElement(
                                "channel-binding",
                                namespace: Namespace.saslChannelBinding,
                                ["type": "tls-server-end-point"]
                            )
                        ]
                    )
                )
            }
        }
        return features
    }

    private var offeredMechanisms: [SASLMechanism] {
        let plus = tlsActive && tls != nil && configuration.options.offerChannelBinding
        plusOffered = plus
        return SASLMechanism.allCases.filter { !$0.usesChannelBinding || plus }
    }

    // MARK: - Negotiation

    private func negotiate(_ element: XMLElement) {
        if authenticated != nil, element.namespace == Namespace.sasl {
            return send(SASLFailure(.malformedRequest, text: "already authenticated").element)
        }
        switch (element.namespace, element.name) {
        case (Namespace.tls, "starttls"):
            startTLS()
        case (Namespace.sasl, "auth"):
            startAuthentication(element)
        case (Namespace.sasl, "response"):
            continueAuthentication(element)
        case (Namespace.sasl, "abort"):
            scram = nil
            send(SASLFailure(.aborted).element)
        case (Namespace.client, "iq") where authenticated != nil:
            negotiationIQ(element)
        default:
            if authenticated == nil {
                fail(StreamError(.notAuthorized, text: "authenticate first"))
            } else {
                fail(StreamError(.notAuthorized, text: "bind a resource first"))
            }
        }
    }

    private func startTLS() {
        guard let tls, !tlsActive, authenticated == nil, let context else {
            send(XMLElement("failure", namespace: Namespace.tls))
            write("</stream:stream>")
            close()
            return
        }
        send(XMLElement("proceed", namespace: Namespace.tls))
        // The TLS handler goes first in the pipeline in this same tick, so the
        // client's handshake meets it; whatever plaintext followed is discarded.
        let handler = NIOSSLServerHandler(context: tls.context)
        do {
            try context.pipeline.syncOperations.addHandler(handler, position: .first)
        } catch {
            close()
            return
        }
        tlsActive = true
        restartStream()
    }

    private func restartStream() {
        parser.reset()
        generation += 1
        pending.removeAll()
        phase = .awaitingHeader
    }

    private func startAuthentication(_ element: XMLElement) {
        guard tlsActive || plaintextAllowed else {
            return send(SASLFailure(.encryptionRequired).element)
        }
        guard let name = element[attribute: "mechanism"], let mechanism = SASLMechanism(rawValue: name),
            offeredMechanisms.contains(mechanism)
        else {
            return send(SASLFailure(.invalidMechanism).element)
        }
        let text = element.text.trimmingWhitespace()
        let initial: [UInt8]
        if text.isEmpty || text == "=" {
            initial = []
        } else if let decoded = Base64.decode(text) {
            initial = decoded
        } else {
            return send(SASLFailure(.incorrectEncoding).element)
        }
        if mechanism == .plain {
            return authenticatePlain(initial)
        }
        var exchange = SCRAMServerExchange(
            mechanism: mechanism,
            channelBindingData: tlsActive ? tls?.serverEndPoint : nil
        )
        let username: String
        do {
            username = try exchange.receiveClientFirst(initial)
        } catch {
            return authenticationFailed(error, account: nil)
        }
        let account = try? JID(localpart: username, domainpart: configuration.domain.domainpart)
        beginAttempt(account) { connection in
            guard let account else {
                return connection.authenticationFailed(SASLFailure(.notAuthorized), account: nil)
            }
            if let authzid = exchange.authzid, (try? JID(authzid)) != account {
                return connection.authenticationFailed(SASLFailure(.invalidAuthzid), account: account)
            }
            connection.lookUpCredentials(account) { connection, credentials in
                let options = connection.configuration.options
                let challenge = exchange.serverFirst(
                    credentials: credentials,
                    unknownAccountKey: options.unknownAccountSaltKey.isEmpty
                        ? processSaltKey : options.unknownAccountSaltKey,
                    unknownAccountIterations: options.unknownAccountIterations
                )
                connection.scram = exchange
                connection.send(XMLElement("challenge", namespace: Namespace.sasl, text: Base64.encode(challenge)))
            }
        }
    }

    /// Counts an authentication attempt with the throttle and runs `body` after the
    /// delay it asks for: the delay comes before the outcome is known, so a right
    /// password waits as long as a wrong one.
    private func beginAttempt(_ account: JID?, then body: @escaping (C2SConnection) -> Void) {
        if let previous = attempt.take() {
            throttle.finish(previous, succeeded: false, options: configuration.options)
        }
        guard let (attempt, delay) = throttle.begin(account: account, address: address, options: configuration.options)
        else {
            return send(SASLFailure(.temporaryAuthFailure, text: "too many attempts in progress").element)
        }
        self.attempt = attempt
        guard delay > .zero, let context else { return body(self) }
        configuration.metrics.authenticationDelayed()
        let step = beginStep()
        updateReading()
        context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            guard !self.isClosed else { return }
            body(self)
            self.endStep(step)
        }
    }

    private func finishAttempt(succeeded: Bool) {
        guard let attempt = attempt.take() else { return }
        throttle.finish(attempt, succeeded: succeeded, options: configuration.options)
    }

    private func continueAuthentication(_ element: XMLElement) {
        guard let exchange = scram else {
            return send(SASLFailure(.malformedRequest, text: "no exchange in progress").element)
        }
        scram = nil
        guard let data = Base64.decode(element.text.trimmingWhitespace()) else {
            return send(SASLFailure(.incorrectEncoding).element)
        }
        let account = try? JID(localpart: exchange.username, domainpart: configuration.domain.domainpart)
        do {
            let serverFinal = try exchange.receiveClientFinal(data)
            authenticated = account
            finishAttempt(succeeded: true)
            releaseAdmission()
            send(XMLElement("success", namespace: Namespace.sasl, text: Base64.encode(serverFinal)))
            restartStream()
        } catch {
            authenticationFailed(error, account: account)
        }
    }

    private func succeed() {
        send(XMLElement("success", namespace: Namespace.sasl))
        restartStream()
    }

    private func authenticatePlain(_ data: [UInt8]) {
        let plain: PlainCredentials
        do {
            plain = try PlainCredentials(data)
        } catch {
            return authenticationFailed(error, account: nil)
        }
        let account = try? JID(localpart: plain.username, domainpart: configuration.domain.domainpart)
        beginAttempt(account) { connection in
            guard let account, plain.password.utf8.count <= connection.configuration.options.maxPasswordBytes else {
                return connection.authenticationFailed(SASLFailure(.notAuthorized), account: account)
            }
            if let authzid = plain.authzid, (try? JID(authzid)) != account {
                return connection.authenticationFailed(SASLFailure(.invalidAuthzid), account: account)
            }
            let delegate = connection.delegate
            // PBKDF2 takes milliseconds: it runs off the event loop, which serves other clients.
            connection.lookUp({ try await delegate.credentials(for: account)?.verify(password: plain.password) ?? false }) {
                connection, verified in
                guard verified else {
                    return connection.authenticationFailed(SASLFailure(.notAuthorized), account: account)
                }
                connection.authenticated = account
                connection.finishAttempt(succeeded: true)
                connection.releaseAdmission()
                connection.succeed()
            }
        }
    }

    private func lookUpCredentials(
        _ account: JID,
        then body: @escaping (C2SConnection, StoredCredentials?) -> Void
    ) {
        let delegate = self.delegate
        lookUp({ try await delegate.credentials(for: account) }, then: body)
    }

    /// Runs `work` (an account lookup, a password hash) off the event loop, with reading
    /// paused, then `body` back on it.
    private func lookUp<Result: Sendable>(
        _ work: @escaping @Sendable () async throws -> Result,
        then body: @escaping (C2SConnection, Result) -> Void
    ) {
        guard let context else { return }
        let step = beginStep()
        updateReading()
        let promise = context.eventLoop.makePromise(of: Result.self)
        promise.completeWithTask(work)
        promise.futureResult.assumeIsolated().whenComplete { result in
            guard !self.isClosed else { return }
            switch result {
            case .success(let value):
                body(self, value)
                self.endStep(step)
            case .failure(let error):
                self.logger.error("account lookup failed: \(error)")
                if let attempt = self.attempt.take() { self.throttle.cancel(attempt) }
                self.send(SASLFailure(.temporaryAuthFailure).element)
                self.endStep(step)
            }
        }
    }

    private func authenticationFailed(_ failure: any Error, account: JID?) {
        let failure = failure as? SASLFailure ?? SASLFailure(.notAuthorized)
        authFailures += 1
        logger.info("authentication failed", metadata: ["account": "\(account?.description ?? "-")", "reason": "\(failure)"])
        if attempt != nil {
            finishAttempt(succeeded: false)
        } else if let (attempt, _) = throttle.begin(account: account, address: address, options: configuration.options) {
            // Refused before an attempt began (a malformed first message): it still counts.
            throttle.finish(attempt, succeeded: false, options: configuration.options)
        }
        send(failure.element)
        if authFailures >= configuration.options.maxAuthFailuresPerConnection {
            fail(StreamError(.policyViolation, text: "too many failed authentication attempts"))
        }
    }

    // MARK: - Binding

    private func negotiationIQ(_ iq: XMLElement) {
        guard iq.type == "set", let payload = iq.elements.first else {
            return fail(StreamError(.notAuthorized, text: "bind a resource first"))
        }
        switch (payload.namespace, payload.name) {
        case (Namespace.bind, "bind"):
            bind(iq, payload: payload)
        case (Namespace.session, "session"):
            send(iq.iqResult())
        default:
            fail(StreamError(.notAuthorized, text: "bind a resource first"))
        }
    }

    private func bind(_ iq: XMLElement, payload: XMLElement) {
        guard let account = authenticated, let context else { return }
        let requested = payload.child("resource", namespace: Namespace.bind)?.text.trimmingWhitespace()
        let jid: JID
        do {
            if let requested, !requested.isEmpty {
                jid = try account.with(resource: requested)
            } else {
                jid = try account.with(resource: "conclave-" + randomNonce().filter { $0.isLetter || $0.isNumber })
            }
        } catch {
            return send(iq.errorReply(StanzaError(.badRequest, text: "invalid resource")))
        }
        let session = C2SSession(jid: jid, streamID: streamID, connection: self, eventLoop: context.eventLoop)
        phase = .bound(session)
        negotiationDeadline?.cancel()
        negotiationDeadline = nil
        scheduleIdleCheck()
        logger[metadataKey: "jid"] = "\(jid)"
        var result = XMLElement("iq", namespace: Namespace.client, ["type": "result"])
        if let id = iq.id { result.id = id }
        result.append(
            XMLElement("bind", namespace: Namespace.bind, children: [XMLElement("jid", namespace: Namespace.bind, text: jid.description)])
        )
        // The session is registered (in the cluster's directory too) before the client
        // learns its JID, so that nobody can address it before it is found.
        busy = true
        let promise = context.eventLoop.makePromise(of: Void.self)
        let delegate = self.delegate
        promise.completeWithTask { await delegate.sessionBound(session) }
        promise.futureResult.assumeIsolated().whenComplete { _ in
            guard !self.isClosed else { return }
            self.send(result)
            self.resume()
        }
    }

    // MARK: - Stanzas

    private func stanza(_ element: XMLElement, session: C2SSession) {
        configuration.metrics.received(element.name)
        guard element.stanzaKind != nil else {
            return fail(StreamError(.unsupportedStanzaType, text: "<\(element.name)/> in \(element.namespace)"))
        }
        var stanza = element
        if let from = element[attribute: "from"] {
            guard let jid = try? JID(from), jid == session.jid || jid == session.jid.bare else {
                return fail(StreamError(.invalidFrom))
            }
        }
        stanza[attribute: "from"] = session.jid.description
        if let streamLanguage, stanza[attribute: "xml:lang"] == nil {
            stanza.attributes.append(XMLAttribute(name: "xml:lang", value: streamLanguage))
        }
        if element.name == "iq", let payload = element.elements.first, payload.namespace == Namespace.session,
            payload.name == "session", element.type == "set"
        {
            return send(element.iqResult())
        }
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

    private func closeStream() {
        guard !isClosed else { return }
        busy = true
        endSession { connection in
            connection.write("</stream:stream>")
            connection.close()
        }
    }

    /// Ends the bound session (if any) with the delegate, then runs `next`.
    private func endSession(then next: ((C2SConnection) -> Void)?) {
        guard case .bound(let session) = phase, let context else {
            next?(self)
            return
        }
        phase = .negotiating
        let delegate = self.delegate
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.completeWithTask { await delegate.sessionEnded(session) }
        if let next {
            promise.futureResult.assumeIsolated().whenComplete { _ in next(self) }
        }
    }

    // MARK: - Output

    func send(_ element: XMLElement) {
        guard !isClosed else { return }
        configuration.metrics.sent(element.name, isError: element[attribute: "type"] == "error")
        let text = element.serialized(parentNamespace: Namespace.client)
        guard case .bound = phase, let context else { return write(text) }
        appendOutput(context) { $0.writeString(text) }
    }

    /// A room's copy of a prepared stanza, for `recipient`.
    func send(_ stanza: PreparedStanza, to recipient: JID) {
        guard !isClosed, case .bound = phase, let context else { return }
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
        checkUnsentOutput(context)
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
        guard !isClosed, !ending else { return }
        ending = true
        logger.info("stream error", metadata: ["condition": "\(error.condition.rawValue)"])
        configuration.metrics.streamError(error.condition.rawValue)
        if !headerSent {
            write(
                "<?xml version='1.0'?><stream:stream xmlns='\(Namespace.client)' xmlns:stream='\(Namespace.stream)' "
                    + "id='\(randomNonce().filter { $0.isLetter })' from='\(configuration.domain)' version='1.0'>"
            )
            headerSent = true
        }
        write(error.element.serialized(parentNamespace: Namespace.client) + "</stream:stream>")
        endSession { connection in connection.close() }
        phase = .closed
    }

    private func close() {
        phase = .closed
        flushOutput()
        context?.close(promise: nil)
    }
}
