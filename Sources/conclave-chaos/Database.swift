import Foundation
import Logging
import NIOPosix
import PostgresNIO

/// A `postgres://user[:password]@host[:port]/database` URL.
struct PostgresURL: Sendable, CustomStringConvertible {
    var components: URLComponents

    init(_ text: String) throws {
        guard let components = URLComponents(string: text), let scheme = components.scheme,
            scheme == "postgres" || scheme == "postgresql", components.host != nil
        else { throw ChaosError("not a PostgreSQL URL: \(text)") }
        self.components = components
    }

    var host: String { components.host ?? "127.0.0.1" }
    var port: Int { components.port ?? 5432 }
    var user: String { components.user ?? "postgres" }
    var password: String? { components.password }
    var database: String {
        let path = components.path
        return path.hasPrefix("/") ? String(path.dropFirst()) : path
    }

    func with(database name: String) -> PostgresURL {
        var copy = self
        copy.components.path = "/" + name
        return copy
    }

    var description: String { components.string ?? "?" }

    var configuration: PostgresConnection.Configuration {
        PostgresConnection.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: .disable)
    }
}

/// Plain SQL on the chaos database: one short connection per call, so that a restarted
/// PostgreSQL leaves no broken connection behind.
struct SQL: Sendable {
    let url: PostgresURL

    static let logger: Logger = {
        var logger = Logger(label: "conclave-chaos.sql")
        logger.logLevel = .critical
        return logger
    }()

    func withConnection<Result: Sendable>(_ body: (PostgresConnection) async throws -> Result) async throws -> Result {
        let connection = try await PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.next(), configuration: url.configuration, id: 1,
            logger: Self.logger
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

    func execute(_ query: PostgresQuery) async throws {
        try await withConnection { connection in
            _ = try await connection.query(query, logger: Self.logger).collect()
        }
    }

    func rows<each Column: PostgresDecodable & Sendable>(
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

    func scalar<Value: PostgresDecodable & Sendable>(_ query: PostgresQuery, as type: Value.Type) async throws -> Value?
    {
        try await withConnection { connection in
            for try await value in try await connection.query(query, logger: Self.logger).decode(type) { return value }
            return nil
        }
    }

    /// `String(reflecting:)` of a PSQLError hides the server's message; this shows it.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            let message = error.serverInfo?[.message] ?? "\(error.code)"
            let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return message + state
        }
        return "\(error)"
    }
}

// MARK: - What the checks read

extension SQL {
    /// Every row of `room_owners`: room → (owner node, epoch).
    func owners() async throws -> [String: (node: String?, epoch: Int64)] {
        var result: [String: (node: String?, epoch: Int64)] = [:]
        for (room, node, epoch) in try await rows(
            "SELECT room, node, epoch FROM room_owners", as: (String, String?, Int64).self)
        {
            result[room] = (node, epoch)
        }
        return result
    }

    /// The affiliations stored for `rooms`: room → jid → affiliation.
    func affiliations(of rooms: [String]) async throws -> [String: [String: String]] {
        var result: [String: [String: String]] = [:]
        for (room, jid, affiliation) in try await rows(
            "SELECT room, jid, affiliation FROM room_affiliations WHERE room = ANY(\(rooms))",
            as: (String, String, String).self
        ) {
            result[room, default: [:]][jid] = affiliation
        }
        return result
    }

    struct StoredRoom: Sendable {
        var persistent: Bool
        var membersOnly: Bool
        var name: String
        /// Created and never configured.
        var locked: Bool
    }

    /// The stored configuration of those of `rooms` that exist.
    func rooms(_ rooms: [String]) async throws -> [String: StoredRoom] {
        var result: [String: StoredRoom] = [:]
        for (jid, persistent, membersOnly, name, locked) in try await rows(
            """
            SELECT jid, persistent, coalesce((configuration->>'membersOnly')::boolean, false),
                   coalesce(configuration->>'name', ''), locked
            FROM rooms WHERE jid = ANY(\(rooms))
            """,
            as: (String, Bool, Bool, String, Bool).self
        ) {
            result[jid] = StoredRoom(persistent: persistent, membersOnly: membersOnly, name: name, locked: locked)
        }
        return result
    }

    /// Seconds left of PostgreSQL's restart grace (every registered node counts as alive
    /// for 10 s after PostgreSQL started: migration 0005); 0 when it is over.
    func restartGraceLeft() async throws -> Double {
        let left = try await scalar(
            "SELECT extract(epoch FROM pg_postmaster_start_time() + interval '10 seconds' - now())::float8",
            as: Double.self
        )
        return max(left ?? 0, 0)
    }
}
