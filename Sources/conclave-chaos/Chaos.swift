import ClusterTestSupport
import Foundation
import PostgresNIO
import XMPPCore

#if canImport(Glibc)
    import Glibc
#endif

/// The settings of one run (`conclave-chaos --help` describes them).
struct ChaosSettings {
    var seed: UInt64
    var steps: Int?
    var duration: Double?
    var maxNodes: Int
    var clientCount: Int
    var databaseURL: String?
    /// Seconds within which a join, an IQ, a message must be answered and a delivery arrive.
    var bound: Double
    /// Seconds a room may stay unusable (transient errors) after an operation.
    var recovery: Double
    var leaseSeconds: Double
    var heartbeatSeconds: Double
    var nodeLogLevel: String
    var postgresRestarts: Bool
    /// The kinds of operation steps may use (`nil`: all).
    var operations: Set<String>?
    var root: String
    var dbScript: String
    var workDirectory: String
    var binDirectory: String
    var seedScript: String
}

/// One run of the churn harness: the nodes, the clients, the model of what was committed,
/// and the counters. Used from the main task only (the background load and the epoch
/// poller work on the Sendable `ChaosClient`s and `EpochWatch`).
final class Chaos {
    let settings: ChaosSettings
    let url: PostgresURL
    let sql: SQL
    let embedded: Bool
    let runDirectory: String
    let runTag: String
    let nodes: Nodes
    let epochs: EpochWatch
    var clients: [ChaosClient] = []
    var world = World()
    let started = ContinuousClock.now
    let traceFile: FileHandle?

    var step = 0
    var checks = 0
    /// What the current step did (its line of output).
    var action = "setup"
    /// Nodes the current step stopped, killed, paused or restarted: their clients may
    /// lose their streams; anyone else's stream ending is a failure.
    var affected: Set<String> = []
    /// Node names the current step shut down gracefully (their rooms' occupants may get 332).
    var gracefullyStopped: Set<String> = []
    var resizeIndex = 0
    var temporaryCount = 0
    var membershipCount = 0
    var postgresStartedByUs = false
    var iqCount = 0
    /// Joins refused with a transient error and tried again; messages refused.
    var transientRefusals = 0
    var refusedMessages = 0
    var seedRuns = 0
    var removals = 0
    /// Temporary rooms whose last occupant left: they must leave the rooms table.
    var vanishing: [String] = []
    /// Nick → how its membership ended (for the roster check's messages).
    var closed: [String: String] = [:]
    var indexes: [ObjectIdentifier: SessionIndex] = [:]
    /// Room → when the CLI or SQL last changed it (rooms apply such changes when NOTIFY
    /// tells them, a few milliseconds later).
    var changedOutside: [String: ContinuousClock.Instant] = [:]
    /// Membership id → how far its session's log was searched for its end.
    var audited: [Int: Int] = [:]
    /// Membership id → its room as its session saw it so far (event index reached, nicks).
    var views: [Int: (Int, Set<String>)] = [:]
    /// Nicks removed without the others being told (322): not looked for in their views.
    var unannounced: Set<String> = []
    /// Room → occupants whose stream ended (nick, client label): until their rooms learn
    /// that their node is gone they are still in, and a members-only switch may remove a
    /// non-member among them with 322 — told to nobody else, like any 322.
    var endedInRoom: [String: [(nick: String, label: String)]] = [:]

    var bound: Duration { .milliseconds(Int64(settings.bound * 1000)) }
    /// When the PostgreSQL restart grace ends (every registered node counts as alive for
    /// 10 s after PostgreSQL starts, migration 0005: a node killed meanwhile is declared
    /// dead only after it, and what waits for it waits that long).
    var graceEnds: ContinuousClock.Instant?
    /// The bound for answers and deliveries: the bound, plus what is left of the grace.
    var answerBound: Duration {
        guard let graceEnds, graceEnds > .now else { return bound }
        return bound + (graceEnds - .now)
    }
    var recovery: Duration { .milliseconds(Int64(settings.recovery * 1000)) }
    var lease: Duration { .milliseconds(Int64(settings.leaseSeconds * 1000)) }

