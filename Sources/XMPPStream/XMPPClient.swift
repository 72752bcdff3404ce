public import NIOCore
import NIOPosix
import Synchronization
import NIOSSL
import XMPPCore
import XMPPXMLParser

/// The client side of an XMPP c2s stream, on the same parser and element model as
/// the server. Used by `conclave-spec`, `conclave-bench` and the tests.
///
/// `connect` opens the stream (and TLS); `authenticate` and `bind` finish the
/// negotiation; then `send` and `next` exchange stanzas.
public final class XMPPClient: Sendable {
    public enum TLSMode: Sendable, Hashable {
        /// STARTTLS when the server offers it; `required` fails when it does not.
        case starttls(required: Bool)
        /// TLS from the first byte (XEP-0368).
        case direct
        /// Never TLS.
        case none
    }

    public enum Trust: Sendable, Hashable {
        /// The system's trust store.
        case system
        /// Only certificates issued by the PEM file's CAs.
        case caFile(String)
        /// Anything (tests against a self-signed certificate).
        case noVerification
    }

    public struct Options: Sendable {
        public var tls: TLSMode = .starttls(required: false)
        public var trust: Trust = .noVerification
        /// How long `next` and negotiation steps wait.
        public var timeout: TimeAmount = .seconds(10)
        /// The local address to connect from (e.g. 127.0.0.2, for more source ports).
        public var sourceAddress: String?
        /// The socket's send buffer (SO_SNDBUF), when set: small, the client sees at once
        /// (`isWritable`) that the server does not read it.
        public var sendBufferBytes: Int?
        /// The socket's receive buffer (SO_RCVBUF), when set before connecting: small, a
        /// client that stops reading stops the server's writes soon (a slow link), instead
        /// of the kernel taking megabytes first.
        public var receiveBufferBytes: Int?
        public init() {}
    }

    public let domain: String
    public let options: Options
    private let channel: any Channel
    private let handler: NIOLoopBound<ClientStreamHandler>
    private let queue: ClientEventQueue
    private let state: Mutex<NegotiatedState>

    struct NegotiatedState {
        var features: XMLElement?
        var tlsActive = false
        var boundJID: JID?
        var streamID: String?
    }

    /// The stream features the server offered last.
    public var features: XMLElement? { state.withLock { $0.features } }
    public var isTLSActive: Bool { state.withLock { $0.tlsActive } }
    public var boundJID: JID? { state.withLock { $0.boundJID } }

    private init(
        domain: String,
        options: Options,
        channel: any Channel,
        handler: NIOLoopBound<ClientStreamHandler>,
        queue: ClientEventQueue
    ) {
        self.domain = domain
        self.options = options
        self.channel = channel
        self.handler = handler
        self.queue = queue
        self.state = Mutex(NegotiatedState(tlsActive: options.tls == .direct))
    }

