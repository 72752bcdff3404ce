import ArgumentParser
import Foundation
import Logging
import ServerRuntime

@main
struct Conclave: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conclave",
        abstract: "Conclave, a clustered XMPP Multi-User Chat service.",
        version: ConclaveVersion.current,
        subcommands: [Serve.self, Migrate.self, User.self, RoomCommand.self, ClusterCommand.self, NodeCommand.self],
        defaultSubcommand: Serve.self
    )
}

/// Options every command shares: where the configuration and the database are.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "YAML configuration file (default: $CONCLAVE_CONFIG, else ./conclave.yaml if present).")
    var config: String?

    @Option(
        name: .long,
        help: "PostgreSQL URL postgres://user:password@host:port/db (default: $CONCLAVE_DATABASE_URL, else the embedded database under .conclave/)."
    )
    var databaseURL: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String?

    @Option(name: .long, help: "Log format: text (key=value) or json (one object per line).")
    var logFormat: String?

    func load() throws -> ServerConfiguration {
        let environment = ProcessInfo.processInfo.environment
        var path = config ?? environment["CONCLAVE_CONFIG"]
        if path == nil, FileManager.default.fileExists(atPath: "conclave.yaml") { path = "conclave.yaml" }
        var configuration = try ServerConfiguration.load(path: path, environment: environment)
        if let databaseURL { configuration.databaseURL = databaseURL }
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel) else {
                throw ValidationError("unknown log level \(logLevel)")
            }
            configuration.logLevel = level
        }
        if let logFormat {
            guard let format = ServerConfiguration.LogFormat(rawValue: logFormat) else {
                throw ValidationError("unknown log format \(logFormat) (text, json)")
            }
            configuration.logFormat = format
        }
        return configuration
    }

    func makeLogger(_ configuration: ServerConfiguration) -> Logger {
        LoggingSystem.bootstrap { label in
            switch configuration.logFormat {
            case .json:
                return JSONLogHandler(label: label, level: configuration.logLevel)
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = configuration.logLevel
                return handler
            }
        }
        return Logger(label: "conclave")
    }
}
