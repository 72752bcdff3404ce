public import Foundation
public import PostgresNIO

/// A `postgres://user[:password]@host[:port]/database` URL.
public struct PostgresURL: Sendable, CustomStringConvertible {
    public var components: URLComponents

    public init(_ text: String) throws {
        guard let components = URLComponents(string: text), let scheme = components.scheme,
            scheme == "postgres" || scheme == "postgresql", components.host != nil
        else { throw HarnessError("not a PostgreSQL URL: \(text)") }
        self.components = components
    }

    public var host: String { components.host ?? "127.0.0.1" }
    public var port: Int { components.port ?? 5432 }
    public var user: String { components.user ?? "postgres" }
    public var password: String? { components.password }
    public var database: String {
        let path = components.path
        return path.hasPrefix("/") ? String(path.dropFirst()) : path
    }

    public func with(database name: String) -> PostgresURL {
        var copy = self
        copy.components.path = "/" + name
        return copy
    }

    public var description: String { components.string ?? "?" }

    public var configuration: PostgresConnection.Configuration {
        PostgresConnection.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: .disable)
    }
}
