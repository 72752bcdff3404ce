public import Logging
public import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// The client listeners of a node: one with STARTTLS (5222) and, when TLS is
/// configured, one with Direct TLS (XEP-0368, 5223).
public final class C2SServer: Sendable {
    public struct Listener: Sendable {
        public var host: String
        /// 0 picks a free port; `boundPorts` reports it.
        public var port: Int
        public var directTLS: Bool

        public init(host: String, port: Int, directTLS: Bool) {
            self.host = host
            self.port = port
            self.directTLS = directTLS
        }
    }

    private let configuration: C2SConfiguration
    private let delegate: any C2SDelegate
    private let group: any EventLoopGroup
    private let logger: Logger
    private let throttle = AuthThrottle()
    private let admission = ConnectionAdmission()
    private let channels = Mutex<[any Channel]>([])
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])

    public init(
        configuration: C2SConfiguration,
        delegate: any C2SDelegate,
        group: any EventLoopGroup,
        logger: Logger
    ) {
        self.configuration = configuration
        self.delegate = delegate
        self.group = group
        self.logger = logger
    }

    /// Binds `listener` and starts accepting; returns the bound port.
    @discardableResult
    public func bind(_ listener: Listener) async throws -> Int {
        let configuration = self.configuration
        let delegate = self.delegate
        let throttle = self.throttle
        let admission = self.admission
        let logger = self.logger
        if listener.directTLS && configuration.tls == nil {
            throw C2SServerError.directTLSWithoutCertificate
        }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // At most 16 KiB and one read per connection per turn of the loop: a sender
            // with a backlog cannot make the loop's turn long for everyone else.
            .childChannelOption(.maxMessagesPerRead, value: 1)
            // The kernel's share of a client's unread input is bounded too (autotuned, it
            // grows to megabytes: a hidden queue the node would work through after an overload).
            .childChannelOption(.socketOption(.so_rcvbuf), value: 128 * 1024)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 16 * 1024))
            .childChannelInitializer { [weak self] channel in
                channel.eventLoop.makeCompletedFuture {
                    var connectionLogger = logger
                    let remote = channel.remoteAddress
                    connectionLogger[metadataKey: "remote"] = "\(remote?.description ?? "?")"
                    let sync = channel.pipeline.syncOperations
                    let tls = configuration.tls
                    if listener.directTLS, let tls {
                        try sync.addHandler(NIOSSLServerHandler(context: tls.context))
                    }
                    try sync.addHandler(
                        IdleStateHandler(readTimeout: configuration.options.idleTimeout)
                    )
                    try sync.addHandler(
                        C2SConnection(
                            configuration: configuration,
                            delegate: delegate,
                            throttle: throttle,
                            admission: admission,
                            address: remote?.ipAddress ?? "unknown",
                            tls: tls,
                            directTLS: listener.directTLS,
                            remoteIsLoopback: remote?.isLoopback ?? false,
                            logger: connectionLogger
                        )
                    )
                    self?.track(channel)
                }
            }
        let channel = try await bootstrap.bind(host: listener.host, port: listener.port).get()
        channels.withLock { $0.append(channel) }
        let port = channel.localAddress?.port ?? listener.port
        logger.info(
            "listening for clients",
            metadata: ["address": "\(listener.host):\(port)", "tls": "\(listener.directTLS ? "direct" : "starttls")"]
        )
        return port
    }

    private func track(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        connections.withLock { $0[key] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.connections.withLock { $0.removeValue(forKey: key) }
        }
    }

    /// Connections open now that have not authenticated yet.
    public var unauthenticatedCount: Int { admission.unauthenticated }

    /// The number of open client connections.
    public var connectionCount: Int { connections.withLock { $0.count } }

    /// Stops accepting, ends every stream with `<system-shutdown/>` and waits (at most
    /// `timeout`) for the connections to close.
    public func shutdown(timeout: TimeAmount = .seconds(5)) async {
        let listeners = channels.withLock { channels in
            defer { channels.removeAll() }
            return channels
        }
        for listener in listeners { try? await listener.close() }
        let open = connections.withLock { Array($0.values) }
        for channel in open {
            channel.pipeline.fireUserInboundEventTriggered(SystemShutdownEvent())
        }
        let deadline = NIODeadline.now() + timeout
        for channel in open {
            let remaining = deadline - .now()
            guard remaining > .zero else { break }
            let timeoutTask = channel.eventLoop.scheduleTask(in: remaining) { channel.close(promise: nil) }
            try? await channel.closeFuture.get()
            timeoutTask.cancel()
        }
    }
}

public enum C2SServerError: Error, Sendable {
    case directTLSWithoutCertificate
}

extension SocketAddress {
    var isLoopback: Bool {
        switch self {
        case .v4:
            return ipAddress?.hasPrefix("127.") ?? false
        case .v6:
            guard let ip = ipAddress else { return false }
            return ip == "::1" || ip.hasPrefix("::ffff:127.")
        case .unixDomainSocket:
            return true
        }
    }
}
