public import Logging
public import MUC

/// Everything a node is configured with. Read from a YAML file, then environment
/// variables, then command-line flags (each overriding the one before); every key is
/// documented in `docs/configuration.md`.
public struct ServerConfiguration: Sendable, Hashable {
    /// The domain users log in to.
    public var domain: String
    /// The MUC service's domain, reserved on this node.
    public var mucDomain: String
    /// This node's name in logs (and later in the cluster).
    public var nodeName: String
    /// PostgreSQL, as a `postgres://user:password@host:port/database` URL. `nil`: the
    /// embedded database of the working directory (`.conclave/database-url`).
    public var databaseURL: String?
    /// Where the numbered SQL migrations are; `nil`: `./migrations`, or next to the binary.
    public var migrationsDirectory: String?
    public var c2s: C2S
    public var tls: TLS
    public var limits: Limits
    public var auth: Auth
    public var cluster: Cluster
    public var http: HTTP
    public var logLevel: Logger.Level
    /// `text` (swift-log's key=value lines) or `json` (one object per line).
    public var logFormat: LogFormat = .text

    public enum LogFormat: String, Sendable, Hashable {
        case text, json
    }
    /// Service administrators: owner rights in every room of the MUC domain.
    public var mucAdmins: [String] = []
    /// Only `mucAdmins` may create rooms.
    public var mucRestrictRoomCreation = false
    /// What rooms accept: name, nick, JID, reason, subject and configuration sizes, and
    /// affiliations per room (`muc_limits.*`; defaults in `RoomLimits`).
    public var mucLimits = RoomLimits()

    public struct C2S: Sendable, Hashable {
        public var host = "0.0.0.0"
        /// STARTTLS port (RFC 6120); 0 picks a free port.
        public var port = 5222
        /// Direct TLS port (XEP-0368); `nil` disables it.
        public var directTLSPort: Int? = 5223
        /// Allow authentication without TLS from loopback addresses.
        public var allowPlaintextOnLoopback = false
        public var idleTimeoutSeconds = 600
        /// Seconds a connection has to authenticate and bind a resource.
        public var negotiationTimeoutSeconds = 30
        public init() {}
    }

    public struct TLS: Sendable, Hashable {
        /// PEM certificate chain; `nil` means no TLS (then only loopback plaintext).
        public var certificate: String?
        public var key: String?
        public init() {}
    }

    public struct Limits: Sendable, Hashable {
        public var maxStanzaBytes = 256 * 1024
        public var maxDepth = 64
        public var maxElementsPerStanza = 10_000
        public var maxAttributesPerElement = 64
        public var maxHeaderBytes = 8 * 1024
        public var maxPreAuthBytes = 64 * 1024
        public var maxUnsentBytes = 4 * 1024 * 1024
        public var maxUnauthenticatedConnections = 2048
        public var maxUnauthenticatedConnectionsPerAddress = 256
        /// Client connections open at once on the node (its session budget); past it a
        /// new stream is refused with `<resource-constraint/>` and `/readyz` says the node
        /// is full. 0: no budget.
        public var maxConnections = 0
        /// Offline messages (XEP-0160) kept per account, and their bytes; 0 keeps none.
        public var offlineMessages = 100
        public var offlineBytes = 1024 * 1024
        /// Traffic shaping of each session's input (docs/configuration.md): bytes and
        /// stanzas a second (0: not shaped), their bursts, and the stanzas a session may
        /// have held back before its stream ends with `<policy-violation/>`.
        public var sessionBytesPerSecond = 1 << 20
        public var sessionBurstBytes = 2 << 20
        public var sessionStanzasPerSecond = 1000
        public var sessionBurstStanzas = 2000
        public var sessionMaxHeldStanzas = 5000
        /// Bytes of room changes waiting for PostgreSQL at which the node stops reading
        /// the rooms' senders (until half of it is left), and reports itself overloaded;
        /// at four times it, rooms refuse new messages and joins (`resource-constraint`).
        public var roomWriterBacklogBytes = 8 << 20
        /// The node's memory budget (resident set, bytes): past it, new streams get
        /// `<resource-constraint/>` and `/readyz` says so. 0: no budget.
        public var maxMemoryBytes = 0
        /// While an event loop runs late, a session that read more than this in 100 ms (or
        /// a quarter of it at once) yields until the loop is on time. 0: never.
        public var yieldAfterBytes = 16 * 1024
        public init() {}
    }

