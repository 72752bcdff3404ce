public import Logging
public import PostgresNIO
import Synchronization
public import XMPPCore

/// The control bus: one LISTEN connection per node on the `conclave` channel.
///
/// A NOTIFY carries only an event id; the events themselves are read from the `events`
/// table in id order. After the connection drops (PostgreSQL restarted, network), the
/// bus reconnects with backoff, LISTENs again and reads every event it missed, so a
/// committed change is never skipped.
public final class ControlBus: Sendable {
    public static let channel = "conclave"

    private let configuration: PostgresConnection.Configuration
    private let database: ClusterDatabase
    private let logger: Logger
    private let clock: ServiceClock
    private let handler: @Sendable (ClusterEvent) async -> Void
    private let state = Mutex(State())

    struct State {
        var lastID: Int64 = 0
        var listening = false
        var reconnects = 0
        var received = 0
        /// The newest event id announced by a notification.
        var newestNotified: Int64 = 0
        /// Ids handled recently: a sequence value is taken before its transaction
        /// commits, so a lower id can become visible after a higher one. Catching up
        /// looks `lookBack` ids behind the highest handled one and skips these.
        var seen: Set<Int64> = []
        /// Events up to here happened before the node started.
        var floor: Int64 = 0
    }

    static let lookBack: Int64 = 256

    public init(
        configuration: PostgresConnection.Configuration,
        database: ClusterDatabase,
        clock: ServiceClock = .continuous,
        logger: Logger,
        handler: @escaping @Sendable (ClusterEvent) async -> Void
    ) {
        self.clock = clock
        self.configuration = configuration
        self.database = database
        self.logger = logger
        self.handler = handler
    }

    /// LISTEN is established (for readiness).
    public var isListening: Bool { state.withLock { $0.listening } }
    /// How many times the LISTEN connection was re-established.
    public var reconnects: Int { state.withLock { $0.reconnects } }
    /// Events handled so far.
    public var eventsReceived: Int { state.withLock { $0.received } }
    public var lastEventID: Int64 { state.withLock { $0.lastID } }
    /// Events announced and not yet handled (the events wait in PostgreSQL, read a
    /// thousand at a time: this is how far behind the node is, not memory it holds).
    public var backlog: Int64 { state.withLock { max(0, $0.newestNotified - $0.lastID) } }

    /// Handles events after `lastID` until the task is cancelled. `ready` is called
    /// (once) when LISTEN is first established.
    public func run(after lastID: Int64, ready: @escaping @Sendable () -> Void = {}) async {
        state.withLock {
            $0.lastID = lastID
            $0.floor = lastID
        }
        var delay: Duration = .milliseconds(50)
        var first = true
        var calledReady = false
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: configuration, id: 1, logger: logger
                )
                defer { Task { try? await connection.close() } }
                try await connection.listen(on: Self.channel) { notifications in
                    state.withLock {
                        $0.listening = true
                        if !first { $0.reconnects += 1 }
                    }
                    if !first { logger.info("control bus reconnected; catching up") }
                    first = false
                    delay = .milliseconds(50)
                    // Whatever was committed while we were not listening.
                    try await catchUp()
                    if !calledReady {
                        calledReady = true
                        ready()
                    }
                    for try await notification in notifications {
                        if let id = Int64(notification.payload) {
                            state.withLock { $0.newestNotified = max($0.newestNotified, id) }
                            if id <= lastEventID { continue }
                        }
                        try await catchUp()
                    }
                }
                state.withLock { $0.listening = false }
                if Task.isCancelled { return }
                logger.warning("control bus: notifications ended; reconnecting")
            } catch {
                state.withLock { $0.listening = false }
                if Task.isCancelled { return }
                logger.warning("control bus lost its connection; reconnecting", metadata: ["error": "\(error)"])
            }
            try? await clock.sleep(delay)
            delay = min(delay * 2, .seconds(2))
        }
    }

    /// Reads and handles every event after the last one handled, in id order.
    public func catchUp() async throws {
        while true {
            let events = try await database.events(after: max(0, lastEventID - Self.lookBack))
            var fresh = 0
            for event in events {
                let isNew = state.withLock { $0.floor < event.id && $0.seen.insert(event.id).inserted }
                guard isNew else { continue }
                fresh += 1
                await handler(event)
                state.withLock {
                    $0.lastID = max($0.lastID, event.id)
                    $0.received += 1
                    if $0.seen.count > Int(Self.lookBack) * 4 {
                        let floor = $0.lastID - Self.lookBack
                        $0.seen = $0.seen.filter { $0 >= floor }
                    }
                }
            }
            if events.count < 1000 || fresh == 0 { return }
        }
    }
}
