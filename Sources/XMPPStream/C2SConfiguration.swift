public import NIOCore
public import NIOSSL
public import XMPPCore
public import XMPPXMLParser
import Crypto

/// TLS for client connections: the context, built once, and what SCRAM-PLUS binds to.
public struct C2STLS: Sendable {
    public let context: NIOSSLContext
    /// `tls-server-end-point` channel binding data (RFC 5929 §4.1): the hash of the
    /// server certificate, SHA-256 for the usual SHA-256 or weaker signatures.
    public let serverEndPoint: [UInt8]

    public init(certificateChain: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey) throws {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificateChain.map { .certificate($0) },
            privateKey: .privateKey(privateKey)
        )
        configuration.minimumTLSVersion = .tlsv12
        context = try NIOSSLContext(configuration: configuration)
        let der = try certificateChain.first.map { try $0.toDERBytes() } ?? []
        serverEndPoint = Self.endPointHash(of: der)
    }

    /// RFC 5929 §4.1 hashes with the certificate's signature hash, and with SHA-256
    /// where that is MD5 or SHA-1. Conclave's certificates are signed with SHA-256.
    static func endPointHash(of der: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: der))
    }

    /// Loads a PEM certificate chain and key from files.
    public init(certificatePath: String, keyPath: String) throws {
        try self.init(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificatePath),
            privateKey: try NIOSSLPrivateKey(file: keyPath, format: .pem)
        )
    }
}

/// How client connections are served.
public struct C2SConfiguration: Sendable {
    /// The domain users log in to (`localhost`).
    public var domain: JID
    /// TLS; `nil` means none at all (then plaintext must be allowed). The certificate
    /// can be replaced while the server runs (`tlsSource.replace`).
    public var tls: C2STLS? { tlsSource.tls }
    public let tlsSource: C2STLSSource
    public var options: Options
    /// Counters of every connection of the server.
    public let metrics = C2SMetrics()

    public struct Options: Sendable {
        /// Accept authentication without TLS from loopback addresses (local tests).
        public var allowPlaintextOnLoopback = false
        /// Parser limits (stanza size, nesting depth).
        public var parser = XMLStreamParser.Options()
        /// A connection that sends nothing for this long is closed (`connection-timeout`).
        public var idleTimeout: TimeAmount = .seconds(600)
        /// Failed authentications allowed on one connection before it is closed.
        public var maxAuthFailuresPerConnection = 3
        /// Failures of one account (on this node, within `authFailureWindow`) after which
        /// each further failure is answered only after a growing delay.
        public var authFailuresBeforeDelay = 3
        public var authFailureWindow: Duration = .seconds(60)
        public var authFailureDelayStep: TimeAmount = .milliseconds(500)
        public var authFailureMaxDelay: TimeAmount = .seconds(5)
        /// Offer SCRAM-*-PLUS with `tls-server-end-point` channel binding. Off by default:
        /// clients that see -PLUS offered pick it even when they only know other binding
        /// types (slixmpp knows only tls-unique, which TLS 1.3 does not have), and then
        /// cannot log in at all.
        public var offerChannelBinding = false
        /// A connection must have authenticated and bound a resource this long after it
        /// opened, or it gets `<connection-timeout/>`.
        public var negotiationTimeout: TimeAmount = .seconds(30)
        /// A bound session that sent nothing for between this long and twice this long
        /// releases its XML parser's state and its spare output buffer (about 15 KiB);
        /// its next input builds them again.
        public var idleRelease: TimeAmount = .seconds(10)
        /// Connections not yet authenticated, in all and from one address; beyond them a
        /// new connection gets `<policy-violation/>` at once.
        public var maxUnauthenticatedConnections = 2048
        public var maxUnauthenticatedConnectionsPerAddress = 256
        /// Connections open at once (the node's session budget); the next gets
        /// `<resource-constraint/>`. 0: no budget.
        public var maxConnections = 0
        /// Asked for each new connection: a reason to refuse it with
        /// `<resource-constraint/>` (the node past its memory budget), or `nil`.
        public var admissionRefusal: (@Sendable () -> String?)?
        /// Bytes a connection may send before it has authenticated (the negotiation
        /// needs a few KiB); more gets `<policy-violation/>`.
        public var maxPreAuthBytes = 64 * 1024
        /// Output the client has not read yet (bytes queued in the node for its socket).
        /// While above the channel's high-water mark the node stops reading the client;
        /// above this bound the stream ends with `<policy-violation/>`.
        public var maxUnsentBytes = 4 * 1024 * 1024
        /// Traffic shaping of each bound session's input (`SessionShaper`).
        public var shaping = SessionShaper.Limits()
        /// While the event loop runs late (given more than it can do), a session that read
        /// more than this many bytes in 100 ms, or a quarter of it at once, pauses reading
        /// until the loop is on time again (250 ms at most), so that sessions sending
        /// little are served first. 0: never.
        public var yieldAfterBytes = 16 * 1024
        /// Authentication attempts in flight at once from one address; beyond them an
        /// attempt gets `<temporary-auth-failure/>`.
        public var maxParallelAuthPerAddress = 64
        /// Failures (and attempts in flight) from one address within `authFailureWindow`
        /// after which every attempt from it waits, as for an account.
        public var authFailuresBeforeDelayPerAddress = 10
        /// Longest password accepted (bytes, PLAIN; SCRAM never sees passwords).
        public var maxPasswordBytes = 1024
        /// Key for the salts answered for accounts that do not exist: they are derived
        /// from it and the name, so that they stay the same from one connection (and
        /// node) to the next, like a real account's. Empty: a random key per process.
        public var unknownAccountSaltKey: [UInt8] = []
        /// Iterations answered for accounts that do not exist (the node's default).
        public var unknownAccountIterations = 4096
        /// The software name and version answered to XEP-0092 queries.
        public var softwareVersion = "0.1.0"
        public init() {}
    }

    public init(domain: JID, tls: C2STLS?, options: Options = Options()) {
        self.domain = domain
        self.tlsSource = C2STLSSource(tls)
        self.options = options
    }
}
