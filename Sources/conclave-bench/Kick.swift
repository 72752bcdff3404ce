import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import ServerRuntime
import XMPPCore
import XMPPStream

/// `conclave-bench kick`: in a Conclave cluster, the time from an affiliation change
/// written to PostgreSQL (as an operator's tool or another node writes it) to the kick
/// arriving at an occupant connected to another node than the room's owner.
struct Kick: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Conclave cluster: time from an outcast affiliation committed in PostgreSQL to the occupant's kick (status 301).",
        discussion: """
            User 1 creates a room; users 2 … kicks+1 join it, connected round robin over the --server \
            nodes. For each occupant connected to a node other than the room's owner, one statement \
            makes it an outcast (INSERT … ON CONFLICT into room_affiliations, committed on its own), \
            and the time runs from sending that statement to the occupant's unavailable presence \
            with status 301. Needs the cluster's database (--database-url).
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The cluster's database, postgres://user@host:port/database.") var databaseURL: String
    @Option(help: "Occupants banned, one after the other.") var kicks = 20
    @Option(help: "A label for the result.") var label = "conclave"
    @Option(help: "Write the result as JSON to this file.") var json: String?

    struct Result: Codable {
        var label: String
        var kicks: Int
        var measured: Int
        var ownerNode: String
        var latencyMilliseconds: [String: Double]
        var machine: String
    }

    func run() async throws {
        guard kicks >= 1 else { throw ValidationError("--kicks must be at least 1") }
        let logins = Logins(connection: connection, options: try connection.clientOptions())
        let clients = try await logins.all(count: kicks + 1, counters: LiveCounters())
        defer { Task { await Logins.closeAll(clients) } }
        let room = "kick-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))@\(connection.muc)"
        if case .failure(let error) = await Joins.join(clients[0], room: room, nick: "o0", create: true) {
            throw ValidationError("creating \(room) failed: \(error)")
        }
        for index in 1...kicks {
            if case .failure(let error) = await Joins.join(clients[index], room: room, nick: "o\(index)", create: false) {
                throw ValidationError("joining \(room) failed: \(error)")
            }
        }

        var logger = Logger(label: "conclave-bench")
        logger.logLevel = .warning
        let database = PostgresClient(configuration: try DatabaseURL.configuration(databaseURL), backgroundLogger: logger)
        let (owner, latencies) = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await database.run() }
            defer { group.cancelAll() }
            var owner: String?
            for try await node in try await database.query("SELECT node FROM room_owners WHERE room = \(room)", logger: logger).decode(String?.self) {
                owner = node
            }
            guard let owner else { throw ValidationError("\(room) has no owner node in room_owners: is this Conclave's cluster database?") }
            var latencies: [UInt64] = []
            for index in 1...kicks {
                let user = "\(connection.userPrefix)\(index + 1)@\(connection.domain)"
                var home: String?
                for try await node in try await database.query("SELECT node FROM sessions WHERE bare = \(user)", logger: logger).decode(String.self) {
                    home = node
                }
                guard let home, home != owner else { continue }
                let started = monotonicNanoseconds()
                try await database.query(
                    """
                    INSERT INTO room_affiliations (room, jid, affiliation, reason) VALUES (\(room), \(user), 'outcast', 'bench')
                    ON CONFLICT (room, jid) DO UPDATE SET affiliation = 'outcast', updated_at = now()
                    """,
                    logger: logger
                )
                let full = "\(room)/o\(index)"
                while true {
                    let element = try await clients[index].nextElement(timeout: .seconds(30))
                    guard element.name == "presence", element[attribute: "from"] == full, element.type == "unavailable" else { continue }
                    let statuses = element.child("x", namespace: Namespace.mucUser)?.children("status", namespace: Namespace.mucUser)
                        .compactMap { $0[attribute: "code"] } ?? []
                    guard statuses.contains("301") else { throw ValidationError("\(user) left \(room) without status 301") }
                    latencies.append(monotonicNanoseconds() - started)
                    break
                }
            }
            return (owner, latencies)
        }
        guard !latencies.isEmpty else { throw ValidationError("no occupant was on another node than the owner \(owner): give several --server nodes") }
        let result = Result(
            label: label, kicks: kicks, measured: latencies.count, ownerNode: owner, latencyMilliseconds: percentiles(latencies),
            machine: Machine.description
        )
        let values = result.latencyMilliseconds
        print(
            "\(label): \(latencies.count) kicks at occupants on other nodes than the owner (\(owner)): "
                + String(format: "p50 %.2f ms, p90 %.2f ms, max %.2f ms", values["p50"] ?? .nan, values["p90"] ?? .nan, values["max"] ?? .nan)
        )
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(result).write(to: URL(fileURLWithPath: json))
        }
    }
}
