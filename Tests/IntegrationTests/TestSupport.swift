import Cluster
import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import ServerRuntime
import ServiceLifecycle
import Storage
import StoragePostgres
import Testing
import XMPPCore
import XMPPStream

/// Where the integration tests find PostgreSQL: `make test` starts the embedded
/// server and exports a fresh database's URL.
enum TestEnvironment {
    static let databaseURL = ProcessInfo.processInfo.environment["CONCLAVE_TEST_DATABASE_URL"]
    static var hasDatabase: Bool { databaseURL != nil }

    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static var migrations: String { repositoryRoot + "/migrations" }
    static var certificate: String { repositoryRoot + "/Tests/IntegrationTests/Fixtures/localhost.crt" }
    static var key: String { repositoryRoot + "/Tests/IntegrationTests/Fixtures/localhost.key" }

    static let logger: Logger = {
        var logger = Logger(label: "test")
        // CONCLAVE_TEST_LOG_LEVEL=debug shows what the nodes under test log.
        logger.logLevel = ProcessInfo.processInfo.environment["CONCLAVE_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
        return logger
    }()
}

/// One PostgreSQL client for all tests, migrated once.
actor TestDatabase {
    static let shared = TestDatabase()

    private var client: PostgresClient?

    func connected() async throws -> PostgresClient {
        if let client { return client }
        let url = try #require(TestEnvironment.databaseURL)
        let client = PostgresClient(configuration: try DatabaseURL.configuration(url), backgroundLogger: TestEnvironment.logger)
        Task.detached { await client.run() }
        try await Migrator(directory: TestEnvironment.migrations).migrate(client: client, logger: TestEnvironment.logger)
        self.client = client
        return client
    }

    /// A node registered under a unique name that starts with `prefix`, draining so that
    /// the other tests' nodes (sharing this database, hence one cluster) never send it
    /// rooms: for tests that run a room service or write rooms in its name.
    func drainingNode(_ prefix: String) async throws -> String {
        let node = prefix + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let database = ClusterDatabase(client: try await connected(), logger: TestEnvironment.logger)
        _ = try await database.register(name: node, linkAddress: "127.0.0.1:1", leaseSeconds: 60)
        _ = try await database.setState(name: node, "draining")
        return node
    }

    func accounts() async throws -> PostgresAccountStore {
        PostgresAccountStore(client: try await connected(), logger: TestEnvironment.logger)
    }

    /// Creates an account with a unique name and returns its JID.
    func makeAccount(password: String = "secret", prefix: String = "user") async throws -> JID {
        let name = prefix + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let jid = try JID(localpart: name, domainpart: "localhost")
        try await accounts().createAccount(jid, credentials: .derive(password: password))
        return jid
    }
}

/// A real node on port 0, run in a `ServiceGroup` like `conclave serve` runs it.
final class TestNode: Sendable {
    let node: ConclaveNode
    let group: ServiceGroup
    let task: Task<Void, any Error>
    let ports: ConclaveNode.BoundPorts

    private init(node: ConclaveNode, group: ServiceGroup, task: Task<Void, any Error>, ports: ConclaveNode.BoundPorts) {
        self.node = node
        self.group = group
        self.task = task
        self.ports = ports
    }