    static let persistentRooms = [
        "chaos-p1@conference.localhost", "chaos-p2@conference.localhost", "chaos-p3@conference.localhost",
    ]
    static let ghosts = ["ghost1@localhost", "ghost2@localhost"]
    static let password = "chaos-password"

    init(settings: ChaosSettings, url: PostgresURL, embedded: Bool) throws {
        self.settings = settings
        self.url = url
        self.sql = SQL(url: url)
        self.embedded = embedded
        let stamp = ISO8601DateFormatter.string(
            from: Date(), timeZone: .current, formatOptions: [.withYear, .withMonth, .withDay, .withTime]
        )
        .replacingOccurrences(of: ":", with: "")
        runDirectory = settings.workDirectory + "/run-\(stamp)-seed\(settings.seed)"
        try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: runDirectory + "/harness.log", contents: nil)
        traceFile = FileHandle(forWritingAtPath: runDirectory + "/harness.log")
        // Nicks and temporary rooms carry a tag of this run: a room's occupant or a room
        // left over from an earlier run is told apart from this run's.
        runTag = String(UInt32.random(in: 0...UInt32.max) % 46656, radix: 36)
        let secretFile = settings.workDirectory + "/cluster-secret"
        if !FileManager.default.fileExists(atPath: secretFile) {
            let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
            _ = FileManager.default.createFile(
                atPath: secretFile, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600])
        }
        nodes = Nodes(
            conclave: settings.binDirectory + "/conclave", directory: runDirectory, databaseURL: url,
            secretFile: secretFile,
            leaseSeconds: settings.leaseSeconds, heartbeatSeconds: settings.heartbeatSeconds,
            logLevel: settings.nodeLogLevel, count: settings.maxNodes
        )
        epochs = EpochWatch(sql: SQL(url: url))
    }

    func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
        trace(line)
    }

    /// A line in the run's harness.log (every action of the harness, timestamped like
    /// the node logs, to read next to them after a failure).
    func trace(_ line: String) {
        let stamp = Self.stampFormatter.string(from: Date())
        traceFile?.write(Data("\(stamp) step \(step): \(line)\n".utf8))
    }

    static let stampFormatter: DateFormatter = {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ss.SSS"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter
    }()

    /// Counts `n` checks that passed.
    func passed(_ n: Int = 1) { checks += n }

    // MARK: - The run

    /// Runs the steps; returns the exit status.
    func run() async -> Int32 {
        say(
            "chaos: seed \(settings.seed), database \(url) (\(embedded ? "embedded server" : "external server")), logs in \(runDirectory)"
        )
        do {
            var rng = SeededRandom.step(0, of: settings.seed)
            try await setUp(&rng)
            try await verify(&rng)
            report(duration: ContinuousClock.now - started)
            var number = 0
            while true {
                number += 1
                if let steps = settings.steps, number > steps { break }
                if let duration = settings.duration, (ContinuousClock.now - started).seconds >= duration { break }
                step = number
                let stepStart = ContinuousClock.now
                let before = checks
                let watchdog = stepWatchdog(number)
                try await runStep(number)
                watchdog.cancel()
                report(duration: ContinuousClock.now - stepStart, checks: checks - before)
            }
            try await finish()
            printFigures()
            say(
                "chaos: seed \(settings.seed), \(step) steps, \(checks) checks, 0 failures, \(Int((ContinuousClock.now - started).seconds)) s"
            )
            return 0
        } catch {
            await fail(error)
            return 1
        }
    }

    func report(duration: Duration, checks stepChecks: Int? = nil) {
        let live = nodes.running.map { $0.name.replacingOccurrences(of: "node", with: "") }.joined(separator: ",")
        let nodesColumn = "[" + live + "]" + String(repeating: " ", count: max(0, 9 - live.count - 2))
        say(
            String(format: "step %3d %6.1f s %5d checks ", step, duration.seconds, stepChecks ?? checks) + nodesColumn
                + " " + action)
    }

    /// Lines of the node logs worth counting: how often fencing refused a stale owner's
    /// write, room input waited too long, a node lost its lease, a link was missing.
    static let countedLogLines = [
        ("stale owner: write refused", "fenced writes refused"),
        ("room input waited too long", "room inputs refused after waiting"),
        ("gave up activating a room", "activations given up"), ("lease lost: this node", "leases lost"),
        ("no link to node", "'no link to node'"), (" error conclave:", "error lines"),
    ]

    /// What the clients did, in figures.
    func printFigures() {
        var counts = Array(repeating: 0, count: Self.countedLogLines.count)
        for path in (try? FileManager.default.contentsOfDirectory(atPath: runDirectory)) ?? []
        where path.hasSuffix(".log") && path.hasPrefix("node") {
            let log = (try? String(contentsOfFile: runDirectory + "/" + path, encoding: .utf8)) ?? ""
            for line in log.split(separator: "\n") {
                for (index, (text, _)) in Self.countedLogLines.enumerated() where line.contains(text) {
                    counts[index] += 1
                }
            }
        }
        say("chaos: node logs: " + zip(Self.countedLogLines, counts).map { "\($1) \($0.1)" }.joined(separator: ", "))
        let sent = clients.flatMap(\.sent)
        let sessions = clients.map { $0.sessions.count }.reduce(0, +)
        say(
            "chaos: \(sent.count) messages sent (\(sent.filter(\.echoed).count) accepted, \(refusedMessages) refused), \(membershipCount) joins (\(transientRefusals) transient refusals retried), \(sessions) client sessions, \(seedRuns) seed runs, \(removals) removals by affiliation or configuration, highest epoch \(epochs.maxEpoch)"
        )
    }

    /// Every wait of a step has its own bound; a step that still does not end (an await
    /// that never returns) must not hang the run: after `stepLimit` the harness reports it,
    /// kills the nodes and exits 1. The last lines of harness.log say what it waited for.
    func stepWatchdog(_ number: Int) -> Task<Void, Never> {
        let (nodes, seed, directory) = (self.nodes, settings.seed, runDirectory)
        let limit = Self.stepLimit
        return Task.detached {
            guard (try? await Task.sleep(for: limit)) != nil else { return }
            let line = "chaos: FAILED at step \(number): the step did not finish within \(Int(limit.seconds)) s "
                + "(the harness awaits something that never comes; the end of \(directory)/harness.log says what); "
                + "replay with --seed \(seed) --steps \(number)\n"
            FileHandle.standardOutput.write(Data(line.utf8))
            dumpThreads(to: directory + "/harness-threads.txt")
            await nodes.killAll()
            exit(1)
        }
    }

    static let stepLimit: Duration = .seconds(300)

    /// The first failure: what failed, how to replay it, and the end of every node's log.
    func fail(_ error: any Error) async {
        let what = error is CheckFailure ? "FAILED" : "STOPPED (harness error)"
        say("chaos: \(what) at step \(step) (\(action)): \(error)")
        // The same options, with this seed and as many steps as it took.
        var options: [String] = []
        var arguments = CommandLine.arguments.dropFirst().makeIterator()
        while let argument = arguments.next() {
            if ["--seed", "--steps", "--duration"].contains(argument) {
                _ = arguments.next()
            } else if !["--seed=", "--steps=", "--duration="].contains(where: { argument.hasPrefix($0) }) {
                options.append(argument)
            }
        }
        let replay = (["conclave-chaos"] + options + ["--seed", "\(settings.seed)", "--steps", "\(max(step, 1))"])
            .joined(separator: " ")
        say("chaos: replay with: \(replay)   (the database is not fresh: a replay starts from what this run left)")
        say("chaos: what the harness did: \(runDirectory)/harness.log")
        for node in nodes.latest {
            let state = node.isRunning ? (node.paused ? "paused" : "running") : "exited \(node.child.exitStatus ?? -1)"
            say("---- \(node.name) (\(state), \(node.logPath)), last 30 lines:\n\(node.tail(30))")
        }
        await shutDown()
        printFigures()
        say(
            "chaos: seed \(settings.seed), \(max(step - 1, 0)) steps, \(checks) checks, 1 failure, \(Int((ContinuousClock.now - started).seconds)) s"
        )
    }

    /// The end of a successful run: the nodes stop as the seed says (SIGTERM, or kill -9,
    /// leaving occupants and owner rows for the next run to start from).
    func finish() async throws {
        var rng = SeededRandom.step(Int.max, of: settings.seed)
        let kill = rng.chance(0.5)
        say(
            "chaos: leaving the cluster \(kill ? "killed (kill -9, clients connected)" : "stopped (SIGTERM)") for the next run"
        )
        if !kill {
            // A graceful stop is checked like any other (each node exits 0 within the bound).
            for client in clients { await client.session?.close(timeout: .seconds(2)) }
            for node in nodes.running { try await nodes.stop(node.name) }
        }
        await shutDown()
    }

    /// Kills what still runs, drops the clients, and stops PostgreSQL if this run started it.
    func shutDown() async {
        await nodes.killAll()
        for client in clients { await client.session?.drop() }
        if postgresStartedByUs {
            _ = try? await ChildProcess.run(settings.dbScript, ["stop"], directory: runDirectory, keepConclaveVariables: true)
        }
    }

    // MARK: - Setting up

    func setUp(_ rng: inout SeededRandom) async throws {
        Nodes.killLeftovers(in: settings.workDirectory, database: url.database, count: settings.maxNodes)
        try await createDatabase()
        let conclave = settings.binDirectory + "/conclave"
        for arguments in [
            ["migrate"],
            ["user", "add-from-scripts", settings.seedScript],
        ] {
            let result = try await ChildProcess.run(
                conclave, arguments + ["--database-url", url.description, "--log-level", "warning"],
                directory: runDirectory)
            guard result.status == 0 else { throw ChaosError("\(result)") }
        }
        let accounts = runDirectory + "/accounts.txt"
        try (1...settings.clientCount).map { "chaos\($0)@localhost\t\(Self.password)" }.joined(separator: "\n")
            .appending("\n").write(toFile: accounts, atomically: true, encoding: .utf8)
        let added = try await ChildProcess.run(
            conclave, ["user", "add-from-file", accounts, "--database-url", url.description, "--log-level", "warning"],
            directory: runDirectory
        )
        guard added.status == 0 else { throw ChaosError("\(added)") }

        graceEnds = .now + .milliseconds(Int64(try await sql.restartGraceLeft() * 1000))
        // What earlier runs left.
        let owners = try await sql.owners()
        epochs.observe(owners, context: "at the start of the run")
        let nodeRows = try await sql.rows(
            "SELECT name, incarnation, state FROM cluster_nodes ORDER BY name", as: (String, Int64, String).self)
        let occupants = try await sql.scalar("SELECT count(*)::int8 FROM room_occupants", as: Int64.self) ?? 0
        let roomCount = try await sql.scalar("SELECT count(*)::int8 FROM rooms", as: Int64.self) ?? 0
        say(
            "chaos: the database holds \(roomCount) rooms, \(owners.count) owner rows (highest epoch \(epochs.maxEpoch)), \(occupants) occupant rows, nodes "
                + (nodeRows.isEmpty ? "none" : nodeRows.map { "\($0.0)#\($0.1) \($0.2)" }.joined(separator: ", "))
        )

        world.managedJIDs = (1...settings.clientCount).map { "chaos\($0)@localhost" } + Self.ghosts
        let stored = try await sql.rooms(Self.persistentRooms)
        let affiliations = try await sql.affiliations(of: Self.persistentRooms)
        for room in Self.persistentRooms {
            // A row that is not a configured persistent room (an earlier run stopped between
            // a room's creation and its configuration) is repaired by c1 below.
            var model = World.Room(
                jid: room, persistent: true, exists: stored[room].map { $0.persistent && !$0.locked } ?? false)
            if let row = stored[room], model.exists {
                model.membersOnly = row.membersOnly
                model.name = row.name
                model.affiliations = (affiliations[room] ?? [:]).filter { world.managedJIDs.contains($0.key) }
            }
            world.rooms[room] = model
        }

        clients = (1...settings.clientCount).map { index in
            ChaosClient(
                label: "c\(index)", account: try! JID("chaos\(index)@localhost"), password: Self.password,
                runTag: runTag)
        }

        // The first nodes: as many as the seed says.
        let count = Int.random(in: 1...settings.maxNodes, using: &rng)
        let names = Array(nodes.names.shuffled(using: &rng).prefix(count)).sorted()
        action = "start \(names.joined(separator: ", "))"
        try await startNodes(names)

        for client in clients { try await reconnect(client, rng: &rng) }
        // The persistent rooms: created by c1 when missing; c1 owns them.
        let owner = clients[0]
        for room in Self.persistentRooms {
            if world.rooms[room]?.exists == true {
                if world.affiliation(of: owner.bare, in: room) != "owner" {
                    try await setAffiliationByCLI(room: room, jid: owner.bare, affiliation: "owner")
                }
            } else {
                try await createRoom(room, by: owner, persistent: true, mayExist: stored[room] != nil)
                if stored[room] != nil {
                    // Repaired: its affiliations are what the earlier run stored.
                    let found = try await sql.affiliations(of: [room])[room] ?? [:]
                    world.rooms[room]?.affiliations = found.filter { world.managedJIDs.contains($0.key) }
                }
            }
        }
        // Everyone wants to be in the rooms it may enter, more or less.
        for client in clients {
            for room in Self.persistentRooms where rng.chance(0.6) || client === owner {
                if case .enters = world.expectation(joining: room, as: client.bare) { client.wants.insert(room) }
            }
            try await joinWanted(client)
        }
    }

    /// The chaos database on the server: created when missing, never dropped.
    private func createDatabase() async throws {
        let admin = SQL(url: url.with(database: "postgres"))
        let exists = try await admin.scalar(
            "SELECT 1::int8 FROM pg_database WHERE datname = \(url.database)", as: Int64.self)
        if exists == nil {
            guard url.database.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw ChaosError(
                    "the database \(url.database) does not exist, and its name is not one this harness creates")
            }
            try await admin.execute(PostgresQuery(unsafeSQL: "CREATE DATABASE \(url.database)"))
            say(
                "chaos: created the database \(url.database) (it is kept: the next run starts from what this one leaves)"
            )
        }
    }

    func startNodes(_ names: [String]) async throws {
        trace("starting \(names.joined(separator: ", "))")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for name in names { group.addTask { [nodes] in _ = try await nodes.start(name) } }
            try await group.waitForAll()
        }
        trace(
            "ready: "
                + names.compactMap { nodes.node($0) }.map {
                    "\($0.name) pid \($0.child.pid) port \($0.port) (\($0.logPath.split(separator: "/").last ?? ""))"
                }.joined(separator: ", "))
    }
}

/// Every thread's stack of this process, by gdb when it is installed: what a stuck
/// step waits for (a lock taken twice, a blocked thread) is in the file.
func dumpThreads(to path: String) {
    guard let gdb = ["/usr/bin/gdb", "/usr/local/bin/gdb"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })
    else { return }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: gdb)
    process.arguments = ["-p", String(getpid()), "-batch", "-ex", "thread apply all bt"]
    FileManager.default.createFile(atPath: path, contents: nil)
    guard let output = FileHandle(forWritingAtPath: path) else { return }
    process.standardOutput = output
    process.standardError = output
    do {
        try process.run()
        process.waitUntilExit()
        FileHandle.standardOutput.write(Data("chaos: the harness's threads: \(path)\n".utf8))
    } catch {
        FileHandle.standardOutput.write(Data("chaos: could not run gdb: \(error)\n".utf8))
    }
}