    /// The operations endpoints: `/healthz`, `/readyz`, `/metrics`.
    public struct HTTP: Sendable, Hashable {
        public var host = "127.0.0.1"
        /// `nil`: the c2s port + 3 (0, any free port, when the c2s port is 0); -1 disables.
        public var port: Int?
        public init() {}

        public func resolvedPort(c2sPort: Int) -> Int? {
            if let port { return port < 0 ? nil : port }
            return c2sPort == 0 ? 0 : c2sPort + 3
        }
    }

    /// The node's place in the cluster (docs/cluster.md).
    public struct Cluster: Sendable, Hashable {
        /// Where the node-to-node link listens.
        public var linkHost = "127.0.0.1"
        /// `nil`: the c2s port + 2 (0, any free port, when the c2s port is 0).
        public var linkPort: Int?
        /// The address other nodes connect to; `nil`: `linkHost`.
        public var advertiseHost: String?
        /// The shared secret that authenticates links; `secretFile` is read when this
        /// is `nil`; with neither, `.conclave/cluster-secret` if present.
        public var secret: String?
        public var secretFile: String?
        /// Mutual TLS on links: the CA that signed every node's link certificate. Set,
        /// each node presents `tlsCertificate`/`tlsKey` (default: `tls.certificate`/`tls.key`)
        /// and accepts only peers whose certificate this CA signed.
        public var tlsCA: String?
        public var tlsCertificate: String?
        public var tlsKey: String?
        /// A node whose heartbeat is older than this is dead.
        public var leaseSeconds = 3.0
        public var heartbeatSeconds = 1.0
        /// How long a stanza to a room may wait for the room (its activation, a
        /// hand-over, an unconfirmed lease) before the sender gets an error.
        public var roomInputTimeoutSeconds = 5.0
        /// With link TLS, a peer's certificate must name the node it claims to be (CN or a
        /// DNS name equal to the node name, or with it as first label).
        public var tlsVerifyNames = true
        /// Time a new link connection has to finish TLS and the handshake.
        public var linkAuthTimeoutSeconds = 5.0
        /// Bytes a link peer may send before it has authenticated.
        public var linkPreAuthBytes = 4096
        /// Unauthenticated link connections, in total and from one address.
        public var linkMaxUnauthenticated = 64
        public var linkMaxUnauthenticatedPerAddress = 8
        /// Encoded bytes queued for one peer before new frames are refused.
        public var linkQueueBytes = 64 * 1024 * 1024
        /// Largest frame on a link, encoded (its 4-byte length included); 1 KiB to 4 GiB.
        public var linkMaxFrameBytes = 16 * 1024 * 1024
        public init() {}

        /// The link port for a c2s port.
        public func resolvedLinkPort(c2sPort: Int) -> Int {
            linkPort ?? (c2sPort == 0 ? 0 : c2sPort + 2)
        }
    }

    public struct Auth: Sendable, Hashable {
        public var maxFailuresPerConnection = 3
        public var failuresBeforeDelay = 3
        public var scramIterations = 4096
        /// Offer SCRAM-*-PLUS (tls-server-end-point); see docs/configuration.md.
        public var channelBinding = false
        public var maxParallelPerAddress = 64
        public var failuresBeforeDelayPerAddress = 10
        public var maxPasswordBytes = 1024
        public init() {}
    }

    public init(
        domain: String = "localhost",
        mucDomain: String? = nil,
        nodeName: String = "node1"
    ) {
        self.domain = domain
        self.mucDomain = mucDomain ?? "conference." + domain
        self.nodeName = nodeName
        self.c2s = C2S()
        self.tls = TLS()
        self.limits = Limits()
        self.auth = Auth()
        self.cluster = Cluster()
        self.http = HTTP()
        self.logLevel = .info
    }
}
