import ClusterTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization
import Testing
import XMPPCore
import XMPPStream

#if canImport(Glibc)
import Glibc
#endif

// The harness of the multi-process cluster tests: real `conclave serve` processes on
// loopback, one fresh PostgreSQL database per test, real XMPP clients, the CLI, SQL.
//
// These tests start and kill processes and one of them restarts the embedded
// PostgreSQL server: run this target alone, after every other test, one test at a time:
//     swift test --skip-build --filter ClusterProcessTests --no-parallel

/// Every scenario is a suite nested in this one, so that they all run one after the other.
@Suite(.serialized, .enabled(if: ClusterTestEnvironment.enabled, "needs CONCLAVE_TEST_DATABASE_URL"))
struct ClusterProcessTests {}

enum ClusterTestEnvironment {
    static let baseDatabaseURL = ProcessInfo.processInfo.environment["CONCLAVE_TEST_DATABASE_URL"]
    static var enabled: Bool { baseDatabaseURL != nil }

    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static var conclave: String { root + "/.build/debug/conclave" }
    static var conclaveSpec: String { root + "/.build/debug/conclave-spec" }
    static var conclaveBench: String { root + "/.build/debug/conclave-bench" }
    static var dbScript: String { root + "/deploy/local/db.sh" }

    /// `../shared/seed` next to the repository, else the copy in `spec/seed`.
    static var seedDirectory: String {
        let shared = URL(fileURLWithPath: root).deletingLastPathComponent().appendingPathComponent("shared/seed").path
        return FileManager.default.fileExists(atPath: shared) ? shared : root + "/spec/seed"
    }

