public import Logging
public import PostgresNIO
import NIOCore

/// Random secrets shared by every node of a deployment, in the `deployment_secrets` table.
///
/// Why in the database: a keyed value (an XEP-0421 occupant id) must be the same on
/// every node and after every restart, and must not be derivable from public data. The
/// first node that asks makes the secret; the others, racing or later, read the one
/// that won. Nothing to configure, and nothing lost with a node's disk.
public struct PostgresDeploymentSecrets: Sendable {
    private let client: PostgresClient
    private let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// The secret called `name`, made now (`bytes` random bytes from the system's secure
    /// generator) if the deployment has none yet.
    public func secret(named name: String, bytes: Int = 32) async throws -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        let fresh = (0..<max(bytes, 16)).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let candidate = ByteBuffer(bytes: fresh)
        _ = try await client.query(
            "INSERT INTO deployment_secrets (name, secret) VALUES (\(name), \(candidate)) ON CONFLICT (name) DO NOTHING",
            logger: logger
        ).collect()
        let rows = try await client.query("SELECT secret FROM deployment_secrets WHERE name = \(name)", logger: logger)
        for try await secret in rows.decode(ByteBuffer.self) {
            return Array(secret.readableBytesView)
        }
        throw DeploymentSecretError.missing(name)
    }
}

/// The secret was neither there nor made (the table was emptied in between).
public enum DeploymentSecretError: Error, CustomStringConvertible {
    case missing(String)

    public var description: String {
        switch self {
        case .missing(let name): "the deployment secret '\(name)' could not be stored or read"
        }
    }
}
