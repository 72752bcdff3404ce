public import Logging
import NIOPosix
import Storage
public import PostgresNIO

/// Plain SQL on a database: one short connection per call, so that a restarted
/// PostgreSQL leaves no broken connection behind.
public struct SQL: Sendable {
    public let url: PostgresURL

    public init(url: PostgresURL) {
        self.url = url
    }

    /// PostgresNIO's own logging is not wanted here: a failed query is reported by whoever
    /// ran it.
    public static let logger: Logger = {
        var logger = Logger(label: "cluster-test-support.sql")
        logger.logLevel = .critical
        return logger
    }()

    /// How long one call may take, connecting included, before its caller gets an error.
    public static let deadline: Double = 45

    public func withConnection<Result: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> Result)
        async throws -> Result
    {
        // A statement that waits on a lock (a node's transaction that never ends) fails
        // after a while instead of hanging its caller.
        var configuration = url.configuration
        configuration.options.additionalStartupParameters.append(("statement_timeout", "30s"))
        let logger = Self.logger
        let settings = configuration
        // And an answer that never comes (a connection PostgreSQL stopped serving, seen
        // after restarts in `make chaos`: a poller waited for ever and the run stood still)
        // is given up on the client side.
        return try await withDeadline(Self.deadline) {
            let connection = try await PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.next(), configuration: settings, id: 1, logger: logger
            )
            do {
                let result = try await body(connection)
                try? await connection.close()
                return result
            } catch {
                try? await connection.close()
                throw error
            }
        }
    }

    public func execute(_ query: PostgresQuery) async throws {
        try await withConnection { connection in
            _ = try await connection.query(query, logger: Self.logger).collect()
        }
    }

    public func rows<each Column: PostgresDecodable & Sendable>(
        _ query: PostgresQuery, as type: (repeat each Column).Type
    ) async throws -> [(repeat each Column)] {
        try await withConnection { connection in
            var rows: [(repeat each Column)] = []
            for try await row in try await connection.query(query, logger: Self.logger).decode(type) {
                rows.append(row)
            }
            return rows
        }
    }

    public func scalar<Value: PostgresDecodable & Sendable>(_ query: PostgresQuery, as type: Value.Type) async throws
        -> Value?
    {
        try await withConnection { connection in
            for try await value in try await connection.query(query, logger: Self.logger).decode(type) { return value }
            return nil
        }
    }

    /// `String(reflecting:)` of a PSQLError hides the server's message; this shows it.
    public static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            let message = error.serverInfo?[.message] ?? "\(error.code)"
            let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return message + state
        }
        return "\(error)"
    }
}