    /// Connects to `host:port`, opens a stream to `domain`, and negotiates TLS as
    /// `options.tls` says. On return the features for authentication are known.
    public static func connect(
        host: String,
        port: Int,
        domain: String,
        options: Options = Options(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> XMPPClient {
        let queue = ClientEventQueue()
        let tlsContext = try makeTLSContext(options.trust)
        var bootstrap = ClientBootstrap(group: group)
        if let source = options.sourceAddress { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
        if let size = options.sendBufferBytes { bootstrap = bootstrap.channelOption(.socketOption(.so_sndbuf), value: SocketOptionValue(size)) }
        if let size = options.receiveBufferBytes { bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(size)) }
        let channel = try await bootstrap
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(options.timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if options.tls == .direct {
                        try channel.pipeline.syncOperations.addHandler(
                            try NIOSSLClientHandler(context: tlsContext, serverHostname: sniName(host: host, domain: domain))
                        )
                    }
                    try channel.pipeline.syncOperations.addHandler(ClientStreamHandler(queue: queue))
                }
            }
            .connect(host: host, port: port).get()
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ClientStreamHandler.self), eventLoop: channel.eventLoop)
        }.get()
        let client = XMPPClient(domain: domain, options: options, channel: channel, handler: handler, queue: queue)
        do {
            try await client.openStream()
            if case .starttls(let required) = options.tls {
                if client.features?.child("starttls", namespace: Namespace.tls) != nil {
                    try await client.startTLS(context: tlsContext, host: host)
                } else if required {
                    throw XMPPClientError.tlsNotOffered
                }
            }
        } catch {
            try? await channel.close()
            throw error
        }
        return client
    }

    private static func sniName(host: String, domain: String) -> String? {
        // SNI takes a host name, not an address.
        domain.contains(":") ? nil : domain
    }

    private static func makeTLSContext(_ trust: Trust) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        switch trust {
        case .system: break
        case .caFile(let path):
            configuration.trustRoots = .file(path)
        case .noVerification:
            configuration.certificateVerification = .none
        }
        return try NIOSSLContext(configuration: configuration)
    }

    // MARK: - Negotiation

    /// Sends a stream header and reads the server's header and features.
    func openStream() async throws {
        sendRaw(
            "<?xml version='1.0'?><stream:stream xmlns='\(Namespace.client)' xmlns:stream='\(Namespace.stream)' "
                + "to='\(XMLEscaping.escapeAttribute(domain))' version='1.0' xml:lang='en'>"
        )
        guard case .streamOpened(let header) = try await nextNegotiationEvent() else {
            throw XMPPClientError.unexpected("no stream header")
        }
        let features = try await nextElement()
        guard features.name == "features", features.namespace == Namespace.stream else {
            throw XMPPClientError.unexpected("expected stream features, got \(features)")
        }
        state.withLock {
            $0.features = features
            $0.streamID = header[attribute: "id"]
        }
    }

    private func startTLS(context: NIOSSLContext, host: String) async throws {
        send(XMLElement("starttls", namespace: Namespace.tls))
        let answer = try await nextElement()
        guard answer.name == "proceed", answer.namespace == Namespace.tls else {
            throw XMPPClientError.unexpected("STARTTLS refused: \(answer)")
        }
        let handler = self.handler
        let domain = self.domain
        try await channel.eventLoop.submit { [channel] in
            let tls = try NIOSSLClientHandler(context: context, serverHostname: Self.sniName(host: host, domain: domain))
            try channel.pipeline.syncOperations.addHandler(tls, position: .first)
            handler.value.resetParser()
        }.get()
        state.withLock { $0.tlsActive = true }
        try await openStream()
    }

    /// The mechanisms the server offers.
    public var mechanisms: [String] {
        features?.child("mechanisms", namespace: Namespace.sasl)?.children("mechanism").map { $0.text } ?? []
    }

    /// Authenticates with the first of `preferred` the server offers.
    public func authenticate(
        username: String,
        password: String,
        preferred: [String] = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
    ) async throws {
        let offered = mechanisms
        guard let name = preferred.first(where: { offered.contains($0) }), let mechanism = SASLMechanism(rawValue: name)
        else {
            throw XMPPClientError.noMechanism(offered: offered)
        }
        if mechanism == .plain {
            let message = [0] + Array(username.utf8) + [0] + Array(password.utf8)
            send(XMLElement("auth", namespace: Namespace.sasl, ["mechanism": name], text: Base64.encode(message)))
            let answer = try await nextElement()
            try checkSuccess(answer)
        } else {
            var binding: [UInt8]?
            if mechanism.usesChannelBinding {
                binding = try await serverEndPoint()
            }
            var scram = SCRAMClient(
                hash: mechanism.scramHash!,
                username: username,
                password: password,
                channelBindingData: binding
            )
            send(XMLElement("auth", namespace: Namespace.sasl, ["mechanism": name], text: Base64.encode(scram.clientFirst)))
            let challenge = try await nextElement()
            guard challenge.name == "challenge", challenge.namespace == Namespace.sasl,
                let serverFirst = Base64.decode(challenge.text)
            else {
                try checkSuccess(challenge)
                throw XMPPClientError.unexpected("expected a challenge, got \(challenge)")
            }
            let final = try scram.clientFinal(serverFirst: serverFirst)
            send(XMLElement("response", namespace: Namespace.sasl, text: Base64.encode(final)))
            let answer = try await nextElement()
            try checkSuccess(answer)
            guard let data = Base64.decode(answer.text), scram.verify(serverFinal: data) else {
                throw XMPPClientError.serverSignatureMismatch
            }
        }
        try await channel.eventLoop.submit { [handler] in handler.value.resetParser() }.get()
        try await openStream()
    }

    private func checkSuccess(_ answer: XMLElement) throws {
        guard answer.namespace == Namespace.sasl, answer.name == "success" else {
            if answer.namespace == Namespace.sasl, answer.name == "failure" {
                let condition = answer.elements.first { $0.name != "text" }?.name ?? "?"
                throw XMPPClientError.authenticationFailed(condition: condition)
            }
            throw XMPPClientError.unexpected("expected SASL success, got \(answer)")
        }
    }

    private func serverEndPoint() async throws -> [UInt8] {
        guard let certificate = try await channel.nioSSL_peerCertificate().get() else {
            throw XMPPClientError.unexpected("no server certificate for channel binding")
        }
        return C2STLS.endPointHash(of: try certificate.toDERBytes())
    }

    /// Binds `resource` (or lets the server choose) and returns the full JID.
    @discardableResult
    public func bind(resource: String? = nil) async throws -> JID {
        var bind = XMLElement("bind", namespace: Namespace.bind)
        if let resource { bind.append(XMLElement("resource", namespace: Namespace.bind, text: resource)) }
        send(XMLElement("iq", namespace: Namespace.client, ["type": "set", "id": "bind1"], children: [bind]))
        let answer = try await nextElement()
        guard answer.name == "iq", answer.type == "result",
            let text = answer.child("bind", namespace: Namespace.bind)?.child("jid", namespace: Namespace.bind)?.text,
            let jid = try? JID(text)
        else {
            throw XMPPClientError.bindFailed(answer)
        }
        state.withLock { $0.boundJID = jid }
        return jid
    }

    // MARK: - Traffic

    /// Sends an element (serialised in the `jabber:client` context).
    public func send(_ element: XMLElement) {
        sendRaw(element.serialized(parentNamespace: Namespace.client))
    }

    /// Sends text as it is: for tests that send broken XML on purpose.
    /// Stops or resumes reading from the server, as a stalled or slow client would (for
    /// tests and load generation); what the server sends meanwhile waits in the kernel.
    /// Whether the connection takes more output now (what was sent is below the
    /// channel's high-water mark; above it, the server is not reading as fast).
    public var isWritable: Bool { channel.isWritable }

    public func setReading(_ reading: Bool) async throws {
        try await channel.setOption(ChannelOptions.autoRead, value: reading)
    }

    public func sendRaw(_ text: String) {
        channel.writeAndFlush(channel.allocator.buffer(string: text), promise: nil)
    }

    /// The next event, waiting at most `timeout` (default `options.timeout`); `nil` on timeout.
    public func next(timeout: TimeAmount? = nil) async -> XMPPClientEvent? {
        await queue.next(timeout: timeout ?? options.timeout, on: channel.eventLoop)
    }

    /// Events already received, without waiting.
    public func drain() -> [XMPPClientEvent] { queue.drain() }

    /// The next element; throws on timeout, stream error, or a closed stream.
    public func nextElement(timeout: TimeAmount? = nil) async throws -> XMLElement {
        switch try await nextNegotiationEvent(timeout: timeout) {
        case .element(let element): return element
        case let other: throw XMPPClientError.unexpected("expected an element, got \(other)")
        }
    }

    private func nextNegotiationEvent(timeout: TimeAmount? = nil) async throws -> XMPPClientEvent {
        guard let event = await next(timeout: timeout) else { throw XMPPClientError.timeout }
        switch event {
        case .element(let element) where element.namespace == Namespace.stream && element.name == "error":
            throw XMPPClientError.streamError(StreamError(element: element) ?? StreamError(.undefinedCondition))
        case .streamClosed, .disconnected:
            // Say why, when the connection failed rather than closed (a certificate the
            // trust settings refuse shows up here).
            if let failure = queue.failure.withLock({ $0 }) { throw XMPPClientError.unexpected("connection failed: \(failure)") }
            throw XMPPClientError.closed
        case .parseError(let message):
            throw XMPPClientError.unexpected("unparsable input: \(message)")
        default:
            return event
        }
    }

    /// Closes the stream and waits (at most `timeout`) for the server to close its own.
    public func close(timeout: TimeAmount? = nil) async {
        sendRaw("</stream:stream>")
        let deadline = NIODeadline.now() + (timeout ?? options.timeout)
        while NIODeadline.now() < deadline {
            guard let event = await next(timeout: deadline - .now()) else { break }
            if event == .streamClosed || event == .disconnected { break }
        }
        try? await channel.close()
    }

    /// Drops the connection without closing the stream.
    public func disconnect() async {
        try? await channel.close()
    }
}