    /// Where the logs of the nodes go: one directory per test.
    static let scratch: String = {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("conclave-cluster-tests").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    static let logger: Logger = {
        var logger = Logger(label: "cluster-tests")
        logger.logLevel = .critical
        return logger
    }()

    /// CONCLAVE_TEST_DATABASE_URL is on the server `deploy/local/db.sh` runs (same port, loopback).
    static let embeddedServer: Bool = {
        guard let text = ClusterTestEnvironment.baseDatabaseURL, let base = try? PostgresURL(text) else { return false }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [ClusterTestEnvironment.dbScript, "url"]
        process.environment = ProcessInfo.processInfo.environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
            let embedded = try? PostgresURL(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        else { return false }
        return embedded.port == base.port && ["127.0.0.1", "localhost", "::1"].contains(base.host)
    }()

    /// The environment for child processes: no CONCLAVE_* variable of ours leaks in.
    static var childEnvironment: [String: String] {
        ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CONCLAVE_") }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Prints a line to standard output at once (the FIGURE lines, log paths).
func report(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Polls `body` until it returns a value; fails after `timeout` with `what` and the last error.
@discardableResult
func eventually<T>(
    _ what: String,
    timeout: Duration = .seconds(10),
    every interval: Duration = .milliseconds(50),
    _ body: () async throws -> T?
) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    var lastError: (any Error)?
    while true {
        do {
            if let value = try await body() { return value }
            lastError = nil
        } catch {
            lastError = error
        }
        if ContinuousClock.now >= deadline {
            throw TestFailure("timed out after \(timeout) waiting for \(what)" + (lastError.map { " (last error: \($0))" } ?? ""))
        }
        try await Task.sleep(for: interval)
    }
}

extension Duration {
    var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}

// MARK: - PostgreSQL

// The cluster's tables, as the tests read them (`SQL` is in ClusterTestSupport).
extension SQL {
    /// (owner node, epoch) of a room in `room_owners`; `nil` when it has no row.
    func owner(of room: String) async throws -> (node: String?, epoch: Int64)? {
        try await rows("SELECT node, epoch FROM room_owners WHERE room = \(room)", as: (String?, Int64).self).first.map {
            (node: $0.0, epoch: $0.1)
        }
    }

    /// Every room in `room_owners` whose JID starts with `prefix`: room → (node, epoch).
    func owners(prefix: String) async throws -> [String: (node: String?, epoch: Int64)] {
        var result: [String: (node: String?, epoch: Int64)] = [:]
        for (room, node, epoch) in try await rows(
            "SELECT room, node, epoch FROM room_owners WHERE room LIKE \(prefix + "%")", as: (String, String?, Int64).self
        ) {
            result[room] = (node, epoch)
        }
        return result
    }

    func subject(of room: String) async throws -> String? {
        try await scalar("SELECT subject FROM rooms WHERE jid = \(room)", as: String.self)
    }

    func occupantCount(of room: String) async throws -> Int {
        try await scalar("SELECT count(*)::int8 FROM room_occupants WHERE room = \(room)", as: Int64.self).map(Int.init) ?? 0
    }

    func affiliation(of jid: String, in room: String) async throws -> String? {
        try await scalar("SELECT affiliation FROM room_affiliations WHERE room = \(room) AND jid = \(jid)", as: String.self)
    }

    func history(of room: String) async throws -> [String] {
        try await rows("SELECT stanza FROM room_history WHERE room = \(room) ORDER BY id", as: String.self)
    }
}

// MARK: - Processes

/// The outcome of a command run to its end.
struct CommandResult: Sendable, CustomStringConvertible {
    var status: Int32
    var output: String
    var errors: String
    var command: String

    var description: String { "`\(command)` exited \(status)\nstdout:\n\(output)\nstderr:\n\(errors)" }
}

/// Runs a program to its end (at most `timeout`), with its output in files under `directory`.
func runCommand(
    _ executable: String, _ arguments: [String], directory: String, timeout: Duration = .seconds(60)
) async throws -> CommandResult {
    let id = UUID().uuidString.prefix(8)
    let outPath = "\(directory)/cmd-\(id).out"
    let errPath = "\(directory)/cmd-\(id).err"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    defer {
        try? out.close()
        try? err.close()
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ClusterTestEnvironment.childEnvironment
    process.currentDirectoryURL = URL(fileURLWithPath: ClusterTestEnvironment.root)
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = out
    process.standardError = err
    let exit = ProcessExit()
    process.terminationHandler = { process in exit.finish(process.terminationStatus) }
    try process.run()
    let command = ([executable] + arguments).joined(separator: " ")
    guard let status = try await exit.wait(timeout: timeout) else {
        process.terminate()
        _ = try? await exit.wait(timeout: .seconds(5))
        throw TestFailure("`\(command)` did not finish within \(timeout)")
    }
    let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let errors = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    try? FileManager.default.removeItem(atPath: outPath)
    try? FileManager.default.removeItem(atPath: errPath)
    return CommandResult(status: status, output: output, errors: errors, command: command)
}

/// The exit status of a child, once it has exited.
final class ProcessExit: Sendable {
    private let status = Mutex<Int32?>(nil)

    func finish(_ value: Int32) { status.withLock { $0 = value } }
    var value: Int32? { status.withLock { $0 } }

    /// The exit status, or `nil` if the process still runs after `timeout`.
    func wait(timeout: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let value { return value }
            try await Task.sleep(for: .milliseconds(20))
        }
        return value
    }
}

/// One `conclave serve` process.
final class NodeProcess: Sendable {
    let name: String
    let logPath: String
    let process: Process
    let exit: ProcessExit
    /// The c2s port it logged in its "node ready" line.
    let port: Int
    let link: String
    /// The port of /metrics (from the "node ready" line), if it serves HTTP.
    let http: Int?

    init(name: String, logPath: String, process: Process, exit: ProcessExit, port: Int, link: String, http: Int? = nil) {
        self.http = http
        self.name = name
        self.logPath = logPath
        self.process = process
        self.exit = exit
        self.port = port
        self.link = link
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { exit.value == nil }
    var address: String { "127.0.0.1:\(port)" }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func signal(_ signal: Int32) {
        guard isRunning else { return }
        _ = kill(pid, signal)
    }

    /// Waits for a log line containing `text`, after `skipping` bytes of the log.
    func waitForLog(_ text: String, after offset: Int = 0, timeout: Duration = .seconds(10)) async throws -> String {
        try await eventually("'\(text)' in the log of \(name) (\(logPath))", timeout: timeout) {
            let log = self.log
            let tail = log.utf8.count > offset ? String(decoding: Array(log.utf8)[offset...], as: UTF8.self) : ""
            return tail.split(separator: "\n").first { $0.contains(text) }.map(String.init)
        }
    }

    var logSize: Int { log.utf8.count }
}

// MARK: - The cluster of one test

/// The nodes, database, accounts and clients of one test. Use `Cluster.run`.
final class Cluster: Sendable {
    let test: String
    let directory: String
    let url: PostgresURL
    let baseURL: PostgresURL
    let sql: SQL
    let secretFile: String
    let leaseSeconds: Double
    let heartbeatSeconds: Double
    private let state = Mutex(State())

    struct State {
        var nodes: [String: NodeProcess] = [:]
        var sessions: [Session] = []
        var restarts: [String: Int] = [:]
        /// The accounts made by `addUser` (for the diagnosis' login probe).
        var accounts: [(String, String)] = []
    }

    private init(test: String, directory: String, url: PostgresURL, baseURL: PostgresURL, leaseSeconds: Double, heartbeatSeconds: Double) {
        self.test = test
        self.directory = directory
        self.url = url
        self.baseURL = baseURL
        self.sql = SQL(url: url)
        self.secretFile = directory + "/cluster-secret"
        self.leaseSeconds = leaseSeconds
        self.heartbeatSeconds = heartbeatSeconds
    }

    /// Creates the test's database and directory, starts `nodes` nodes (node1 …), runs
    /// `body`, and always kills the nodes and drops the database. On failure the node
    /// logs' paths and last lines are printed.
    static func run(
        test: String,
        nodes count: Int,
        leaseSeconds: Double = 2,
        heartbeatSeconds: Double = 0.5,
        _ body: (Cluster) async throws -> Void
    ) async throws {
        guard let base = ClusterTestEnvironment.baseDatabaseURL else { throw TestFailure("CONCLAVE_TEST_DATABASE_URL is not set") }
        let baseURL = try PostgresURL(base)
        guard FileManager.default.isExecutableFile(atPath: ClusterTestEnvironment.conclave) else {
            throw TestFailure("\(ClusterTestEnvironment.conclave) not found: run `swift build --build-tests` first")
        }
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let name = "cpt_\(test.lowercased().filter { $0.isLetter || $0.isNumber || $0 == "_" })_\(suffix)"
        let directory = ClusterTestEnvironment.scratch + "/\(test)-\(suffix)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let cluster = Cluster(
            test: test, directory: directory, url: baseURL.with(database: name), baseURL: baseURL, leaseSeconds: leaseSeconds,
            heartbeatSeconds: heartbeatSeconds
        )
        report("[\(test)] database \(name), node logs in \(directory)")
        try await cluster.createDatabase(name)
        let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        _ = FileManager.default.createFile(atPath: cluster.secretFile, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600])
        do {
            try await cluster.startNodes((0..<count).map { "node\($0 + 1)" })
            try await body(cluster)
        } catch {
            report("[\(test)] FAILED: \(error)")
            await cluster.printDiagnosis()
            cluster.printLogs()
            await cluster.tearDown(dropping: name)
            throw error
        }
        await cluster.tearDown(dropping: name)
    }

    private func createDatabase(_ name: String) async throws {
        let admin = SQL(url: baseURL)
        let allowed = try await admin.scalar(
            "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user", as: Bool.self
        )
        guard allowed == true else {
            throw TestFailure("the role \(baseURL.user) of CONCLAVE_TEST_DATABASE_URL may not create databases (CREATEDB)")
        }
        try await admin.execute(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
        // For 10 s after PostgreSQL (re)starts every registered node counts as alive
        // (migration 0005): a test that kills a node right after the restart test would
        // wait for that. Start once the window is over, by the database's clock.
        try await eventually("the restart grace of PostgreSQL to end", timeout: .seconds(15), every: .milliseconds(200)) {
            let left = try await admin.scalar(
                "SELECT extract(epoch FROM pg_postmaster_start_time() + interval '10 seconds' - now())::float8", as: Double.self
            )
            return (left ?? 0) <= 0 ? true : nil
        }
    }

    private func tearDown(dropping name: String) async {
        let (nodes, sessions) = state.withLock { (Array($0.nodes.values), $0.sessions) }
        for session in sessions { await session.disconnect() }
        for node in nodes where node.isRunning {
            node.signal(SIGKILL)
            _ = try? await node.exit.wait(timeout: .seconds(10))
        }
        do {
            try await SQL(url: baseURL).execute(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"))
        } catch {
            report("[\(test)] could not drop the database \(name): \(error)")
        }
    }

    /// What PostgreSQL says about the test database's connections, and whether each
    /// running node still lets a client log in (binding writes the session directory).
    func printDiagnosis() async {
        do {
            let rows = try await SQL(url: baseURL).rows(
                """
                SELECT pid, coalesce(state, ''), coalesce(wait_event_type || ':' || wait_event, ''),
                       coalesce(extract(epoch FROM now() - state_change)::float8, 0), left(coalesce(query, ''), 120)
                FROM pg_stat_activity WHERE datname = \(url.database) ORDER BY pid
                """,
                as: (Int32, String, String, Double, String).self
            )
            report("[\(test)] pg_stat_activity of \(url.database): \(rows.count) backend(s)")
            for (pid, state, wait, since, query) in rows {
                report("[\(test)]   pid \(pid) \(state) for \(String(format: "%.1f", since)) s \(wait) \(query)")
            }
        } catch {
            report("[\(test)] pg_stat_activity: \(error)")
        }
        do {
            for (room, count, age, last) in try await sql.rows(
                """
                SELECT h.room, count(*) OVER (PARTITION BY h.room), extract(epoch FROM now())::float8 - h.stamp, left(h.stanza, 200)
                FROM room_history h WHERE h.id IN (SELECT max(id) FROM room_history GROUP BY room)
                """,
                as: (String, Int64, Double, String).self
            ) {
                report("[\(test)] room_history of \(room): last row written \(String(format: "%.1f", age)) s ago (\(count) kept): \(last)")
            }
            for (id, kind, room, age) in try await sql.rows(
                "SELECT id, kind, coalesce(room, ''), extract(epoch FROM now() - created_at)::float8 FROM events ORDER BY id DESC LIMIT 5",
                as: (Int64, String, String, Double).self
            ) {
                report("[\(test)] event \(id) \(kind) \(room) \(String(format: "%.1f", age)) s ago")
            }
        } catch {
            report("[\(test)] history/events: \(error)")
        }
        let account = state.withLock { $0.accounts.first }
        for node in state.withLock({ $0.nodes.values.sorted { $0.name < $1.name } }) where node.isRunning {
            guard let (jid, password) = account else { break }
            let started = ContinuousClock.now
            do {
                var options = XMPPClient.Options()
                options.tls = .none
                options.timeout = .seconds(5)
                let account = try JID(jid)
                let client = try await XMPPClient.connect(host: "127.0.0.1", port: node.port, domain: account.domainpart, options: options)
                try await client.authenticate(username: account.localpart ?? "", password: password)
                let bound = try await client.bind(resource: "diagnosis")
                report("[\(test)] \(node.name): login and bind as \(bound) work (\(String(format: "%.0f", (ContinuousClock.now - started).milliseconds)) ms)")
                await client.disconnect()
            } catch {
                report("[\(test)] \(node.name): login as \(jid) fails after \(String(format: "%.0f", (ContinuousClock.now - started).milliseconds)) ms: \(error)")
            }
        }
    }

    func printLogs(lines: Int = 40) {
        for node in state.withLock({ $0.nodes.values.sorted { $0.name < $1.name } }) {
            let tail = node.log.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
            report("[\(test)] ---- \(node.name) (\(node.logPath)), last \(lines) lines:\n\(tail)")
        }
    }

    // MARK: Nodes

    var nodeNames: [String] { state.withLock { $0.nodes.keys.sorted() } }

    func node(_ name: String) throws -> NodeProcess {
        guard let node = state.withLock({ $0.nodes[name] }) else { throw TestFailure("no node \(name)") }
        return node
    }

    func startNodes(_ names: [String]) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for name in names { group.addTask { _ = try await self.start(name) } }
            try await group.waitForAll()
        }
    }

    /// Starts `conclave serve` as node `name` and waits for its "node ready" line.
    @discardableResult
    func start(_ name: String, arguments extra: [String] = []) async throws -> NodeProcess {
        let run = state.withLock { state -> Int in
            state.restarts[name, default: 0] += 1
            return state.restarts[name]!
        }
        let logPath = directory + "/\(name)" + (run > 1 ? "-\(run)" : "") + ".log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ClusterTestEnvironment.conclave)
        process.arguments = [
            "serve", "--database-url", url.description, "--node-name", name, "--host", "127.0.0.1", "--port", "0",
            "--direct-tls-port=-1", "--allow-plaintext-on-loopback", "--link-host", "127.0.0.1", "--link-port", "0",
            "--cluster-secret-file", secretFile, "--lease-seconds", "\(leaseSeconds)",
            "--heartbeat-seconds", "\(heartbeatSeconds)",
            // CONCLAVE_TEST_NODE_LOG_LEVEL=debug: more detail in the node logs.
            "--log-level", ProcessInfo.processInfo.environment["CONCLAVE_TEST_NODE_LOG_LEVEL"] ?? "info",
        ] + extra
        process.environment = ClusterTestEnvironment.childEnvironment
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        let exit = ProcessExit()
        process.terminationHandler = { process in exit.finish(process.terminationStatus) }
        try process.run()
        try? log.close()
        let (port, link, http) = try await eventually("\(name) to log 'node ready' (\(logPath))", timeout: .seconds(30)) {
            () -> (Int, String, Int?)? in
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains("node ready") }) {
                guard let port = Self.field("port", in: line).flatMap(Int.init) else {
                    throw TestFailure("no port= in the 'node ready' line of \(name): \(line)")
                }
                return (port, Self.field("link", in: line) ?? "?", Self.field("http", in: line).flatMap(Int.init))
            }
            if let status = exit.value {
                throw TestFailure("\(name) exited with status \(status) before it was ready:\n\(text)")
            }
            return nil
        }
        let node = NodeProcess(name: name, logPath: logPath, process: process, exit: exit, port: port, link: link, http: http)
        state.withLock { $0.nodes[name] = node }
        return node
    }

    /// `key=value` in a log line of swift-log's stream handler.
    static func field(_ key: String, in line: Substring) -> String? {
        guard let range = line.range(of: " \(key)=") else { return nil }
        return String(line[range.upperBound...].prefix { $0 != " " })
    }

    /// Graceful stop (SIGTERM: the node drains, then exits); waits for the exit.
    func stop(_ name: String, timeout: Duration = .seconds(30)) async throws {
        let node = try node(name)
        node.signal(SIGTERM)
        guard try await node.exit.wait(timeout: timeout) != nil else {
            throw TestFailure("\(name) did not exit within \(timeout) after SIGTERM")
        }
    }

    /// A crash: SIGKILL; waits until the process is gone.
    func crash(_ name: String) async throws {
        let node = try node(name)
        node.signal(SIGKILL)
        guard try await node.exit.wait(timeout: .seconds(10)) != nil else { throw TestFailure("\(name) survived SIGKILL") }
    }

    func pause(_ name: String) throws { try node(name).signal(SIGSTOP) }

    /// The text of the node's /metrics.
    func metrics(_ name: String) async throws -> String {
        guard let http = try node(name).http else { throw TestFailure("\(name) serves no HTTP") }
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(http)/metrics")!)
        return String(decoding: data, as: UTF8.self)
    }
    func resume(_ name: String) throws { try node(name).signal(SIGCONT) }

    // MARK: The CLI

    /// `conclave ARGS --database-url URL`.
    func cli(_ arguments: [String], timeout: Duration = .seconds(60)) async throws -> CommandResult {
        try await runCommand(
            ClusterTestEnvironment.conclave, arguments + ["--database-url", url.description], directory: directory,
            timeout: timeout
        )
    }

    /// Like `cli`, but fails unless the command exits 0.
    @discardableResult
    func cliOK(_ arguments: [String], timeout: Duration = .seconds(60)) async throws -> CommandResult {
        let result = try await cli(arguments, timeout: timeout)
        guard result.status == 0 else { throw TestFailure("\(result)") }
        return result
    }

    func addUser(_ jid: String, password: String = "secret") async throws {
        try await cliOK(["user", "add", jid, "--password", password, "--log-level", "warning"])
        state.withLock { $0.accounts.append((jid, password)) }
    }

    struct RoomWhere: Sendable, CustomStringConvertible {
        var room: String
        var owner: String?
        var epoch: Int64?
        var ringOwner: String?
        var description: String { "\(room): owner \(owner ?? "nil") epoch \(epoch.map(String.init) ?? "nil") ring owner \(ringOwner ?? "nil")" }
    }

    /// `conclave room where ROOM --json`.
    func roomWhere(_ room: String) async throws -> RoomWhere {
        let result = try await cliOK(["room", "where", room, "--json"])
        guard let data = result.output.data(using: .utf8),
            let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw TestFailure("room where: not a JSON object: \(result.output)") }
        func string(_ key: String) -> String? { object[key] as? String }
        func integer(_ key: String) -> Int64? { (object[key] as? NSNumber)?.int64Value }
        guard object.keys.contains("owner"), object.keys.contains("epoch"), object.keys.contains("ring_owner") else {
            throw TestFailure("room where --json lacks owner/epoch/ring_owner: \(result.output)")
        }
        return RoomWhere(room: string("room") ?? room, owner: string("owner"), epoch: integer("epoch"), ringOwner: string("ring_owner"))
    }

