import ArgumentParser
import Logging
import PostgresNIO
import ServerRuntime
import StoragePostgres

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply the database migrations that are missing.")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let configuration = try common.load()
        let logger = common.makeLogger(configuration)
        let directory = try configuration.resolvedMigrationsDirectory()
        let applied = try await withDatabase(configuration, logger: logger) { client in
            try await Migrator(directory: directory).migrate(client: client, logger: logger)
        }
        print(applied.isEmpty ? "database is up to date" : "applied: \(applied.joined(separator: ", "))")
    }
}

/// Runs `body` with a connected client, then shuts the client down.
func withDatabase<Result: Sendable>(
    _ configuration: ServerConfiguration,
    logger: Logger,
    _ body: @Sendable (PostgresClient) async throws -> Result
) async throws -> Result {
    let client = PostgresClient(
        configuration: try DatabaseURL.configuration(try configuration.resolvedDatabaseURL()),
        backgroundLogger: logger
    )
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await client.run() }
        defer { group.cancelAll() }
        return try await body(client)
    }
}
