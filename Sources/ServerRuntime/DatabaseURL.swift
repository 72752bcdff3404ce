import Foundation
import NIOSSL
public import PostgresNIO

/// Reads a `postgres://user:password@host:port/database` URL into a client configuration.
///
/// TLS is chosen with libpq's query parameters, so the same URL works with `psql`:
/// `sslmode` (`disable`, the default here; `allow` and `prefer`: TLS when the server
/// offers it, unverified; `require`: TLS or no connection, unverified; `verify-ca`:
/// TLS with a certificate signed by a trusted CA; `verify-full`: that, and the
/// certificate names the host), `sslrootcert` (the CA file to trust instead of the
/// system's), `sslcert`/`sslkey` (a client certificate). docs/deploy.md explains the
/// remote-database deployment.
public enum DatabaseURL {
    /// How the connection to PostgreSQL is protected.
    public struct Security: Sendable, Hashable {
        public enum Mode: String, Sendable, Hashable {
            case disable, allow, prefer, require
            case verifyCA = "verify-ca"
            case verifyFull = "verify-full"
        }

        public var mode: Mode = .disable
        /// PEM file of the CAs trusted for the server's certificate; `nil`: the system's.
        public var rootCertificate: String?
        /// PEM client certificate chain and key, for servers that ask for one.
        public var clientCertificate: String?
        public var clientKey: String?

        /// TLS is used (or, for `allow`/`prefer`, tried).
        public var usesTLS: Bool { mode != .disable }
        /// A connection without TLS is refused.
        public var requiresTLS: Bool { mode == .require || mode == .verifyCA || mode == .verifyFull }

        /// NIOSSL's client configuration for this mode, `nil` without TLS.
        func tlsConfiguration() throws -> TLSConfiguration? {
            guard usesTLS else { return nil }
            var tls = TLSConfiguration.makeClientConfiguration()
            switch mode {
            case .disable, .allow, .prefer, .require:
                // As libpq: encryption without checking whom it is with (unless a root
                // certificate is given to `require`, which then checks the chain).
                tls.certificateVerification =
                    mode == .require && rootCertificate != nil ? .noHostnameVerification : .none
            case .verifyCA: tls.certificateVerification = .noHostnameVerification
            case .verifyFull: tls.certificateVerification = .fullVerification
            }
            if let rootCertificate {
                guard FileManager.default.isReadableFile(atPath: rootCertificate) else {
                    throw ConfigurationError("database URL: sslrootcert \(rootCertificate) cannot be read")
                }
                tls.trustRoots = .file(rootCertificate)
            }
            switch (clientCertificate, clientKey) {
            case (nil, nil): break
            case (let certificate?, let key?):
                do {
                    tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                    tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
                } catch {
                    throw ConfigurationError("database URL: cannot read sslcert/sslkey: \(error)")
                }
            default:
                throw ConfigurationError("database URL: sslcert and sslkey go together")
            }
            return tls
        }
    }

    /// The TLS settings `text` asks for.
    public static func security(_ text: String) throws -> Security {
        let components = try parse(text)
        var security = Security()
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let value = item.value, let mode = Security.Mode(rawValue: value) else {
                    throw ConfigurationError(
                        "database URL: sslmode must be disable, allow, prefer, require, verify-ca or verify-full, "
                            + "not '\(item.value ?? "")'"
                    )
                }
                security.mode = mode
            case "sslrootcert": security.rootCertificate = item.value
            case "sslcert": security.clientCertificate = item.value
            case "sslkey": security.clientKey = item.value
            default: continue
            }
        }
        return security
    }

    public static func configuration(_ text: String) throws -> PostgresClient.Configuration {
        let components = try parse(text)
        let security = try security(text)
        let username = components.user ?? "postgres"
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let socket = components.queryItems?.first { $0.name == "host" }?.value
        var configuration: PostgresClient.Configuration
        if let socket, socket.hasPrefix("/") {
            // A Unix socket never uses TLS (as with libpq).
            configuration = .init(
                unixSocketPath: socket + "/.s.PGSQL.\(components.port ?? 5432)",
                username: username,
                password: components.password,
                database: database.isEmpty ? nil : database
            )
        } else {
            let tls: PostgresClient.Configuration.TLS =
                if let settings = try security.tlsConfiguration() {
                    security.requiresTLS ? .require(settings) : .prefer(settings)
                } else {
                    .disable
                }
            configuration = .init(
                host: components.host ?? "127.0.0.1",
                port: components.port ?? 5432,
                username: username,
                password: components.password,
                database: database.isEmpty ? nil : database,
                tls: tls
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
            return .init(
                unixSocketPath: socket, username: pool.username, password: pool.password, database: pool.database)
        }
        let security = try security(text)
        let tls: PostgresConnection.Configuration.TLS
        if let settings = try security.tlsConfiguration() {
            let context = try NIOSSLContext(configuration: settings)
            tls = security.requiresTLS ? .require(context) : .prefer(context)
        } else {
            tls = .disable
        }
        return .init(
            host: pool.host ?? "127.0.0.1", port: pool.port ?? 5432, username: pool.username, password: pool.password,
            database: pool.database, tls: tls
        )
    }

    private static func parse(_ text: String) throws -> URLComponents {
        guard let components = URLComponents(string: text),
            components.scheme == "postgres" || components.scheme == "postgresql"
        else {
            throw ConfigurationError("database URL must look like postgres://user:password@host:port/database")
        }
        return components
    }
}