    // MARK: Clients

    /// Logs `jid` in on node `name` (plaintext on loopback) and starts reading its stream.
    func connect(_ jid: String, password: String = "secret", to name: String, resource: String? = nil) async throws -> Session {
        let node = try node(name)
        let account = try JID(jid)
        var options = XMPPClient.Options()
        options.tls = .none
        options.timeout = .seconds(10)
        let client = try await XMPPClient.connect(host: "127.0.0.1", port: node.port, domain: account.domainpart, options: options)
        do {
            try await client.authenticate(username: account.localpart ?? "", password: password)
            let bound = try await client.bind(resource: resource)
            let session = Session(label: "\(account.localpart ?? jid)@\(name)", client: client, jid: bound, node: name)
            state.withLock { $0.sessions.append(session) }
            return session
        } catch {
            await client.disconnect()
            throw error
        }
    }
}

// MARK: - A client session

/// An XMPP client whose stream is read continuously into a log of timestamped events,
/// so that a test can wait for a stanza and also look at everything that arrived.
final class Session: Sendable {
    let label: String
    let client: XMPPClient
    let jid: JID
    let node: String
    private let state = Mutex(State())
    private let reader = Mutex<Task<Void, Never>?>(nil)

    struct Received: Sendable {
        var index: Int
        var element: XMLElement
        var at: ContinuousClock.Instant
    }

