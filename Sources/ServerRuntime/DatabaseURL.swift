import Foundation
public import PostgresNIO

/// Reads a `postgres://user:password@host:port/database` URL into a client configuration.
public enum DatabaseURL {
    public static func configuration(_ text: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: text),
            components.scheme == "postgres" || components.scheme == "postgresql"
        else {
            throw ConfigurationError("database URL must look like postgres://user:password@host:port/database")
        }
        let username = components.user ?? "postgres"
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let socket = components.queryItems?.first { $0.name == "host" }?.value
        var configuration: PostgresClient.Configuration
        if let socket, socket.hasPrefix("/") {
            configuration = .init(
                unixSocketPath: socket + "/.s.PGSQL.\(components.port ?? 5432)",
                username: username,
                password: components.password,
                database: database.isEmpty ? nil : database
            )
        } else {
            configuration = .init(
                host: components.host ?? "127.0.0.1",
                port: components.port ?? 5432,
                username: username,
                password: components.password,
                database: database.isEmpty ? nil : database,
                tls: .disable
            )
        }
        configuration.options.minimumConnections = 0
        configuration.options.maximumConnections = 16
        return configuration
    }

    /// A single-connection configuration for the same URL (the LISTEN connection).
    public static func connectionConfiguration(_ text: String) throws -> PostgresConnection.Configuration {
        let pool = try configuration(text)
        if let socket = pool.unixSocketPath {
            return .init(unixSocketPath: socket, username: pool.username, password: pool.password, database: pool.database)
        }
        return .init(
            host: pool.host ?? "127.0.0.1", port: pool.port ?? 5432, username: pool.username, password: pool.password,
            database: pool.database, tls: .disable
        )
    }
}
