import ArgumentParser
import Logging
import ServerRuntime
import ServiceLifecycle
import UnixSignals

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a node: applies migrations, then serves clients until SIGTERM or SIGINT."
    )

    @OptionGroup var common: CommonOptions

    @Option(help: "The domain users log in to.") var domain: String?
    @Option(help: "The MUC domain (default conference.<domain>).") var mucDomain: String?
    @Option(help: "This node's name.") var nodeName: String?
    @Option(help: "Address to listen on.") var host: String?
    @Option(help: "STARTTLS port (0: any free port).") var port: Int?
    @Option(help: "Direct TLS port (-1 disables it).") var directTLSPort: Int?
    @Option(help: "PEM certificate chain.") var tlsCertificate: String?
    @Option(help: "PEM private key.") var tlsKey: String?
    @Flag(help: "Allow authentication without TLS from loopback addresses.") var allowPlaintextOnLoopback = false
    @Option(help: "Port of /healthz, /readyz and /metrics (default: the c2s port + 3; -1 disables).") var httpPort: Int?
    @Option(help: "Address of /healthz, /readyz and /metrics.") var httpHost: String?
    @Option(help: "Address the node-to-node link listens on.") var linkHost: String?
    @Option(help: "Node-to-node link port (default: the c2s port + 2).") var linkPort: Int?
    @Option(help: "Address other nodes use to reach this node's link (default: --link-host).") var advertiseHost: String?
    @Option(help: "File holding the shared cluster secret.") var clusterSecretFile: String?
    @Option(help: "PEM CA that signed every node's certificate: node links use mutual TLS.") var clusterTlsCa: String?
    @Option(help: "Seconds without a heartbeat before a node is declared dead.") var leaseSeconds: Double?
    @Option(help: "Seconds between heartbeats.") var heartbeatSeconds: Double?
    @Option(help: "Seconds a stanza may wait for its room (activation, a move) before its sender gets an error.")
    var roomInputTimeoutSeconds: Double?

    func run() async throws {
        var configuration = try common.load()
        if let domain {
            if configuration.mucDomain == "conference." + configuration.domain { configuration.mucDomain = "conference." + domain }
            configuration.domain = domain
        }
        if let mucDomain { configuration.mucDomain = mucDomain }
        if let nodeName { configuration.nodeName = nodeName }
        if let host { configuration.c2s.host = host }
        if let port { configuration.c2s.port = port }
        if let directTLSPort { configuration.c2s.directTLSPort = directTLSPort < 0 ? nil : directTLSPort }
        if let tlsCertificate { configuration.tls.certificate = tlsCertificate }
        if let tlsKey { configuration.tls.key = tlsKey }
        if allowPlaintextOnLoopback { configuration.c2s.allowPlaintextOnLoopback = true }
        if let httpPort { configuration.http.port = httpPort }
        if let httpHost { configuration.http.host = httpHost }
        if let linkHost { configuration.cluster.linkHost = linkHost }
        if let linkPort { configuration.cluster.linkPort = linkPort }
        if let advertiseHost { configuration.cluster.advertiseHost = advertiseHost }
        if let clusterSecretFile { configuration.cluster.secretFile = clusterSecretFile }
        if let clusterTlsCa { configuration.cluster.tlsCA = clusterTlsCa }
        if let leaseSeconds { configuration.cluster.leaseSeconds = leaseSeconds }
        if let heartbeatSeconds { configuration.cluster.heartbeatSeconds = heartbeatSeconds }
        if let roomInputTimeoutSeconds {
            guard roomInputTimeoutSeconds > 0, roomInputTimeoutSeconds <= 3600 else {
                throw ValidationError("--room-input-timeout-seconds must be more than 0 and at most 3600")
            }
            configuration.cluster.roomInputTimeoutSeconds = roomInputTimeoutSeconds
        }
        let logger = common.makeLogger(configuration)
        let node = try ConclaveNode(configuration: configuration, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: node.services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}
