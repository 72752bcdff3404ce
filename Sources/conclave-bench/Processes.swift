import ArgumentParser
import Foundation
import Synchronization

/// `fanout --processes N`: the rooms are shared out among N child processes of the
/// bench (each with its own connections, ports and files), which log in and join, wait
/// until all are ready, then send and receive in one common window; this process reads
/// the server's CPU and memory and merges the children's raw times into one result.
enum ProcessSplit {
    /// Options the parent sets for each child itself.
    static let parentOnly: Set<String> = ["--processes", "--json", "--server-pid", "--rooms", "--label", "--quiet", "--during", "--during-at"]

    /// The command line for the child that runs `rooms` rooms from `firstRoom` on.
    static func childArguments(_ arguments: [String], rooms: Int, firstRoom: Int, sync: String) -> [String] {
        var kept: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            if parentOnly.contains(name) {
                // `--name value` (flags and `--name=value` take one argument).
                let takesValue = !argument.contains("=") && name != "--quiet"
                index += takesValue ? 2 : 1
                continue
            }
            kept.append(argument)
            index += 1
        }
        return kept + ["--rooms", "\(rooms)", "--first-room", "\(firstRoom)", "--child-sync", sync, "--quiet"]
    }

    /// Runs `executable` with `arguments` and returns its exit status (posix_spawn and
    /// waitpid on a thread of its own).
    static func run(_ executable: String, _ arguments: [String]) async -> Int32 {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) }
                argv.append(nil)
                defer { for pointer in argv { free(pointer) } }
                var pid: pid_t = 0
                guard posix_spawn(&pid, executable, nil, nil, argv, environ) == 0 else {
                    continuation.resume(returning: 127)
                    return
                }
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1, errno == EINTR {}
                continuation.resume(returning: status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f))
            }
        }
    }

    // The files a child and the parent share in the sync directory.
    static func ready(_ sync: String, _ child: Int) -> String { "\(sync)/ready-\(child)" }
    static func start(_ sync: String) -> String { "\(sync)/start" }
    static func outcome(_ sync: String, _ child: Int) -> String { "\(sync)/outcome-\(child).json" }

    /// What a child measured, for the parent to merge.
    struct Outcome: Codable {
        var sent: Int
        var ended: Int
        var failedJoins: Int
        var latencies: [UInt64]
        var joinTimes: [UInt64]
        var rejoinTimes: [UInt64]
        var joinsPerSecond: Double?
    }

    static func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path + ".tmp"))
        guard rename(path + ".tmp", path) == 0 else { throw ValidationError("cannot write \(path)") }
    }

    /// The child's part: set up, say so, wait for the common start, run the window.
    static func child(_ run: FanoutRun, sync: String, firstRoom: Int) async throws {
        let setup = try await run.setUp()
        try write("", to: ready(sync, firstRoom))
        var startAt: UInt64?
        while startAt == nil {
            if let text = try? String(contentsOfFile: start(sync), encoding: .utf8) { startAt = UInt64(text) }
            if startAt == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        let traffic = await run.traffic(setup, rate: run.rate, startAt: startAt)
        let outcome = Outcome(
            sent: traffic.sent, ended: traffic.ended, failedJoins: setup.failedJoins, latencies: traffic.latencies,
            joinTimes: setup.joinTimes, rejoinTimes: setup.rejoinTimes, joinsPerSecond: setup.joinsPerSecond
        )
        try JSONEncoder().encode(outcome).write(to: URL(fileURLWithPath: Self.outcome(sync, firstRoom)))
        await Logins.closeAll(setup.clients)
    }

    /// The parent's part: `processes` children share the rooms; one merged result.
    static func parent(_ command: Fanout, run: FanoutRun, processes: Int) async throws -> FanoutResult {
        let sync = FileManager.default.temporaryDirectory.appendingPathComponent("conclave-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: sync, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: sync) }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let arguments = Array(CommandLine.arguments.dropFirst())
        // Child c runs rooms [first, first + count).
        let shares: [(first: Int, count: Int)] = (0..<processes).compactMap { child in
            let first = command.rooms * child / processes
            let count = command.rooms * (child + 1) / processes - first
            return count > 0 ? (first, count) : nil
        }
        let baseline = ProcessSample.total(run.serverPIDs)
        let exited = Exited()
        let exits = Task {
            await withTaskGroup(of: Int32.self) { group in
                for share in shares {
                    let childArguments = childArguments(arguments, rooms: share.count, firstRoom: share.first, sync: sync)
                    group.addTask {
                        let status = await Self.run(executable, childArguments)
                        exited.count.add(1, ordering: .relaxed)
                        return status
                    }
                }
                return await group.reduce(into: [Int32]()) { $0.append($1) }
            }
        }
        // Every child logged in and joined; a child exits only after the window, so one
        // that exits before all are ready gave up.
        while !shares.allSatisfy({ FileManager.default.fileExists(atPath: ready(sync, $0.first)) }) {
            if exited.count.load(ordering: .relaxed) > 0 {
                let statuses = await exits.value
                throw ValidationError("a child process exited (statuses \(statuses)) before every child was ready")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let joined = ProcessSample.total(run.serverPIDs)
        let startAt = monotonicNanoseconds() + 500_000_000
        try write("\(startAt)", to: start(sync))
        let measureStart = startAt + UInt64(run.warmup * 1e9)
        let measureEnd = measureStart + UInt64(run.duration * 1e9)
        await sleep(until: measureStart)
        let before = ProcessSample.total(run.serverPIDs)
        await sleep(until: measureEnd)
        let after = ProcessSample.total(run.serverPIDs)
        let statuses = await exits.value
        var merged = Outcome(sent: 0, ended: 0, failedJoins: 0, latencies: [], joinTimes: [], rejoinTimes: [], joinsPerSecond: nil)
        for share in shares {
            guard let data = FileManager.default.contents(atPath: outcome(sync, share.first)),
                let part = try? JSONDecoder().decode(Outcome.self, from: data)
            else { throw ValidationError("a child process left no result (exit statuses \(statuses))") }
            merged.sent += part.sent
            merged.ended += part.ended
            merged.failedJoins += part.failedJoins
            merged.latencies += part.latencies
            merged.joinTimes += part.joinTimes
            merged.rejoinTimes += part.rejoinTimes
            if let rate = part.joinsPerSecond { merged.joinsPerSecond = (merged.joinsPerSecond ?? 0) + rate }
        }
        let sessions = command.rooms * command.roomSize
        let expected = merged.sent * command.roomSize
        var result = FanoutResult(
            label: command.label, rooms: command.rooms, roomSize: command.roomSize, ratePerRoom: command.rate,
            durationSeconds: command.duration, sessions: sessions, sent: merged.sent, expectedDeliveries: expected,
            deliveries: merged.latencies.count, lost: max(0, expected - merged.latencies.count),
            deliveriesPerSecond: Double(merged.latencies.count) / command.duration, latencyMilliseconds: percentiles(merged.latencies),
            joinMilliseconds: percentiles(merged.joinTimes), failedJoins: merged.failedJoins, machine: Machine.description
        )
        result.processes = shares.count
        result.sessionsEnded = merged.ended
        result.joinsPerSecond = merged.joinsPerSecond
        if !merged.rejoinTimes.isEmpty { result.rejoinMilliseconds = percentiles(merged.rejoinTimes) }
        if let before, let after {
            result.serverCPUSeconds = after.cpuSeconds - before.cpuSeconds
            if !merged.latencies.isEmpty {
                result.serverCPUMicrosecondsPerDelivery = (after.cpuSeconds - before.cpuSeconds) / Double(merged.latencies.count) * 1e6
            }
        }
        if let baseline, let joined {
            // Logins and joins overlap across the children: one figure per session for both.
            result.serverRSSKiB = joined.rssKiB
            result.serverRSSKiBPerSession = Double(joined.rssKiB - baseline.rssKiB) / Double(sessions)
        }
        return result
    }

    final class Exited: Sendable {
        let count = Atomic<Int>(0)
    }
}
