public import Logging
public import PostgresNIO
import Foundation

/// Applies the numbered SQL files of `migrations/` (`0001_accounts.sql`, …) that the
/// database has not seen yet, each in its own transaction, recording them in
/// `schema_migrations`. Safe to run from several nodes at once: an advisory lock
/// serialises them.
public struct Migrator: Sendable {
    public struct Migration: Sendable, Hashable {
        public var version: Int
        public var name: String
        public var sql: String
    }

    public let migrations: [Migration]

    public init(migrations: [Migration]) {
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// Reads `NNNN_name.sql` files from `directory`.
    public init(directory: String) throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory)
        var migrations: [Migration] = []
        for file in files where file.hasSuffix(".sql") {
            guard let version = Int(file.prefix { $0.isNumber }) else {
                throw MigrationError.badFileName(file)
            }
            let sql = try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
            migrations.append(Migration(version: version, name: String(file.dropLast(4)), sql: sql))
        }
        let versions = migrations.map(\.version)
        if Set(versions).count != versions.count { throw MigrationError.duplicateVersion }
        self.init(migrations: migrations)
    }

    /// Applies what is missing; returns the names applied now.
    @discardableResult
    public func migrate(client: PostgresClient, logger: Logger) async throws -> [String] {
        try await client.withConnection { connection in
            _ = try await connection.query("SELECT pg_advisory_lock(7243001)", logger: logger).collect()
            do {
                let applied = try await apply(connection: connection, logger: logger)
                _ = try await connection.query("SELECT pg_advisory_unlock(7243001)", logger: logger).collect()
                return applied
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(7243001)", logger: logger).collect()
                throw error
            }
        }
    }

    private func apply(connection: PostgresConnection, logger: Logger) async throws -> [String] {
        _ = try await connection.query(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            logger: logger
        ).collect()
        var done = Set<Int>()
        for try await version in try await connection.query("SELECT version FROM schema_migrations", logger: logger)
            .decode(Int.self)
        {
            done.insert(version)
        }
        var applied: [String] = []
        for migration in migrations where !done.contains(migration.version) {
            try await connection.withTransaction(logger: logger) { connection in
                for statement in SQLStatements.split(migration.sql) {
                    _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger).collect()
                }
                _ = try await connection.query(
                    "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                    logger: logger
                ).collect()
            }
            logger.info("applied migration", metadata: ["migration": "\(migration.name)"])
            applied.append(migration.name)
        }
        return applied
    }
}

public enum MigrationError: Error, CustomStringConvertible {
    case badFileName(String)
    case duplicateVersion
    case directoryNotFound([String])

    public var description: String {
        switch self {
        case .badFileName(let name): "migration file '\(name)' does not start with a version number"
        case .duplicateVersion: "two migration files have the same version number"
        case .directoryNotFound(let tried): "no migrations directory (tried \(tried.joined(separator: ", ")))"
        }
    }
}
