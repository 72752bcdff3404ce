public import Logging
import NIOCore
import NIOPosix
import PostgresNIO
public import ServiceLifecycle
import Storage
import StoragePostgres
import Synchronization
import XMPPCore
import UnixSignals
import XMPPStream
import MUC
import MUCService
import Cluster
import AdminHTTP
import XMPPXMLParser

/// One Conclave node: PostgreSQL, migrations, the client listeners and the router,
/// run as one `Service` until graceful shutdown.
public final class ConclaveNode: Service {
    /// The ports the listeners are bound to (useful when configured with port 0).
    public struct BoundPorts: Sendable, Hashable {
        public var starttls: Int
        public var directTLS: Int?
        /// The node-to-node link.
        public var link: Int = 0
        /// `/healthz`, `/readyz`, `/metrics`.
        public var http: Int?
    }

    public let configuration: ServerConfiguration
    /// The node's PostgreSQL client: a service of its own, listed before the node in
    /// `services`, so that it shuts down after the node has written everything.
    public let database: PostgresClient
    private let logger: Logger
    private let cluster = Mutex<ClusterCoordinator?>(nil)
    private let readyStream: AsyncStream<BoundPorts>
    private let readyContinuation: AsyncStream<BoundPorts>.Continuation

    /// The database's I/O runs on a thread of its own: when clients give the event loops
    /// more than they can do, the store's answers (room writes, logins) do not wait
    /// behind them.
    static let databaseLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    public init(configuration: ServerConfiguration, logger: Logger) throws {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "node"] = "\(configuration.nodeName)"
        self.logger = logger
        self.database = PostgresClient(
            configuration: try DatabaseURL.configuration(try configuration.resolvedDatabaseURL()),
            eventLoopGroup: Self.databaseLoops,
            backgroundLogger: logger
        )
        (readyStream, readyContinuation) = AsyncStream.makeStream(of: BoundPorts.self)
    }

    /// The services to run in one `ServiceGroup`, in order: the database first, so it
    /// is shut down last.
    public var services: [ServiceGroupConfiguration.ServiceConfiguration] {
        [.init(service: database), .init(service: self)]
    }

    /// Waits until the node listens, and returns its ports; `nil` if it stopped first.
    public func ready() async -> BoundPorts? {
        for await ports in readyStream { return ports }
        return nil
    }

    public func run() async throws {
        defer { readyContinuation.finish() }
        let configuration = self.configuration
        let domain = try JID(configuration.domain)
        let mucDomain = try JID(configuration.mucDomain)
        guard domain.isBare, domain.localpart == nil, mucDomain.localpart == nil, mucDomain.isBare else {
            throw ConfigurationError("domain and muc_domain must be plain domains")
        }
        let tls = try loadTLS()
        var admins = Set<JID>()
        for text in configuration.mucAdmins {
            do {
                admins.insert(try JID(text).bare)
            } catch {
                throw ConfigurationError("muc_admins: '\(text)' is not a JID")
            }
        }
        let client = database
        let secret = try configuration.resolvedClusterSecret() ?? {
            logger.notice("no cluster secret configured: this node cannot link with others (docs/cluster.md)")
            return (0..<32).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined()
        }()
        let linkTLS = try loadLinkTLS()
        let listenConfiguration = try DatabaseURL.connectionConfiguration(try configuration.resolvedDatabaseURL())
        try await withThrowingDiscardingTaskGroup { group in
            let migrator = try Migrator(directory: try configuration.resolvedMigrationsDirectory())
            try await migrator.migrate(client: client, logger: logger)
            let clusterDatabase = ClusterDatabase(client: client, logger: logger)
            let coordinator = ClusterCoordinator(
                nodeName: configuration.nodeName, secret: secret, linkTLS: linkTLS,
                linkOptions: Self.linkOptions(configuration.cluster),
                settings: .init(
                    leaseSeconds: configuration.cluster.leaseSeconds, heartbeatSeconds: configuration.cluster.heartbeatSeconds
                ),
                database: clusterDatabase, leaseConnection: listenConfiguration,
                group: MultiThreadedEventLoopGroup.singleton, logger: logger
            )
            let router = LocalRouter(
                domain: domain,
                mucDomain: mucDomain,
                nodeName: configuration.nodeName,
                accounts: PostgresAccountStore(client: client, logger: logger),
                offline: PostgresOfflineStore(client: client, logger: logger),
                offlineLimits: (configuration.limits.offlineMessages, configuration.limits.offlineBytes),
                softwareVersion: ConclaveVersion.current,
                logger: logger
            )
            // After the migrations: the secret's table is one of them.
            let occupantIDSecret = try await PostgresDeploymentSecrets(client: client, logger: logger)
                .secret(named: OccupantIDs.secretName)
            var roomEnvironment = MUCEnvironment.make(admins: admins, occupantIDs: OccupantIDs(secret: occupantIDSecret))
            roomEnvironment.limits = configuration.mucLimits
            let muc = MUCService(
                domain: mucDomain,
                store: PostgresRoomStore(client: client, logger: logger),
                environment: roomEnvironment,
                placement: coordinator,
                output: coordinator,
                restrictRoomCreation: configuration.mucRestrictRoomCreation,
                inputTimeout: .milliseconds(Int64(configuration.cluster.roomInputTimeoutSeconds * 1000)),
                writerBacklogBytes: configuration.limits.roomWriterBacklogBytes,
                logger: logger
            )
            coordinator.attach(muc: muc, router: router)
            router.attach(muc)
            router.attach(remote: coordinator)
            self.cluster.withLock { $0 = coordinator }
            async let writerDone: Void = muc.runWriter()
            group.addTask { await muc.runInputTimeouts() }
            let memory = MemoryBudget(budget: configuration.limits.maxMemoryBytes)
            group.addTask { await memory.run() }
            // Links first (their address goes into the membership), then the bus, then
            // membership: nothing committed after the registration is missed.
            let linkPort = try await coordinator.links.listen(
                host: configuration.cluster.linkHost,
                port: configuration.cluster.resolvedLinkPort(c2sPort: configuration.c2s.port)
            )
            let linkAddress = "\(configuration.cluster.advertiseHost ?? configuration.cluster.linkHost):\(linkPort)"
            let bus = ControlBus(configuration: listenConfiguration, database: clusterDatabase, logger: logger) { event in
                await coordinator.handle(event)
            }
            let firstEvent = try await clusterDatabase.lastEventID()
            let (listening, listeningContinuation) = AsyncStream.makeStream(of: Void.self)
            group.addTask { await bus.run(after: firstEvent) { listeningContinuation.finish() } }
            for await _ in listening {}
            try await coordinator.start(linkAddress: linkAddress)
            let background = Task { await coordinator.run() }
            var options = C2SConfiguration.Options()
            options.allowPlaintextOnLoopback = configuration.c2s.allowPlaintextOnLoopback
            options.idleTimeout = .seconds(Int64(configuration.c2s.idleTimeoutSeconds))
            options.parser.maxStanzaBytes = configuration.limits.maxStanzaBytes
            options.parser.maxDepth = configuration.limits.maxDepth
            options.maxAuthFailuresPerConnection = configuration.auth.maxFailuresPerConnection
            options.authFailuresBeforeDelay = configuration.auth.failuresBeforeDelay
            options.offerChannelBinding = configuration.auth.channelBinding
            options.parser.maxElementsPerStanza = configuration.limits.maxElementsPerStanza
            options.parser.maxAttributesPerElement = configuration.limits.maxAttributesPerElement
            options.parser.maxHeaderBytes = configuration.limits.maxHeaderBytes
            options.maxPreAuthBytes = configuration.limits.maxPreAuthBytes
            options.maxUnsentBytes = configuration.limits.maxUnsentBytes
            options.maxUnauthenticatedConnections = configuration.limits.maxUnauthenticatedConnections
            options.maxUnauthenticatedConnectionsPerAddress = configuration.limits.maxUnauthenticatedConnectionsPerAddress
            options.maxConnections = configuration.limits.maxConnections
            options.shaping = configuration.limits.shaping
            options.admissionRefusal = { memory.overBudget }
            options.yieldAfterBytes = configuration.limits.yieldAfterBytes
            options.negotiationTimeout = .seconds(Int64(configuration.c2s.negotiationTimeoutSeconds))
            options.maxParallelAuthPerAddress = configuration.auth.maxParallelPerAddress
            options.authFailuresBeforeDelayPerAddress = configuration.auth.failuresBeforeDelayPerAddress
            options.maxPasswordBytes = configuration.auth.maxPasswordBytes
            options.unknownAccountIterations = configuration.auth.scramIterations
            // A deployment-wide key kept in PostgreSQL: every node, before and after any
            // restart, answers the same salt for the same unknown name, as for a real account.
            options.unknownAccountSaltKey = try await PostgresDeploymentSecrets(client: client, logger: logger)
                .secret(named: "scram-unknown-account-salt")
            options.softwareVersion = ConclaveVersion.current
            let c2sConfiguration = C2SConfiguration(domain: domain, tls: tls, options: options)
            var httpPort: Int?
            if let port = configuration.http.resolvedPort(c2sPort: configuration.c2s.port) {
                let (bound, boundContinuation) = AsyncStream.makeStream(of: Int.self)
                let app = AdminHTTP.application(
                    host: configuration.http.host, port: port, logger: logger,
                    metrics: {
                        Self.metrics(router: router, muc: muc, coordinator: coordinator, bus: bus, c2sMetrics: c2sConfiguration.metrics)
                    },
                    readiness: { [logger, budget = options.maxConnections] in
                        var readiness = await Self.readiness(client: client, coordinator: coordinator, bus: bus, logger: logger)
                        var problems: [String] = []
                        if budget > 0, c2sConfiguration.metrics.connectionsOpen >= budget {
                            // Full: serves its sessions, takes no new ones (a balancer steers away).
                            problems.append("full: \(budget) client connections (limits.max_connections)")
                        }
                        if let memory = memory.overBudget { problems.append(memory) }
                        problems += Self.overload(muc: muc, coordinator: coordinator)
                        if !problems.isEmpty {
                            readiness.ready = false
                            readiness.detail = ([readiness.detail].filter { $0 != "ready" } + problems).joined(separator: "; ")
                        }
                        return readiness
                    },
                    running: { port in
                        boundContinuation.yield(port)
                        boundContinuation.finish()
                    }
                )
                group.addTask { try await app.run() }
                for await port in bound { httpPort = port }
            }
            let server = C2SServer(
                configuration: c2sConfiguration,
                delegate: router,
                group: MultiThreadedEventLoopGroup.singleton,
                logger: logger
            )
            let starttlsPort = try await server.bind(
                .init(host: configuration.c2s.host, port: configuration.c2s.port, directTLS: false)
            )
            var directPort: Int?
            if let port = configuration.c2s.directTLSPort, tls != nil {
                directPort = try await server.bind(.init(host: configuration.c2s.host, port: port, directTLS: true))
            }
            logger.info(
                "node ready",
                metadata: [
                    "domain": "\(domain)", "muc_domain": "\(mucDomain)", "port": "\(starttlsPort)", "link": "\(linkAddress)",
                    "http": "\(httpPort.map(String.init) ?? "-")",
                ]
            )
            // SIGHUP: load the certificates again (renewed ones take effect for new
            // connections and links without a restart).
            let reloadSignals = await UnixSignalsSequence(trapping: .sighup)
            group.addTask { [self] in
                for await _ in reloadSignals { reloadCertificates(c2s: c2sConfiguration.tlsSource, links: coordinator.links) }
            }
            readyContinuation.yield(BoundPorts(starttls: starttlsPort, directTLS: directPort, link: linkPort, http: httpPort))
            readyContinuation.finish()
            // Run until asked to stop; then drain: rooms move to other nodes first, then
            // the clients are told goodbye. The last node tells occupants 332 instead.
            try? await gracefulShutdown()
            logger.info("shutting down: draining")
            let started = ContinuousClock.now
            if await coordinator.drain() {
                logger.info("rooms handed over", metadata: ["took": "\(ContinuousClock.now - started)"])
            } else {
                muc.systemShutdown()
            }
            // Output that waits for a stored change (docs/cluster.md) goes out before the
            // streams close.
            await muc.flushWrites()
            await server.shutdown()
            muc.finishWrites()
            await writerDone
            await coordinator.leave()
            background.cancel()
            coordinator.stopBackground()
            group.cancelAll()
        }
    }

    /// Why the node is overloaded now, if it is: queues above their high-water marks.
    static func overload(muc: MUCService, coordinator: ClusterCoordinator) -> [String] {
        var problems: [String] = []
        let backlog = muc.writerBacklog
        if backlog.isHigh {
            problems.append("overloaded: \(backlog.level) bytes of room changes wait for PostgreSQL (limits.room_writer_backlog_bytes)")
        }
        for peer in coordinator.links.congestedPeers {
            problems.append("overloaded: the queue to node \(peer) is above its high-water mark")
        }
        return problems
    }

    static func readiness(client: PostgresClient, coordinator: ClusterCoordinator, bus: ControlBus, logger: Logger) async
        -> AdminHTTP.Readiness
    {
        var problems: [String] = []
        do {
            _ = try await client.query("SELECT 1", logger: logger).collect()
        } catch {
            problems.append("PostgreSQL unreachable")
        }
        if !bus.isListening { problems.append("control bus not listening") }
        if !coordinator.canServe { problems.append("lease not confirmed") }
        if !coordinator.ring.nodes.contains(coordinator.nodeName) { problems.append("not in the ring (draining or stopping)") }
        return problems.isEmpty
            ? AdminHTTP.Readiness(ready: true, detail: "ready")
            : AdminHTTP.Readiness(ready: false, detail: problems.joined(separator: "; "))
    }

    static func metrics(
        router: LocalRouter, muc: MUCService, coordinator: ClusterCoordinator, bus: ControlBus, c2sMetrics: C2SMetrics
    ) -> String {
        var text = AdminHTTP.MetricsText()
        let counters = muc.counters
        text.add("conclave_sessions", "gauge", "Bound client sessions on this node.", Double(router.sessionCount))
        text.add("conclave_rooms_owned", "gauge", "Rooms this node owns and serves.", Double(muc.roomCount))
        text.add("conclave_occupants", "gauge", "Occupants of the rooms this node serves.", Double(muc.occupantCount))
        text.add("conclave_ring_nodes", "gauge", "Nodes in this node's ring.", Double(coordinator.ring.nodes.count))
        text.add(
            "conclave_link_queue_depth", "gauge", "Frames sent to a peer and not yet acknowledged.",
            coordinator.links.queueDepths.sorted { $0.key < $1.key }.map { ("peer=\"\($0.key)\"", Double($0.value)) }
        )
        text.add(
            "conclave_link_queue_bytes", "gauge", "Bytes of frames sent to a peer and not yet acknowledged.",
            coordinator.links.queueBytes.sorted { $0.key < $1.key }.map { ("peer=\"\($0.key)\"", Double($0.value)) }
        )
        let linkEvents = coordinator.links.eventCounts
        text.add(
            "conclave_link_events_total", "counter",
            "Node-link handshakes refused, limits reached and frames dropped, by event (docs/security.md).",
            LinkEvent.allCases.map { ("event=\"\($0.rawValue)\"", Double(linkEvents[$0, default: 0])) }
        )
        text.add("conclave_notify_events_total", "counter", "Control-bus events handled.", Double(bus.eventsReceived))
        text.add(
            "conclave_bus_backlog_events", "gauge", "Control-bus events announced and not yet handled (they wait in PostgreSQL).",
            Double(bus.backlog)
        )
        text.add("conclave_bus_reconnects_total", "counter", "LISTEN connections re-established.", Double(bus.reconnects))
        text.add("conclave_room_activations_total", "counter", "Rooms claimed and loaded by this node.", Double(counters.activations))
        text.add("conclave_handovers_total", "counter", "Rooms handed over to another node.", Double(counters.handOvers))
        text.add("conclave_stale_writes_total", "counter", "Room writes refused because another node owns the room.", Double(counters.staleWrites))
        text.add(
            "conclave_room_inputs_timed_out_total", "counter",
            "Stanzas to rooms refused because they waited longer than cluster.room_input_timeout_seconds for their room.",
            Double(counters.inputsTimedOut)
        )
        text.add(
            "conclave_unserved_rooms_released_total", "counter",
            "Room ownerships this node held without serving the room, released.", Double(counters.unservedReleased)
        )
        text.add(
            "conclave_room_duplicates_dropped_total", "counter",
            "Messages that reached their room again after it moved or its owner died, though handled before: dropped.",
            Double(counters.duplicatesDropped + coordinator.delivered.dropped.load(ordering: .relaxed))
        )
        text.add(
            "conclave_rejected_room_writes_total", "counter",
            "Room changes the database refused for good (dropped, the room re-read from the database).",
            Double(counters.rejectedWrites)
        )
        text.add(
            "conclave_room_writes_timed_out_total", "counter",
            "Writes of several room changes that ran out of time and were written again in smaller pieces.",
            Double(counters.timedOutWrites)
        )
        text.add(
            "conclave_room_write_batch_limit", "gauge",
            "Room changes one write takes now (halved when a write runs out of time, doubled back while writes are quick).",
            Double(muc.writeBatchLimit)
        )
        let backlog = muc.writerBacklog
        text.add(
            "conclave_room_writer_backlog_bytes", "gauge",
            "Bytes of room changes queued for PostgreSQL and not yet written (high-water mark: limits.room_writer_backlog_bytes).",
            Double(backlog.level)
        )
        text.add("conclave_room_writer_backlog_peak_bytes", "gauge", "The largest the writer's backlog has been.", Double(backlog.peak))
        text.add(
            "conclave_room_writer_backlog_highs_total", "counter",
            "Times the writer's backlog reached its high-water mark (the rooms' senders were then not read).", Double(backlog.timesHigh)
        )
        text.add(
            "conclave_room_input_shed_total", "counter",
            "Messages and joins refused with resource-constraint: the writer's backlog above four times its mark, or a room holding too much input.",
            Double(counters.shed)
        )
        text.add(
            "conclave_room_input_parked", "gauge", "Room input from other nodes parked while the writer's backlog is high.",
            Double(coordinator.parked.count)
        )
        text.add(
            "conclave_room_input_parked_total", "counter", "Room input from other nodes parked so far.", Double(coordinator.parked.parkedTotal)
        )
        text.add(
            "conclave_pressured_reads_total", "counter",
            "Times a session's reading waited because the room queue its stanza went into (writer or link) was above its high-water mark.",
            Double(router.pressuredReadCount)
        )
        text.add(
            "conclave_link_queue_highs_total", "counter", "Times the queue to a peer reached its high-water mark (an eighth of cluster.link_queue_bytes).",
            coordinator.links.queueHighs.sorted { $0.key < $1.key }.map { ("peer=\"\($0.key)\"", Double($0.value)) }
        )
        text.add("conclave_room_inputs_forwarded_total", "counter", "Room input forwarded to the owner node.", Double(counters.forwarded))
        text.add(
            "conclave_fanout_deliveries_total", "counter", "Room stanza copies sent to occupants (one per recipient).",
            Double(counters.deliveries)
        )
        let c2s = c2sMetrics
        text.add("conclave_connections_opened_total", "counter", "Client connections accepted.", Double(c2s.connectionsOpened))
        text.add("conclave_connections", "gauge", "Client connections open now.", Double(c2s.connectionsOpen))
        text.add(
            "conclave_stanzas_in_total", "counter", "Stanzas received from bound clients, by kind.",
            C2SMetrics.Kind.allCases.map { ("kind=\"\($0.rawValue)\"", Double(c2s.stanzasIn($0))) }
        )
        text.add(
            "conclave_stanzas_out_total", "counter", "Stanzas sent to clients, by kind.",
            C2SMetrics.Kind.allCases.map { ("kind=\"\($0.rawValue)\"", Double(c2s.stanzasOut($0))) }
        )
        text.add("conclave_stanza_errors_out_total", "counter", "Stanzas of type error sent to clients.", Double(c2s.errorStanzasOut))
        text.add(
            "conclave_stream_errors_total", "counter", "Streams ended with a stream error, by condition.",
            c2s.streamErrors.sorted { $0.key < $1.key }.map { ("condition=\"\($0.key)\"", Double($0.value)) }
        )
        text.add(
            "conclave_connections_refused_total", "counter",
            "Client connections refused at once: too many not yet authenticated, or the node full (limits.max_connections).", Double(c2s.connectionsRefused)
        )
        text.add(
            "conclave_read_pauses_total", "counter",
            "Times reading from a client paused (its output backed up, or a step pending).", Double(c2s.readPauses)
        )
        text.add(
            "conclave_connections_backed_up", "gauge",
            "Client connections whose unsent output is above the channel's high-water mark now (ended above limits.max_unsent_bytes).",
            Double(c2s.connectionsBackedUp)
        )
        text.add(
            "conclave_load_yields_total", "counter",
            "Times a session that read a lot paused its reading because its event loop ran late (sessions sending little go first).",
            Double(c2s.loadYields)
        )
        text.add(
            "conclave_slow_consumers_ended_total", "counter", "Streams ended because the client left too much output unread.",
            Double(c2s.slowConsumersEnded)
        )
        text.add(
            "conclave_session_shaping_delays_total", "counter",
            "Times a session's traffic shaper delayed its next read or held its stanzas (limits.session_*).", Double(c2s.shapingDelays)
        )
        text.add(
            "conclave_shaped_sessions_ended_total", "counter",
            "Streams ended with policy-violation for holding back more stanzas than limits.session_max_held_stanzas.",
            Double(c2s.shapedSessionsEnded)
        )
        text.add(
            "conclave_idle_session_releases_total", "counter",
            "Times an idle session released its XML parser's state and spare output buffer.", Double(c2s.idleSessionsReleased)
        )
        text.add(
            "conclave_authentications_delayed_total", "counter", "Authentication attempts made to wait by the throttle.",
            Double(c2s.authenticationsDelayed)
        )
        return text.rendered
    }

    /// Loads the configured certificates again; on any error the old ones stay.
    func reloadCertificates(c2s: C2STLSSource, links: NodeLinks) {
        do {
            if let tls = try loadTLS() { c2s.replace(with: tls) }
            if let linkTLS = try loadLinkTLS() { links.replaceTLS(linkTLS) }
            logger.notice("certificates reloaded", metadata: ["certificate": "\(configuration.tls.certificate ?? "none")"])
        } catch {
            logger.error("certificate reload failed; the old certificates stay in use", metadata: ["error": "\(error)"])
        }
    }

    /// The `cluster.link_*` limits as `NodeLinks` takes them.
    static func linkOptions(_ cluster: ServerConfiguration.Cluster) -> NodeLinks.Options {
        var options = NodeLinks.Options()
        options.authenticationTimeout = .milliseconds(Int64(cluster.linkAuthTimeoutSeconds * 1000))
        options.preAuthenticationBytes = cluster.linkPreAuthBytes
        options.maxUnauthenticated = cluster.linkMaxUnauthenticated
        options.maxUnauthenticatedPerAddress = cluster.linkMaxUnauthenticatedPerAddress
        options.maxQueueBytes = cluster.linkQueueBytes
        options.maxFrameBytes = cluster.linkMaxFrameBytes
        return options
    }

    /// Mutual TLS for node links when `cluster.tls_ca` is set.
    private func loadLinkTLS() throws -> LinkTLS? {
        guard let ca = configuration.cluster.tlsCA else { return nil }
        guard let certificate = configuration.cluster.tlsCertificate ?? configuration.tls.certificate,
            let key = configuration.cluster.tlsKey ?? configuration.tls.key
        else {
            throw ConfigurationError("cluster.tls_ca is set but there is no certificate and key (cluster.tls_certificate/tls_key or tls.certificate/key)")
        }
        do {
            return try LinkTLS(
                certificatePath: certificate, keyPath: key, caPath: ca, verifyNames: configuration.cluster.tlsVerifyNames
            )
        } catch {
            throw ConfigurationError("cannot load the link TLS certificate \(certificate) / key \(key) / CA \(ca): \(error)")
        }
    }

    private func loadTLS() throws -> C2STLS? {
        guard let certificate = configuration.tls.certificate else {
            guard configuration.c2s.allowPlaintextOnLoopback else {
                throw ConfigurationError("no TLS certificate configured (tls.certificate) and plaintext is not allowed")
            }
            return nil
        }
        guard let key = configuration.tls.key else {
            throw ConfigurationError("tls.certificate is set but tls.key is not")
        }
        do {
            return try C2STLS(certificatePath: certificate, keyPath: key)
        } catch {
            throw ConfigurationError("cannot load TLS certificate \(certificate) / key \(key): \(error)")
        }
    }
}

public enum ConclaveVersion {
    public static let current = "0.1.0"
}
