import ArgumentParser
import ClusterTestSupport
import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

@main
struct ChaosCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conclave-chaos",
        abstract:
            "The churn harness: real nodes started, stopped, killed, paused, drained and resized over one reused database while clients talk, with checks after every step.",
        discussion: """
            Over one database that is not fresh (default: conclave_chaos on the embedded \
            PostgreSQL of deploy/local/db.sh, created when missing, never dropped), it starts \
            `conclave serve` nodes node1…nodeN and runs a random sequence of steps (start, \
            SIGTERM, kill -9, SIGSTOP past the lease, restart under the same name, resize \
            1 → 3 → 2 → 4 → 1, PostgreSQL restart, node drain, affiliation changes by CLI and \
            SQL), while clients join and leave rooms, talk, change nicks, configure rooms \
            and change affiliations. After every step it checks that every request to a \
            room is answered, every accepted message reaches every occupant on a live node \
            once and in order, fencing epochs only grow, committed affiliations and \
            configuration hold, dead nodes' occupants leave and nobody else does, and the \
            seed passes. The seed of the run is printed first: --seed N replays the same \
            choices. Exit status 1 at the first failure. Node logs: .conclave/chaos/run-*/.
            """
    )

    @Option(help: "Seed of the random choices (default: a random one, printed).") var seed: UInt64?
    @Option(help: "Number of steps (default 20 when --duration is not given either).") var steps: Int?
    @Option(help: "Seconds after which no new step starts.") var duration: Double?
    @Option(help: "Nodes at most (node1 … nodeN).") var maxNodes = 4
    @Option(help: "Client accounts (chaos1@localhost …) that connect to the nodes.") var clients = 6
    @Option(help: "PostgreSQL URL of the database to churn (default: conclave_chaos on the embedded server).")
    var databaseURL: String?
    @Option(
        help: "Seconds within which every join, IQ and message must be answered and every accepted message delivered.")
    var bound = 10.0
    @Option(
        help:
            "Seconds a room may answer with transient errors (wait, service-unavailable) before it counts as unusable.")
    var recovery = 30.0
    @Option(help: "The nodes' lease (seconds).") var leaseSeconds = 2.0
    @Option(help: "The nodes' heartbeat interval (seconds).") var heartbeatSeconds = 0.5
    @Option(help: "The nodes' log level (debug traces room input when replaying a finding).") var nodeLogLevel = "info"
    @Flag(
        help:
            "Never restart PostgreSQL (restarts happen only on the embedded server: they disturb everyone who uses it)."
    )
    var noPostgresRestart = false
    @Option(help: "Only these kinds of step (comma-separated): \(Operation.kinds.joined(separator: ", ")).")
    var operations: String?
    @Option(help: "The embedded PostgreSQL's script.") var dbScript = "deploy/local/db.sh"
    @Option(help: "Where the runs' node logs go.") var workDir = ".conclave/chaos"
    @Option(
        help:
            "The seed scenario run after every step (default: ../shared/seed/muc_members_only_change.scs, else spec/seed/)."
    )
    var seedScript: String?

    func validate() throws {
        guard (1...4).contains(maxNodes) else { throw ValidationError("--max-nodes must be 1 to 4") }
        guard (2...9).contains(clients) else { throw ValidationError("--clients must be 2 to 9") }
        if let operations {
            let unknown = operations.split(separator: ",").map(String.init).filter { !Operation.kinds.contains($0) }
            guard unknown.isEmpty else {
                throw ValidationError(
                    "unknown operations \(unknown); known: \(Operation.kinds.joined(separator: ", "))")
            }
        }
        guard bound > 0, recovery > 0, leaseSeconds > 0, heartbeatSeconds > 0 else {
            throw ValidationError("durations must be positive")
        }
    }

    func run() async throws {
        let root = FileManager.default.currentDirectoryPath
        let binDirectory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .path
        for tool in ["conclave", "conclave-spec"]
        where !FileManager.default.isExecutableFile(atPath: binDirectory + "/" + tool) {
            throw ChaosError("\(binDirectory)/\(tool) not found: build it first (swift build)")
        }
        func absolute(_ path: String) -> String { path.hasPrefix("/") ? path : root + "/" + path }
        let script = absolute(dbScript)
        let seedScript =
            self.seedScript.map(absolute)
            ?? [root + "/../shared/seed/muc_members_only_change.scs", root + "/spec/seed/muc_members_only_change.scs"]
            .first {
                FileManager.default.fileExists(atPath: $0)
            }
        guard let seedScript, FileManager.default.fileExists(atPath: seedScript) else {
            throw ChaosError("the seed script muc_members_only_change.scs was not found (--seed-script)")
        }
        let workDirectory = absolute(workDir)
        try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)

        // The database: conclave_chaos on the embedded server unless told otherwise.
        var startedPostgres = false
        let url: PostgresURL
        let embedded: Bool
        let embeddedURL = try? PostgresURL(
            try await ChildProcess.run(script, ["url"], directory: workDirectory, keepConclaveVariables: true).output
                .trimmingCharacters(in: .whitespacesAndNewlines))
        if let databaseURL {
            url = try PostgresURL(databaseURL)
            embedded =
                embeddedURL.map { $0.port == url.port && ["127.0.0.1", "localhost", "::1"].contains(url.host) } ?? false
        } else {
            guard let embeddedURL else { throw ChaosError("\(script) url did not print a URL") }
            if try await ChildProcess.run(script, ["status"], directory: workDirectory, keepConclaveVariables: true).status
                != 0
            {
                let start = try await ChildProcess.run(
                    script, ["start"], directory: workDirectory, keepConclaveVariables: true)
                guard start.status == 0 else { throw ChaosError("\(start)") }
                startedPostgres = true
            }
            url = embeddedURL.with(database: "conclave_chaos")
            embedded = true
        }

        let settings = ChaosSettings(
            seed: seed ?? UInt64.random(in: 1...999_999_999), steps: steps ?? (duration == nil ? 20 : nil),
            duration: duration,
            maxNodes: maxNodes, clientCount: clients, databaseURL: databaseURL, bound: bound, recovery: recovery,
            leaseSeconds: leaseSeconds, heartbeatSeconds: heartbeatSeconds, nodeLogLevel: nodeLogLevel, postgresRestarts: !noPostgresRestart,
            operations: operations.map { Set($0.split(separator: ",").map(String.init)) }, root: root,
            dbScript: script, workDirectory: workDirectory, binDirectory: binDirectory, seedScript: seedScript
        )
        let chaos = try Chaos(settings: settings, url: url, embedded: embedded)
        chaos.postgresStartedByUs = startedPostgres
        let interrupts = Self.killNodesOnInterrupt(chaos.nodes)
        let status = await chaos.run()
        interrupts.forEach { $0.cancel() }
        if status != 0 { throw ExitCode(status) }
    }

    /// Ctrl-C or SIGTERM: the nodes this run started are killed before the harness exits.
    static func killNodesOnInterrupt(_ nodes: Nodes) -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                for node in nodes.running {
                    node.child.signal(SIGCONT)
                    node.child.signal(SIGKILL)
                }
                print("chaos: interrupted; the nodes were killed")
                Glibc.exit(130)
            }
            source.resume()
            return source
        }
    }
}