    struct State {
        var events: [(at: ContinuousClock.Instant, event: XMPPClientEvent)] = []
        var ended = false
    }

    init(label: String, client: XMPPClient, jid: JID, node: String) {
        self.label = label
        self.client = client
        self.jid = jid
        self.node = node
        let task = Task { [self] in
            while true {
                guard let event = await client.next(timeout: .seconds(1)) else {
                    if state.withLock({ $0.ended }) { return }
                    continue
                }
                let now = ContinuousClock.now
                state.withLock { $0.events.append((now, event)) }
                if event == .disconnected {
                    state.withLock { $0.ended = true }
                    return
                }
            }
        }
        reader.withLock { $0 = task }
    }

    var bare: String { jid.bare.description }

    /// How many events arrived so far: a mark for `waitFor(after:)`.
    var count: Int { state.withLock { $0.events.count } }

    var ended: Bool { state.withLock { $0.ended } }

    /// The elements received (with their index and arrival time), from `start` on.
    func elements(from start: Int = 0) -> [Received] {
        state.withLock { state in
            state.events.enumerated().dropFirst(start).compactMap { index, entry in
                if case .element(let element) = entry.event { return Received(index: index, element: element, at: entry.at) }
                return nil
            }
        }
    }

    func events(from start: Int = 0) -> [XMPPClientEvent] {
        state.withLock { Array($0.events.dropFirst(start).map(\.event)) }
    }