    static func start(_ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> TestNode {
        _ = try await TestDatabase.shared.connected()
        var configuration = ServerConfiguration(domain: "localhost")
        configuration.databaseURL = TestEnvironment.databaseURL
        configuration.migrationsDirectory = TestEnvironment.migrations
        configuration.c2s.host = "127.0.0.1"
        configuration.c2s.port = 0
        configuration.c2s.directTLSPort = 0
        configuration.tls.certificate = TestEnvironment.certificate
        configuration.tls.key = TestEnvironment.key
        configuration.auth.channelBinding = true
        // Every test node is a node of its own: a unique name, any free link port.
        configuration.nodeName = "test-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        configuration.cluster.linkPort = 0
        configuration.cluster.secret = "integration-tests"
        configure(&configuration)
        let node = try ConclaveNode(configuration: configuration, logger: TestEnvironment.logger)
        let group = ServiceGroup(configuration: .init(services: node.services, logger: TestEnvironment.logger))
        let task = Task { try await group.run() }
        guard let ports = await node.ready() else {
            try await task.value
            throw TestFailure("the node stopped before it was ready")
        }
        return TestNode(node: node, group: group, task: task, ports: ports)
    }

    /// Graceful shutdown, as on SIGTERM; waits until the node has stopped.
    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    /// Connects a client and, when `password` is given, authenticates and binds.
    func client(
        tls: XMPPClient.TLSMode = .starttls(required: true),
        domain: String = "localhost"
    ) async throws -> XMPPClient {
        var options = XMPPClient.Options()
        options.tls = tls
        options.trust = .caFile(TestEnvironment.certificate)
        options.timeout = .seconds(10)
        let port = tls == .direct ? ports.directTLS! : ports.starttls
        return try await XMPPClient.connect(host: "127.0.0.1", port: port, domain: domain, options: options)
    }

    func login(
        _ account: JID,
        password: String = "secret",
        resource: String? = nil,
        mechanism: String = "SCRAM-SHA-256",
        tls: XMPPClient.TLSMode = .starttls(required: true)
    ) async throws -> XMPPClient {
        let client = try await client(tls: tls)
        try await client.authenticate(username: account.localpart!, password: password, preferred: [mechanism])
        try await client.bind(resource: resource)
        return client
    }
}

/// Runs `body` with a started node and always stops it.
func withNode(
    _ configure: (inout ServerConfiguration) -> Void = { _ in },
    _ body: (TestNode) async throws -> Void
) async throws {
    let node = try await TestNode.start(configure)
    do {
        try await body(node)
    } catch {
        await node.stop()
        throw error
    }
    await node.stop()
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension XMPPClient {
    /// Waits for the next element that satisfies `match`, skipping others; fails on timeout.
    func receive(
        timeout: TimeAmount = .seconds(10),
        sourceLocation: SourceLocation = #_sourceLocation,
        where match: (XMLElement) -> Bool = { _ in true }
    ) async throws -> XMLElement {
        let deadline = NIODeadline.now() + timeout
        var skipped: [XMPPClientEvent] = []
        while true {
            let remaining = deadline - .now()
            guard remaining > .zero, let event = await next(timeout: remaining) else {
                throw TestFailure("nothing matching arrived; skipped: \(skipped)")
            }
            if case .element(let element) = event, match(element) { return element }
            skipped.append(event)
            if event == .disconnected { throw TestFailure("disconnected; skipped: \(skipped)") }
        }
    }

    /// Waits for a stream error and the end of the stream; returns the condition.
    func receiveStreamError() async throws -> StreamError {
        let error = try await receive { $0.name == "error" && $0.namespace == Namespace.stream }
        return try #require(StreamError(element: error))
    }

    /// Sends an IQ and waits for the answer with the same id.
    func iq(_ type: String, to: String? = nil, id: String = "iq\(UInt32.random(in: 0...UInt32.max))", _ payload: XMLElement) async throws -> XMLElement {
        var iq = XMLElement("iq", namespace: Namespace.client, ["type": type, "id": id])
        if let to { iq[attribute: "to"] = to }
        iq.append(payload)
        send(iq)
        return try await receive { $0.name == "iq" && $0.id == id }
    }

    func ping(_ to: String? = "localhost") async throws -> XMLElement {
        try await iq("get", to: to, XMLElement("ping", namespace: Namespace.ping))
    }

    /// Joins `room` (a bare JID) as `nick` and waits for its subject, the end of the join;
    /// `create`: the join made the room, which is then unlocked as an instant room.
    func enter(_ room: String, nick: String, create: Bool = false) async throws {
        send(XMLElement("presence", namespace: Namespace.client, ["to": "\(room)/\(nick)"], children: [XMLElement("x", namespace: Namespace.muc)]))
        _ = try await receive { $0.child("subject") != nil }
        guard create else { return }
        let unlocked = try await iq(
            "set", to: room,
            XMLElement("query", namespace: Namespace.mucOwner, children: [XMLElement("x", namespace: Namespace.dataForms, ["type": "submit"])]))
        #expect(unlocked.type == "result", "\(room) was not unlocked: \(unlocked)")
    }
}

extension XMPPClient {
    /// Waits until the server closes the stream or the connection.
    func expectEnd(timeout: TimeAmount = .seconds(10)) async throws {
        let deadline = NIODeadline.now() + timeout
        while true {
            let remaining = deadline - .now()
            guard remaining > .zero, let event = await next(timeout: remaining) else {
                throw TestFailure("the stream did not end")
            }
            if event == .streamClosed || event == .disconnected { return }
        }
    }
}

/// A plain TCP connection for sending bytes no client library would send.
struct RawConnection {
    let channel: any Channel
    let received: Received

    final class Received: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        var text = ""
        let closed: EventLoopPromise<String>

        init(eventLoop: any EventLoop) {
            closed = eventLoop.makePromise()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            text += buffer.readString(length: buffer.readableBytes) ?? ""
        }

        func channelInactive(context: ChannelHandlerContext) {
            closed.succeed(text)
        }
    }

    static func connect(port: Int) async throws -> RawConnection {
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let received = Received(eventLoop: eventLoop)
        let channel = try await ClientBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(received) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, received: received)
    }

    /// Sends `text` and returns everything the server wrote until it closed the connection.
    func exchange(_ text: String, timeout: TimeAmount = .seconds(10)) async throws -> String {
        try await channel.writeAndFlush(channel.allocator.buffer(string: text))
        let closer = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
        let answer = try await received.closed.futureResult.get()
        closer.cancel()
        return answer
    }
}

/// The PostgreSQL store as it is, for a test to change one part of: a subclass overrides
/// `apply` (the writes) and passes the rest through.
class WrappedRoomStore: RoomStore, @unchecked Sendable {
    let store: PostgresRoomStore

    init(_ store: PostgresRoomStore) { self.store = store }

    func apply(_ changes: [StoredRoomChange], to room: JID, fence: RoomFence) async throws {
        try await store.apply(changes, to: room, fence: fence)
    }
    func loadRoom(_ room: JID) async throws -> StoredRoom? { try await store.loadRoom(room) }
    func claim(_ room: JID, node: String, incarnation: Int64) async throws -> Int64? {
        try await store.claim(room, node: node, incarnation: incarnation)
    }
    func owner(of room: JID) async throws -> RoomOwnerRecord? { try await store.owner(of: room) }
    func heldRooms(node: String, incarnation: Int64) async throws -> [(room: JID, epoch: Int64)] {
        try await store.heldRooms(node: node, incarnation: incarnation)
    }
    func askToRelease(_ room: JID, holder: String) async throws { try await store.askToRelease(room, holder: holder) }
    func release(_ room: JID, fence: RoomFence) async throws { try await store.release(room, fence: fence) }
    func publicRooms(after: String?, limit: Int) async throws -> (rooms: [(jid: JID, name: String)], count: Int) {
        try await store.publicRooms(after: after, limit: limit)
    }
    func ownedRoomCount(_ owner: JID) async throws -> Int { try await store.ownedRoomCount(owner) }
}
