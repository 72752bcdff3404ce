public import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A process a harness started (a node, the CLI, conclave-spec, db.sh).
///
/// Started with `posix_spawn` through bash, which closes every descriptor beyond 0, 1
/// and 2 before it execs (so a daemon, such as PostgreSQL started by `db.sh start`, holds
/// none of ours), and reaped by `waitpid` on its own pid only: Foundation's `Process`
/// learns of an exit through a descriptor a daemon would inherit, and a `waitpid(-1)`
/// would steal other children's exits.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    public let command: String
    private let status = Mutex<Int32?>(nil)

    private init(pid: pid_t, command: String) {
        self.pid = pid
        self.command = command
    }

    /// Starts `executable` in `directory`, its standard output and error in `output`
    /// (appended to, or truncated first), standard input from /dev/null.
    public static func spawn(
        _ executable: String, _ arguments: [String], output: String, append: Bool = false, directory: String,
        keepConclaveVariables: Bool = false
    ) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // $0 is the directory, "$@" the command.
        let script =
            #"cd "$0" || exit 127; for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$@""#
        let argv = (["/bin/bash", "-c", script, directory, executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        // No CONCLAVE_* variable of ours leaks into a node or the CLI: each gets its options
        // explicitly. (db.sh keeps them: CONCLAVE_PG_PORT chooses the embedded server.)
        let environment =
            ProcessInfo.processInfo.environment.filter { keepConclaveVariables || !$0.key.hasPrefix("CONCLAVE_") }
            .map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in environment { free(pointer) } }
        var pid: pid_t = 0
        let command = ([executable] + arguments).joined(separator: " ")
        let spawned = posix_spawn(&pid, "/bin/bash", &actions, nil, argv, environment)
        guard spawned == 0 else { throw HarnessError("cannot start `\(command)`: error \(spawned)") }
        return ChildProcess(pid: pid, command: command)
    }

    /// The exit status (128 + signal when a signal ended it), or `nil` while it runs.
    public var exitStatus: Int32? {
        status.withLock { known in
            if let known { return known }
            var raw: Int32 = 0
            guard waitpid(pid, &raw, WNOHANG) == pid else { return nil }
            let value: Int32 = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
            known = value
            return value
        }
    }

    public var isRunning: Bool { exitStatus == nil }

    public func signal(_ number: Int32) {
        if isRunning { _ = kill(pid, number) }
    }

    /// The exit status, or `nil` if it still runs after `timeout`.
    public func wait(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let status = exitStatus { return status }
            if ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}

extension ChildProcess {
    /// The outcome of a command run to its end.
    public struct Outcome: Sendable, CustomStringConvertible {
        public var command: String
        public var status: Int32
        public var output: String

        public var description: String { "`\(command)` exited \(status):\n\(output)" }
    }

    /// Runs a command to its end (at most `timeout`; then it is killed and this throws).
    /// Its output is kept in `outputFile` when given, else in a file that is removed after.
    public static func run(
        _ executable: String, _ arguments: [String], directory: String, timeout: Duration = .seconds(120),
        outputFile: String? = nil, keepConclaveVariables: Bool = false
    ) async throws -> Outcome {
        let path = outputFile ?? "\(directory)/.cmd-\(UInt32.random(in: 0...UInt32.max)).out"
        let child = try spawn(
            executable, arguments, output: path, directory: directory, keepConclaveVariables: keepConclaveVariables)
        guard let status = await child.wait(timeout: timeout) else {
            child.signal(SIGKILL)
            _ = await child.wait(timeout: .seconds(5))
            let output = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if outputFile == nil { try? FileManager.default.removeItem(atPath: path) }
            throw HarnessError("`\(child.command)` did not finish within \(timeout); its output:\n\(output)")
        }
        let output = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        if outputFile == nil { try? FileManager.default.removeItem(atPath: path) }
        return Outcome(command: child.command, status: status, output: output)
    }
}
