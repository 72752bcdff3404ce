public import Logging
import NIOCore
import NIOPosix
public import PostgresNIO
import Synchronization
public import XMPPCore

/// Renews this node's lease on a thread and a PostgreSQL connection of its own. Client
/// traffic that keeps the event loops, the task pool and the connection pool busy then
/// cannot hold a heartbeat back until the other nodes declare this one dead (which drops
/// every session): the statement waits for neither of them.
public final class LeaseRenewer: Sendable {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let configuration: PostgresConnection.Configuration
    private let logger: Logger
    private let clock: ServiceClock
    private let connection = Mutex<PostgresConnection?>(nil)
    private let task = Mutex<RepeatedTask?>(nil)

    public init(configuration: PostgresConnection.Configuration, clock: ServiceClock = .continuous, logger: Logger) {
        self.clock = clock
        self.configuration = configuration
        self.logger = logger
    }

    /// Every `interval`, runs the statement `statement()` gives (none: skip this beat)
    /// and hands `done` whether it returned a row, with the time it was sent; one beat
    /// at a time. A beat without an answer within `timeout` fails, and its connection is
    /// closed (the next beat opens another): a connection that stopped answering must not
    /// hold every later beat back until the lease runs out. `done` runs on the renewer's
    /// thread.
    public func start(
        every interval: Duration,
        timeout: Duration,
        statement: @escaping @Sendable () -> PostgresQuery?,
        done: @escaping @Sendable (Result<Bool, any Error>, Duration) -> Void
    ) {
        let loop = group.next()
        let period = Self.amount(interval)
        let limit = Self.amount(timeout)
        let repeated = loop.scheduleRepeatedAsyncTask(initialDelay: period, delay: period) { [self] _ in
            guard let query = statement() else { return loop.makeSucceededVoidFuture() }
            let sent = clock.now()
            let expiry = loop.scheduleTask(in: limit) { [self] in
                logger.warning("heartbeat: no answer from PostgreSQL within \(timeout); closing its connection")
                if let stuck = connection.withLock({ $0 }) { stuck.close().whenComplete { _ in } }
            }
            return connected(on: loop, timeout: limit)
                .flatMap { [logger] connection in connection.query(query, logger: logger) }
                .always { _ in expiry.cancel() }
                .map { result in done(.success(!result.rows.isEmpty), sent) }
                .flatMapError { [self] error in
                    // A broken connection is opened again at the next beat.
                    if let broken = connection.withLock({ value -> PostgresConnection? in
                        defer { value = nil }
                        return value
                    }) {
                        broken.close().whenComplete { _ in }
                    }
                    done(.failure(error), sent)
                    return loop.makeSucceededVoidFuture()
                }
        }
        task.withLock { $0 = repeated }
    }

    private func connected(on loop: any EventLoop, timeout: TimeAmount) -> EventLoopFuture<PostgresConnection> {
        if let open = connection.withLock({ $0 }), !open.isClosed { return loop.makeSucceededFuture(open) }
        var configuration = configuration
        configuration.options.connectTimeout = timeout
        return PostgresConnection.connect(on: loop, configuration: configuration, id: 1, logger: logger).map { [self] open in
            connection.withLock { $0 = open }
            return open
        }
    }

    private static func amount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    public func stop() async {
        task.withLock { $0 }?.cancel()
        if let open = connection.withLock({ $0 }) { try? await open.close() }
        try? await group.shutdownGracefully()
    }
}