    func send(_ element: XMLElement) { client.send(element) }

    /// Waits for the first element at index `start` or later that matches; fails after
    /// `timeout`, listing what did arrive.
    @discardableResult
    func waitFor(
        _ what: String, after start: Int = 0, timeout: Duration = .seconds(10), where match: (XMLElement) -> Bool
    ) async throws -> Received {
        let deadline = ContinuousClock.now + timeout
        var checked = start
        while true {
            let (found, total, ended) = state.withLock { state -> (Received?, Int, Bool) in
                var index = checked
                while index < state.events.count {
                    if case .element(let element) = state.events[index].event, match(element) {
                        return (Received(index: index, element: element, at: state.events[index].at), index, state.ended)
                    }
                    index += 1
                }
                return (nil, state.events.count, state.ended)
            }
            if let found { return found }
            checked = total
            if ended || ContinuousClock.now >= deadline {
                let seen = events(from: start).suffix(30).map { event -> String in
                    if case .element(let element) = event { return String(element.description.prefix(400)) }
                    return "\(event)"
                }
                throw TestFailure(
                    "\(label) (\(jid)): \(ended ? "the stream ended" : "nothing arrived within \(timeout)") while waiting for \(what); "
                        + "received since (last 30):\n  " + seen.joined(separator: "\n  ")
                )
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Waits until the stream ends (stream error or close); returns the stream error, if any.
    func waitForEnd(timeout: Duration = .seconds(10)) async throws -> XMLElement? {
        try await eventually("the stream of \(label) to end", timeout: timeout, every: .milliseconds(20)) { () -> Bool? in
            self.events().contains { $0 == .streamClosed || $0 == .disconnected } ? true : nil
        }
        return elements().first { $0.element.name == "error" && $0.element.namespace == Namespace.stream }?.element
    }

    /// Sends an IQ and waits for the answer.
    func iq(_ type: String, to: String, _ payload: XMLElement, timeout: Duration = .seconds(10)) async throws -> XMLElement {
        let id = "iq-\(UInt32.random(in: 0...UInt32.max))"
        let mark = count
        send(XMLElement("iq", namespace: Namespace.client, ["type": type, "id": id, "to": to], children: [payload]))
        return try await waitFor("the answer to IQ \(id) (\(payload.name) \(payload.namespace))", after: mark, timeout: timeout) {
            $0.name == "iq" && $0.id == id && ($0.type == "result" || $0.type == "error")
        }.element
    }

    /// Closes the stream and drops the connection without waiting long.
    func disconnect() async {
        if !ended { client.sendRaw("</stream:stream>") }
        _ = try? await eventually("close", timeout: .seconds(2), every: .milliseconds(20)) { () -> Bool? in
            self.events().contains { $0 == .streamClosed || $0 == .disconnected } ? true : nil
        }
        await client.disconnect()
        state.withLock { $0.ended = true }
        let task = reader.withLock { $0 }
        await task?.value
    }
}

// MARK: - Multi-User Chat

enum MUCStanza {
    static func statusCodes(_ presence: XMLElement) -> [String] {
        presence.child("x", namespace: Namespace.mucUser)?.children("status").compactMap { $0[attribute: "code"] } ?? []
    }

    static func isGroupchat(_ element: XMLElement, from room: String) -> Bool {
        element.name == "message" && element.type == "groupchat" && (element[attribute: "from"] ?? "").hasPrefix(room + "/")
    }

    static func isNumbered(_ element: XMLElement, _ sender: String, _ number: Int) -> Bool {
        guard let found = numbered(element) else { return false }
        return found.sender == sender && found.number == number
    }

    /// A numbered test message: body "sender #n".
    static func numbered(_ element: XMLElement) -> (sender: String, number: Int)? {
        guard element.name == "message", element.type == "groupchat", let body = element.child("body")?.text else { return nil }
        let parts = body.split(separator: " #")
        guard parts.count == 2, let number = Int(parts[1]) else { return nil }
        return (String(parts[0]), number)
    }
}

extension Session {
    /// Joins `room` as `nick` and waits for the own presence and the subject; fails on an error presence.
    @discardableResult
    func join(_ room: String, nick: String, timeout: Duration = .seconds(10)) async throws -> XMLElement {
        let mark = count
        send(
            XMLElement(
                "presence", namespace: Namespace.client, ["to": "\(room)/\(nick)"],
                children: [XMLElement("x", namespace: Namespace.muc, children: [XMLElement("history", namespace: Namespace.muc, ["maxstanzas": "0"])])]
            )
        )
        let own = try await waitFor("own presence in \(room) as \(nick)", after: mark, timeout: timeout) {
            $0.name == "presence" && $0[attribute: "from"] == "\(room)/\(nick)"
                && ($0.type == "error" || MUCStanza.statusCodes($0).contains("110"))
        }
        if own.element.type == "error" { throw TestFailure("\(label) could not join \(room): \(own.element)") }
        try await waitFor("the subject of \(room)", after: own.index, timeout: timeout) {
            $0.name == "message" && $0[attribute: "from"] == room && $0.child("subject") != nil
        }
        return own.element
    }

    /// Submits the room configuration form with `fields`; fails unless the room answers with a result.
    func configure(_ room: String, _ fields: [(String, String)]) async throws {
        let form = DataForm(
            type: "submit",
            fields: [.init("FORM_TYPE", values: [Namespace.mucRoomConfig])] + fields.map { .init($0.0, values: [$0.1]) }
        )
        let answer = try await iq("set", to: room, XMLElement("query", namespace: Namespace.mucOwner, children: [form.element]))
        guard answer.type == "result" else { throw TestFailure("configuring \(room) failed: \(answer)") }
    }

    func setAffiliation(_ room: String, jid: String, _ affiliation: String) async throws {
        let answer = try await iq(
            "set", to: room,
            XMLElement(
                "query", namespace: Namespace.mucAdmin,
                children: [XMLElement("item", namespace: Namespace.mucAdmin, ["affiliation": affiliation, "jid": jid])]
            )
        )
        guard answer.type == "result" else { throw TestFailure("setting \(jid) to \(affiliation) in \(room) failed: \(answer)") }
    }

    func say(_ room: String, _ body: String, id: String? = nil) {
        send(
            XMLElement(
                "message", namespace: Namespace.client, ["to": room, "type": "groupchat", "id": id ?? "m-\(UInt32.random(in: 0...UInt32.max))"],
                children: [XMLElement("body", namespace: Namespace.client, text: body)]
            )
        )
    }

    func setSubject(_ room: String, _ subject: String) {
        send(
            XMLElement(
                "message", namespace: Namespace.client, ["to": room, "type": "groupchat"],
                children: [XMLElement("subject", namespace: Namespace.client, text: subject)]
            )
        )
    }

    /// The numbered messages from `sender` this session received in `room`, in arrival order.
    func numbers(from sender: String, in room: String, from start: Int = 0) -> [(number: Int, at: ContinuousClock.Instant)] {
        elements(from: start).compactMap { received in
            guard MUCStanza.isGroupchat(received.element, from: room), let (who, number) = MUCStanza.numbered(received.element),
                who == sender
            else { return nil }
            return (number, received.at)
        }
    }

    /// Error stanzas this session received (e.g. a refused message).
    func errors(from start: Int = 0) -> [XMLElement] {
        elements(from: start).map(\.element).filter { $0.type == "error" }
    }
}

// MARK: - Senders of numbered messages

/// Sends "name #1", "name #2", … to rooms in turn at a steady pace until stopped, and
/// remembers when each was sent.
final class NumberedSender: Sendable {
    let session: Session
    let name: String
    let rooms: [String]
    private let state = Mutex(State())
    private let task = Mutex<Task<Void, Never>?>(nil)

    struct State {
        /// room → [(number, sent at)]
        var sent: [String: [(Int, ContinuousClock.Instant)]] = [:]
        var stopped = false
    }

    init(_ session: Session, name: String, rooms: [String], every interval: Duration = .milliseconds(25)) {
        self.session = session
        self.name = name
        self.rooms = rooms
        let task = Task { [self] in
            var round = 0
            while !state.withLock({ $0.stopped }) {
                let room = rooms[round % rooms.count]
                let now = ContinuousClock.now
                let number = state.withLock { state -> Int in
                    let number = (state.sent[room]?.count ?? 0) + 1
                    state.sent[room, default: []].append((number, now))
                    return number
                }
                session.say(room, "\(name) #\(number)", id: "\(name)-\(room)-\(number)")
                round += 1
                try? await Task.sleep(for: interval)
            }
        }
        self.task.withLock { $0 = task }
    }

    /// Stops sending; returns once the last message is sent.
    func stop() async {
        state.withLock { $0.stopped = true }
        await task.withLock { $0 }?.value
    }

    /// How many messages went to `room`.
    func sentCount(_ room: String) -> Int { state.withLock { $0.sent[room]?.count ?? 0 } }

    /// The numbers sent to `room` at or after `instant`.
    func sent(to room: String, since instant: ContinuousClock.Instant? = nil) -> [(number: Int, at: ContinuousClock.Instant)] {
        state.withLock { state in
            (state.sent[room] ?? []).filter { instant == nil || $0.1 >= instant! }.map { (number: $0.0, at: $0.1) }
        }
    }
}

/// What one receiver got of one sender's numbered messages in one room.
struct DeliveryCheck: CustomStringConvertible {
    var receiver: String
    var sender: String
    var room: String
    var missing: [Int]
    var duplicated: [Int]
    var outOfOrder: [(Int, Int)]

    var ok: Bool { missing.isEmpty && duplicated.isEmpty && outOfOrder.isEmpty }

    var description: String {
        "\(receiver) ← \(sender) in \(room): missing \(Self.ranges(missing)), duplicated \(Self.ranges(duplicated)), "
            + "out of order \(outOfOrder.prefix(10).map { "\($0.0) after \($0.1)" })"
    }

    /// "[3-5, 9]" for [3, 4, 5, 9].
    static func ranges(_ numbers: [Int]) -> String {
        "[" + numberRuns(numbers.sorted()).joined(separator: ", ") + "]"
    }

    /// Compares what arrived with `expected` (the numbers that must each arrive once, in order).
    init(receiver: Session, sender: String, room: String, expected: [Int], from start: Int = 0) {
        self.receiver = receiver.label
        self.sender = sender
        self.room = room
        let expectedSet = Set(expected)
        let got = receiver.numbers(from: sender, in: room, from: start).map(\.number).filter { expectedSet.contains($0) }
        var counts: [Int: Int] = [:]
        for number in got { counts[number, default: 0] += 1 }
        missing = expected.filter { counts[$0] == nil }
        duplicated = counts.filter { $0.value > 1 }.map(\.key).sorted()
        var order: [(Int, Int)] = []
        var highest = Int.min
        for number in got {
            if number < highest { order.append((number, highest)) }
            highest = max(highest, number)
        }
        outOfOrder = order
    }
}