public enum XMPPClientError: Error, Sendable, CustomStringConvertible {
    case tlsNotOffered
    case noMechanism(offered: [String])
    case authenticationFailed(condition: String)
    case serverSignatureMismatch
    case bindFailed(XMLElement)
    case streamError(StreamError)
    case closed
    case timeout
    case unexpected(String)

    public var description: String {
        switch self {
        case .tlsNotOffered: "the server does not offer STARTTLS"
        case .noMechanism(let offered): "no usable SASL mechanism (offered: \(offered.joined(separator: ", ")))"
        case .authenticationFailed(let condition): "authentication failed: \(condition)"
        case .serverSignatureMismatch: "the server's SCRAM signature is wrong"
        case .bindFailed(let answer): "resource binding failed: \(answer)"
        case .streamError(let error): "stream error: \(error)"
        case .closed: "the server closed the stream"
        case .timeout: "timed out"
        case .unexpected(let message): message
        }
    }
}

/// Parses the server's stream into events for the queue.
final class ClientStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let parser = XMLStreamParser(options: {
        var options = XMLStreamParser.Options()
        options.maxStanzaBytes = 64 * 1024 * 1024
        return options
    }())
    private let queue: ClientEventQueue
    private var failed = false

    init(queue: ClientEventQueue) {
        self.queue = queue
    }

    func resetParser() {
        parser.reset()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let buffer = unwrapInboundIn(data)
        do {
            let events = try buffer.withUnsafeReadableBytes { try parser.parse($0) }
            for event in events {
                switch event {
                case .streamOpen(let header, _): queue.push(.streamOpened(header))
                case .element(let element): queue.push(.element(element))
                case .streamClose: queue.push(.streamClosed)
                }
            }
        } catch {
            failed = true
            queue.push(.parseError("\(error)"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        queue.push(.disconnected)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        queue.failure.withLock { $0 = $0 ?? "\(error)" }
        context.close(promise: nil)
    }
}
