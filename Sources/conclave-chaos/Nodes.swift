import ClusterTestSupport
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One run of `conclave serve` (a node restarted is a new `NodeProcess`).
final class NodeProcess: Sendable {
    let name: String
    let logPath: String
    let child: ChildProcess
    /// The c2s port of its "node ready" line.
    let port: Int
    let link: String
    private let pausedState = Mutex(false)

    init(name: String, logPath: String, child: ChildProcess, port: Int, link: String) {
        self.name = name
        self.logPath = logPath
        self.child = child
        self.port = port
        self.link = link
    }

    var isRunning: Bool { child.isRunning }
    var paused: Bool {
        get { pausedState.withLock { $0 } }
        set { pausedState.withLock { $0 = newValue } }
    }
    var address: String { "127.0.0.1:\(port)" }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    var logSize: Int { (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0 }

    /// The log's lines after byte `offset`.
    func logLines(after offset: Int) -> [Substring] {
        let bytes = Array(log.utf8)
        guard bytes.count > offset else { return [] }
        return String(decoding: bytes[offset...], as: UTF8.self).split(separator: "\n")
    }

    func tail(_ lines: Int) -> String {
        log.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Waits for a log line containing `text` after byte `offset`; `nil` after `timeout`.
    func waitForLog(_ text: String, after offset: Int, timeout: Duration) async -> String? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let line = logLines(after: offset).first(where: { $0.contains(text) }) { return String(line) }
            if ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// The nodes node1 … nodeN of the run: started, stopped, killed and paused here, with
/// one log file per node per start in the run's directory.
final class Nodes: Sendable {
    let conclave: String
    let directory: String
    let databaseURL: PostgresURL
    let secretFile: String
    let leaseSeconds: Double
    let heartbeatSeconds: Double
    /// The nodes' `--log-level` (`info`; `debug` to trace a replayed finding).
    let logLevel: String
    let names: [String]
    private let state = Mutex(State())

    struct State {
        var running: [String: NodeProcess] = [:]
        var starts: [String: Int] = [:]
        /// Every process of the run, for the logs printed on failure.
        var all: [NodeProcess] = []
    }

    init(
        conclave: String, directory: String, databaseURL: PostgresURL, secretFile: String, leaseSeconds: Double,
        heartbeatSeconds: Double, logLevel: String = "info", count: Int
    ) {
        self.logLevel = logLevel
        self.conclave = conclave
        self.directory = directory
        self.databaseURL = databaseURL
        self.secretFile = secretFile
        self.leaseSeconds = leaseSeconds
        self.heartbeatSeconds = heartbeatSeconds
        self.names = (1...count).map { "node\($0)" }
    }

    /// The nodes the harness started and has not stopped (their process may have died:
    /// `checkHealth` says so).
    var running: [NodeProcess] { state.withLock { $0.running.values.sorted { $0.name < $1.name } } }
    /// Running and not paused: where clients may connect.
    var live: [NodeProcess] { running.filter { $0.isRunning && !$0.paused } }
    var stopped: [String] {
        let running = Set(state.withLock { $0.running.keys })
        return names.filter { !running.contains($0) }
    }

    func node(_ name: String) -> NodeProcess? { state.withLock { $0.running[name] } }

    /// The latest process of every node name started in this run.
    var latest: [NodeProcess] {
        state.withLock { state in
            var latest: [String: NodeProcess] = [:]
            for node in state.all { latest[node.name] = node }
            return latest.values.sorted { $0.name < $1.name }
        }
    }

    /// Starts `conclave serve` as `name` and waits for its "node ready" line.
    func start(_ name: String, timeout: Duration = .seconds(60)) async throws -> NodeProcess {
        let run = state.withLock { state -> Int in
            state.starts[name, default: 0] += 1
            return state.starts[name]!
        }
        let logPath = directory + "/\(name)-\(run).log"
        let arguments = [
            "serve", "--database-url", databaseURL.description, "--node-name", name, "--host", "127.0.0.1", "--port",
            "0",
            "--direct-tls-port=-1", "--allow-plaintext-on-loopback", "--link-host", "127.0.0.1", "--link-port", "0",
            "--http-port", "0", "--cluster-secret-file", secretFile, "--lease-seconds", "\(leaseSeconds)",
            "--heartbeat-seconds", "\(heartbeatSeconds)", "--log-level", logLevel,
        ]
        let child = try ChildProcess.spawn(conclave, arguments, output: logPath, directory: directory)
        let pidFile = directory + "/../\(name).pid"
        try? "\(child.pid) \(databaseURL.database)\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
        let deadline = ContinuousClock.now + timeout
        while true {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains("node ready") }) {
                guard let port = Self.field("port", in: line).flatMap(Int.init) else {
                    child.signal(SIGKILL)
                    throw CheckFailure("node start", "no port= in the 'node ready' line of \(name): \(line)")
                }
                let node = NodeProcess(
                    name: name, logPath: logPath, child: child, port: port, link: Self.field("link", in: line) ?? "?")
                state.withLock {
                    $0.running[name] = node
                    $0.all.append(node)
                }
                return node
            }
            if let status = child.exitStatus {
                throw CheckFailure(
                    "node start",
                    "\(name) exited with status \(status) before it was ready (\(logPath)):\n\(Self.tail(text, 30))")
            }
            if ContinuousClock.now >= deadline {
                child.signal(SIGKILL)
                throw CheckFailure(
                    "node start",
                    "\(name) did not log 'node ready' within \(timeout.text) (\(logPath)):\n\(Self.tail(text, 30))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// SIGTERM (the node drains, then exits); waits for the exit.
    func stop(_ name: String, timeout: Duration = .seconds(90)) async throws {
        guard let node = node(name) else { return }
        if node.paused {
            node.child.signal(SIGCONT)
            node.paused = false
        }
        node.child.signal(SIGTERM)
        let status = await node.child.wait(timeout: timeout)
        state.withLock { _ = $0.running.removeValue(forKey: name) }
        guard let status else {
            node.child.signal(SIGKILL)
            _ = await node.child.wait(timeout: .seconds(10))
            throw CheckFailure(
                "graceful stop", "\(name) did not exit within \(timeout.text) after SIGTERM (\(node.logPath))")
        }
        guard status == 0 else {
            throw CheckFailure("graceful stop", "\(name) exited with status \(status) after SIGTERM (\(node.logPath))")
        }
    }

    /// SIGKILL; waits until the process is gone.
    func kill(_ name: String) async throws {
        guard let node = node(name) else { return }
        node.child.signal(SIGKILL)
        let status = await node.child.wait(timeout: .seconds(10))
        state.withLock { _ = $0.running.removeValue(forKey: name) }
        if status == nil { throw ChaosError("\(name) (pid \(node.child.pid)) survived SIGKILL") }
    }

    func pause(_ name: String) {
        guard let node = node(name) else { return }
        node.child.signal(SIGSTOP)
        node.paused = true
    }

    func resume(_ name: String) {
        guard let node = node(name) else { return }
        node.child.signal(SIGCONT)
        node.paused = false
    }

    /// Kills every node still running (at the end of a run, or after a failure).
    func killAll() async {
        for node in running {
            node.child.signal(SIGCONT)
            node.child.signal(SIGKILL)
            _ = await node.child.wait(timeout: .seconds(10))
        }
        state.withLock { $0.running = [:] }
    }

    /// `key=value` in a log line of swift-log's stream handler.
    static func field(_ key: String, in line: Substring) -> String? {
        guard let range = line.range(of: " \(key)=") else { return nil }
        return String(line[range.upperBound...].prefix { $0 != " " })
    }

    static func tail(_ text: String, _ lines: Int) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Nodes a run that was itself killed left behind (their pid files name this
    /// database): killed, so that they hold neither the names nor the database.
    static func killLeftovers(in workDirectory: String, database: String, count: Int) {
        for index in 1...max(count, 4) {
            let pidFile = workDirectory + "/node\(index).pid"
            guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8) else { continue }
            let parts = text.split(separator: " ")
            guard let pid = parts.first.flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else {
                continue
            }
            // Only if that pid is still a `conclave serve` of this node on this database.
            let commandLine =
                (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")))
                .map { String(decoding: $0, as: UTF8.self).replacingOccurrences(of: "\0", with: " ") } ?? ""
            if commandLine.contains(" serve "), commandLine.contains("--node-name node\(index) "),
                commandLine.contains("/\(database) ")
            {
                print("chaos: killing node\(index) (pid \(pid)) left running by an earlier run")
                _ = Glibc.kill(pid, SIGCONT)
                _ = Glibc.kill(pid, SIGKILL)
            }
            try? FileManager.default.removeItem(atPath: pidFile)
        }
    }
}
