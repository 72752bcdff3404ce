import ArgumentParser
import Foundation
import NIOCore
import Synchronization
import XMPPCore
import XMPPDiscovery
import XMPPStream

/// `conclave-bench fanout`: R rooms of S occupants each; messages at a fixed rate per
/// room, each carrying its send time; every occupant's copy is timed on arrival.
struct Fanout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rooms of a given size, messages at a given rate per room: deliveries/s, time to deliver, loss, join cost.",
        discussion: """
            Users PREFIX1 … PREFIX(rooms×room-size) log in and join their rooms (the first of each \
            creates it, as an instant room); then each room receives --rate messages per second for \
            --warmup + --duration seconds, sent in turn by its first --senders occupants. Each body \
            carries the send time (CLOCK_MONOTONIC), so every receiver computes the time to deliver. \
            Only messages sent during --duration count; copies still arriving --drain seconds after \
            it are counted, later ones are lost. --server-pid names the server's processes, whose CPU \
            time and memory (from /proc) are reported per delivery and per session.
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Rooms.") var rooms = 1
    @Option(help: "Occupants per room.") var roomSize = 10
    @Option(help: "Messages per second per room.") var rate = 10.0
    @Option(help: "Seconds measured.") var duration = 10.0
    @Option(help: "Seconds of traffic before measuring.") var warmup = 2.0
    @Option(help: "Seconds to wait for copies after the last measured message.") var drain = 2.0
    @Option(help: "Occupants per room that take turns sending.") var senders = 1
    @Option(help: "A shell command run once during the measured window (e.g. starting another node), at --during-at.")
    var during: String?
    @Option(help: "Seconds into the measured window at which --during starts.") var duringAt = 0.0
    @Option(help: "Share the rooms among this many child processes (each with its own connections and open files), measured as one run.")
    var processes = 1
    @Option(help: ArgumentHelp("The first room's number (set for a child process).", visibility: .hidden)) var firstRoom = 0
    @Option(help: ArgumentHelp("The directory a child process and its parent share.", visibility: .hidden)) var childSync: String?
    @Option(help: "After the rooms are full: how many times an occupant of the first room leaves and joins again, timed.") var joinProbes = 10
    @Option(name: .customLong("server-pid"), help: "A server process to read CPU time and memory of (repeatable).") var serverPIDs: [Int32] = []
    @Option(help: "Seconds the sessions stay idle after logging in before the server's memory per idle session is read (a node releases an idle session's parser state after 10–20 s); not with --processes.")
    var idleWait = 0.0
    @Option(help: "A label for the result (e.g. the server's name).") var label = "server"
    @Option(help: "Write the result as JSON to this file.") var json: String?
    @Flag(help: "No progress lines on standard error.") var quiet = false
    @Flag(help: "Find the highest rate with nothing lost and p99 under --p99-limit (from --rate, doubling, or halving when --rate is too much, then bisecting), then measure at half of it.")
    var search = false
    @Option(help: "With --search: the p99 time to deliver (ms) a sustained rate stays under.") var p99Limit = 100.0
    @Option(help: "With --search: bisection steps after the first failure.") var searchSteps = 3
    @Option(
        name: .customLong("then"),
        help: "Another phase right after the measured one, on the same sessions and rooms, with no pause: RATE:SECONDS (repeatable). Each phase is reported on its own (by send time), with the time to deliver of what was sent from 5 s into it and the servers' peak memory."
    )
    var then: [String] = []
    @Option(help: "With --then: the phase --during runs in (0: the first).") var duringPhase = 0
    @Option(help: "A message due while the server does not read its sender (the socket is full): queue (wait in the client) or drop (not sent, counted as held back).")
    var backpressure: String = "queue"
    @Option(help: "The last N occupants of the first room (not senders; sockets with a 16 KiB receive buffer, a slow link) stop reading when the first phase starts. Reported: how many the server ended, and when the room's other occupants saw each leave. Their copies are not expected.")
    var stall = 0
    @Flag(help: "One more user, alone in a room of its own, sends into it as fast as its socket takes during the first phase. Reported: the messages a second the server took from it; the other rooms' time to deliver shows whether it delays them.")
    var bigSender = false

    /// Phases, --backpressure, --stall and --big-sender run on one set of sessions, with
    /// the per-phase report.
    var phased: Bool { !then.isEmpty || backpressure != "queue" || stall > 0 || bigSender }

    func validate() throws {
        guard rooms >= 1, roomSize >= 1, rate > 0, duration > 0, warmup >= 0, drain >= 0 else {
            throw ValidationError("rooms, room size, rate and duration must be positive")
        }
        guard (1...roomSize).contains(senders) else { throw ValidationError("--senders must be between 1 and --room-size") }
        if during != nil, search { throw ValidationError("--during runs in one measured window: not with --search") }
        guard processes >= 1 else { throw ValidationError("--processes must be at least 1") }
        if processes > 1, search || during != nil { throw ValidationError("--processes runs one window: not with --search or --during") }
        guard SenderBackpressure(rawValue: backpressure) != nil else { throw ValidationError("--backpressure is queue or drop") }
        if phased, search || processes > 1 {
            throw ValidationError("--then, --backpressure, --stall and --big-sender run on one set of sessions: not with --search or --processes")
        }
        guard (0...(roomSize - senders)).contains(stall) else { throw ValidationError("--stall is at most --room-size minus --senders") }
        for phase in then { _ = try TrafficPhase(parsing: phase) }
    }

    func run() async throws {
        var clientOptions = try connection.clientOptions()
        // Dropping what the server does not take needs to see at once that it does not:
        // a small send buffer (the kernel's would otherwise hold megabytes first).
        if backpressure == SenderBackpressure.drop.rawValue { clientOptions.sendBufferBytes = 32 * 1024 }
        let run = FanoutRun(command: self, clientOptions: clientOptions)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        if let childSync { return try await ProcessSplit.child(run, sync: childSync, firstRoom: firstRoom) }
        if processes > 1 {
            if !quiet { FileHandle.standardError.write(Data("\(processes) processes log in and join, then measure together\n".utf8)) }
            let result = try await ProcessSplit.parent(self, run: run, processes: processes)
            print(result.table)
            if let json { try encoder.encode(result).write(to: URL(fileURLWithPath: json)) }
            if result.lost > 0 || result.failedJoins > 0 { throw ExitCode(2) }
            return
        }
        if search {
            let (best, half, tried) = try await run.search(p99Limit: p99Limit, steps: searchSteps)
            if let best {
                print("highest sustained (p99 < \(p99Limit) ms, nothing lost):")
                print(best.table)
            } else {
                print("not even --rate \(rate) was sustained:")
                if let first = tried.first { print(first.table) }
            }
            if let half {
                print("at half of it:")
                print(half.table)
            }
            if let json { try encoder.encode(SearchResult(best: best, half: half, tried: tried)).write(to: URL(fileURLWithPath: json)) }
            if best == nil { throw ExitCode(2) }
            return
        }
        if phased {
            let phases = [TrafficPhase(rate: rate, seconds: duration)] + (try then.map(TrafficPhase.init(parsing:)))
            let results = try await run.executePhases(
                phases, backpressure: SenderBackpressure(rawValue: backpressure) ?? .queue, duringPhase: duringPhase)
            for result in results { print(result.table) }
            if let json { try encoder.encode(results).write(to: URL(fileURLWithPath: json)) }
            if results.contains(where: { $0.lost > 0 || $0.failedJoins > 0 || $0.sessionsEnded > 0 }) { throw ExitCode(2) }
            return
        }
        let result = try await run.execute()
        print(result.table)
        if let json { try encoder.encode(result).write(to: URL(fileURLWithPath: json)) }
        if result.lost > 0 || result.failedJoins > 0 { throw ExitCode(2) }
    }

    struct SearchResult: Codable {
        var best: FanoutResult?
        var half: FanoutResult?
        var tried: [FanoutResult]
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the machine.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// Counters the progress line reads while the run goes on.
final class LiveCounters: Sendable {
    let sent = Atomic<Int>(0)
    let received = Atomic<Int>(0)
    let loggedIn = Atomic<Int>(0)
    let joined = Atomic<Int>(0)
}

struct During: Codable, Sendable {
    var command: String
    var atSeconds: Double
    var tookMilliseconds: Double
    var status: Int32
}

struct FanoutResult: Codable, Sendable {
    var label: String
    var rooms: Int
    var roomSize: Int
    var ratePerRoom: Double
    var durationSeconds: Double
    var sessions: Int
    var sent: Int
    var expectedDeliveries: Int
    var deliveries: Int
    var lost: Int
    var deliveriesPerSecond: Double
    var latencyMilliseconds: [String: Double]
    var joinMilliseconds: [String: Double]
    /// Joins per second while the rooms filled (`--login-concurrency` joins at a time).
    var joinsPerSecond: Double?
    /// The time to the self-presence of an occupant that leaves and joins again a room
    /// holding the other `roomSize - 1` occupants (`--join-probes` times).
    var rejoinMilliseconds: [String: Double]?
    var failedJoins: Int
    /// Sessions the server ended during the measured phase (it should end none).
    var sessionsEnded = 0
    var serverCPUSeconds: Double?
    var serverCPUMicrosecondsPerDelivery: Double?
    var serverRSSKiB: Int?
    var serverRSSKiBPerSession: Double?
    /// (RSS after the joins − RSS after the logins) / (rooms × room size).
    var serverRSSKiBPerMembership: Double?
    /// The --during command: when it started in the window, how long it took, its exit status.
    var during: During?
    /// With --processes: how many child processes shared the rooms.
    var processes: Int?
    /// With --then: the phase (0: the first), what it offered (rate × room size × rooms),
    /// the messages not sent because the server did not read their sender
    /// (--backpressure drop), the time to deliver from 5 s into the phase, and the
    /// servers' peak resident memory in it.
    var phase: Int?
    var offeredDeliveriesPerSecond: Double?
    var heldBack: Int?
    var settledLatencyMilliseconds: [String: Double]?
    var serverPeakRSSKiB: Int?
    /// With --stall (first phase): occupants that stopped reading, how many of them the
    /// server ended, and the seconds from the stall to the others' seeing each leave.
    var stalled: Int?
    var stalledEnded: Int?
    var stalledLeftAfterSeconds: [Double]?
    /// With --big-sender (first phase): what it wrote, the copies of it the server
    /// delivered a second during the phase, and whether the server ended its session.
    var bigSenderSent: Int?
    var bigSenderTakenPerSecond: Double?
    var bigSenderEnded: Bool?
    var machine: String

    var table: String {
        func ms(_ key: String, _ values: [String: Double]) -> String { values[key].map { String(format: "%.2f", $0) } ?? "-" }
        var lines = [
            "\(label): \(rooms) room(s) × \(roomSize) occupants, \(ratePerRoom) msg/s per room, \(durationSeconds) s measured"
                + (processes.map { " (\($0) processes)" } ?? ""),
            "  deliveries       \(deliveries) of \(expectedDeliveries) (lost \(lost)), \(String(format: "%.0f", deliveriesPerSecond))/s",
            "  time to deliver  p50 \(ms("p50", latencyMilliseconds)) ms, p99 \(ms("p99", latencyMilliseconds)) ms, "
                + "p99.9 \(ms("p99.9", latencyMilliseconds)) ms, max \(ms("max", latencyMilliseconds)) ms",
            "  join             p50 \(ms("p50", joinMilliseconds)) ms, p99 \(ms("p99", joinMilliseconds)) ms, max \(ms("max", joinMilliseconds)) ms"
                + (failedJoins > 0 ? ", \(failedJoins) FAILED" : "")
                + (joinsPerSecond.map { String(format: ", %.0f joins/s while filling", $0) } ?? ""),
        ]
        if let rejoin = rejoinMilliseconds {
            lines.append("  join a full room p50 \(ms("p50", rejoin)) ms, p99 \(ms("p99", rejoin)) ms, max \(ms("max", rejoin)) ms")
        }
        if let during {
            lines.append(
                String(format: "  during           at %.1f s: exit %d after %.0f ms: ", during.atSeconds, during.status, during.tookMilliseconds)
                    + during.command
            )
        }
        if let phase, let offered = offeredDeliveriesPerSecond {
            lines.append(
                "  phase \(phase)          offered \(String(format: "%.0f", offered)) deliveries/s"
                    + (heldBack.map { ", \($0) message(s) held back by backpressure" } ?? "")
                    + (serverPeakRSSKiB.map { ", peak server RSS \($0) KiB" } ?? ""))
        }
        if let settled = settledLatencyMilliseconds {
            lines.append("  from 5 s in      p50 \(ms("p50", settled)) ms, p99 \(ms("p99", settled)) ms, max \(ms("max", settled)) ms")
        }
        if sessionsEnded > 0 { lines.append("  sessions ended by the server during the run: \(sessionsEnded)") }
        if let stalled, let ended = stalledEnded {
            lines.append(
                "  stalled          \(stalled) occupant(s) stopped reading; \(ended) ended by the server"
                    + (stalledLeftAfterSeconds.map { $0.isEmpty ? "" : ", seen leaving " + $0.map { String(format: "%.1f s", $0) }.joined(separator: ", ") + " after the stall" } ?? ""))
        }
        if let sent = bigSenderSent, let taken = bigSenderTakenPerSecond {
            lines.append(
                "  big sender       handed \(sent) message(s) to its socket; the server took \(String(format: "%.0f", taken))/s (its burst included)"
                    + (bigSenderEnded == true ? "; its session was ENDED" : ""))
        }
        if let cpu = serverCPUSeconds, let perDelivery = serverCPUMicrosecondsPerDelivery {
            lines.append("  server CPU       \(String(format: "%.2f", cpu)) s, \(String(format: "%.2f", perDelivery)) µs per delivery")
        }
        if let rss = serverRSSKiB, let perSession = serverRSSKiBPerSession {
            lines.append(
                "  server memory    \(rss) KiB RSS, \(String(format: "%.1f", perSession)) KiB per session"
                    + (serverRSSKiBPerMembership.map { String(format: ", %.1f KiB per room membership", $0) } ?? "")
            )
        }
        return lines.joined(separator: "\n")
    }
}

/// Percentiles of a sample, in milliseconds (`p50`, `p90`, `p99`, `p99.9`, `max`).
func percentiles(_ nanoseconds: [UInt64]) -> [String: Double] {
    guard !nanoseconds.isEmpty else { return [:] }
    let sorted = nanoseconds.sorted()
    func at(_ fraction: Double) -> Double {
        let index = min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.up)) - 1)
        return Double(sorted[max(0, index)]) / 1e6
    }
    return ["p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p99.9": at(0.999), "max": Double(sorted.last!) / 1e6]
}

/// A process's CPU time (user + system) and resident memory, from /proc.
struct ProcessSample {
    var cpuSeconds: Double
    var rssKiB: Int

    init?(pid: Int32) {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        cpuSeconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
        rssKiB = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
            .flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") } ?? 0
    }

    static func total(_ pids: [Int32]) -> ProcessSample? {
        let samples = pids.compactMap(ProcessSample.init(pid:))
        guard !samples.isEmpty, samples.count == pids.count else { return nil }
        return samples.dropFirst().reduce(samples[0]) { ProcessSample(cpuSeconds: $0.cpuSeconds + $1.cpuSeconds, rssKiB: $0.rssKiB + $1.rssKiB) }
    }

    init(cpuSeconds: Double, rssKiB: Int) {
        self.cpuSeconds = cpuSeconds
        self.rssKiB = rssKiB
    }
}

/// One run of the fan-out workload.
struct FanoutRun: Sendable {
    let rooms: Int
    let roomSize: Int
    let idleWait: Double
    let rate: Double
    let duration: Double
    let warmup: Double
    let drain: Double
    let senders: Int
    let joinProbes: Int
    let firstRoom: Int
    let during: String?
    let duringAt: Double
    let serverPIDs: [Int32]
    let stall: Int
    let bigSender: Bool
    let label: String
    let quiet: Bool
    let connection: ConnectionOptions
    let clientOptions: XMPPClient.Options
    let live = LiveCounters()

    init(command: Fanout, clientOptions: XMPPClient.Options) {
        rooms = command.rooms
        roomSize = command.roomSize
        idleWait = command.idleWait
        rate = command.rate
        duration = command.duration
        warmup = command.warmup
        drain = command.drain
        senders = command.senders
        joinProbes = command.joinProbes
        firstRoom = command.firstRoom
        during = command.during
        duringAt = command.duringAt
        serverPIDs = command.serverPIDs
        stall = command.stall
        bigSender = command.bigSender
        label = command.label
        quiet = command.quiet
        connection = command.connection
        self.clientOptions = clientOptions
    }

    /// The sessions and rooms, ready for traffic.
    struct Setup: Sendable {
        var clients: [XMPPClient]
        var roomJIDs: [String]
        var joinTimes: [UInt64]
        var joinsPerSecond: Double?
        var rejoinTimes: [UInt64]
        var failedJoins: Int
        var baseline: ProcessSample?
        var idle: ProcessSample?
        var joined: ProcessSample?
    }

    /// What one traffic phase measured.
    struct Traffic: Sendable {
        var rate: Double
        var sent: Int
        var latencies: [UInt64]
        /// Sessions the server ended during the phase.
        var ended = 0
        var before: ProcessSample?
        var after: ProcessSample?
        var during: During?
    }

    /// Logs every user in and has them join their rooms.
    func setUp() async throws -> Setup {
        let sessions = rooms * roomSize
        let baseline = ProcessSample.total(serverPIDs)
        var logins = Logins(connection: connection, options: clientOptions)
        for index in (roomSize - stall)..<roomSize { logins.receiveBufferBytes[firstRoom * roomSize + index] = 16 * 1024 }
        let clients = try await logins.all(count: sessions, firstUser: firstRoom * roomSize, counters: live)
        if idleWait > 0 { try await Task.sleep(for: .seconds(idleWait)) }  // a measured pause, not a synchronisation
        let idle = ProcessSample.total(serverPIDs)

        // Join: the first occupant of each room creates it, then the others join.
        let run = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let roomJIDs = (0..<rooms).map { "bench-\(run)-\($0)@\(connection.muc)" }
        var joinTimes: [UInt64] = []
        var failedJoins = 0
        for room in 0..<rooms {
            switch await Joins.join(clients[room * roomSize], room: roomJIDs[room], nick: "o0", create: true) {
            case .success(let time): joinTimes.append(time)
            case .failure(let error):
                FileHandle.standardError.write(Data("creating \(roomJIDs[room]) failed: \(error)\n".utf8))
                failedJoins += 1
            }
            live.joined.add(1, ordering: .relaxed)
        }
        let others = (0..<rooms).flatMap { room in (1..<roomSize).map { (room, $0) } }
        let filling = monotonicNanoseconds()
        let (times, failures) = await Joins.joinAll(
            others, clients: clients, rooms: roomJIDs, roomSize: roomSize, counters: live, concurrency: connection.loginConcurrency
        )
        let filled = monotonicNanoseconds()
        let joined = ProcessSample.total(serverPIDs)
        // An occupant leaves the full first room and joins again: the cost of joining a
        // room of this size (the occupant list it receives, the presence to everyone).
        var rejoinTimes: [UInt64] = []
        var probeFailures = 0
        // (Not a --stall occupant: they have small receive buffers.)
        let prober = clients[roomSize - 1 - stall]
        let nick = "o\(roomSize - 1 - stall)"
        for _ in 0..<(roomSize > 1 ? joinProbes : 0) {
            guard await Joins.leave(prober, room: roomJIDs[0], nick: nick) else {
                probeFailures += 1
                break
            }
            switch await Joins.join(prober, room: roomJIDs[0], nick: nick, create: false) {
            case .success(let time): rejoinTimes.append(time)
            case .failure: probeFailures += 1
            }
        }
        return Setup(
            clients: clients, roomJIDs: roomJIDs, joinTimes: joinTimes + times,
            joinsPerSecond: others.isEmpty ? nil : Double(others.count) / (Double(filled - filling) / 1e9),
            rejoinTimes: rejoinTimes, failedJoins: failedJoins + failures + probeFailures,
            baseline: baseline, idle: idle, joined: joined
        )
    }

    /// `rate` messages per second per room for warm-up + duration; the receivers read
    /// until the drain time after the window.
    func traffic(_ setup: Setup, rate: Double, startAt: UInt64? = nil) async -> Traffic {
        let start = startAt ?? monotonicNanoseconds() + 200_000_000
        let measureStart = start + UInt64(warmup * 1e9)
        let measureEnd = measureStart + UInt64(duration * 1e9)
        let stopReading = measureEnd + UInt64(drain * 1e9)
        let window = Window(start: measureStart, end: measureEnd)
        let (roomSize, senders, serverPIDs, live) = (self.roomSize, self.senders, self.serverPIDs, self.live)
        var traffic = Traffic(rate: rate, sent: 0, latencies: [])
        await withTaskGroup(of: Outcome.self) { group in
            for client in setup.clients {
                group.addTask {
                    let (latencies, ended) = await Receiver.read(client, window: window, until: stopReading, counters: live)
                    return .received(latencies, ended)
                }
            }
            for room in 0..<setup.roomJIDs.count {
                let roomClients = Array(setup.clients[(room * roomSize)..<(room * roomSize + senders)])
                let jid = setup.roomJIDs[room]
                group.addTask {
                    .sent(
                        await Sender.send(
                            roomClients, room: jid, index: room, rate: rate, from: start, until: measureEnd, window: window,
                            counters: live
                        )
                    )
                }
            }
            group.addTask {
                await sleep(until: measureStart)
                return .sample(0, ProcessSample.total(serverPIDs))
            }
            group.addTask {
                await sleep(until: measureEnd)
                return .sample(1, ProcessSample.total(serverPIDs))
            }
            if let command = during {
                let at = duringAt
                group.addTask {
                    await sleep(until: measureStart + UInt64(at * 1e9))
                    let started = monotonicNanoseconds()
                    let status = await runShell(command)
                    return .during(During(command: command, atSeconds: at, tookMilliseconds: Double(monotonicNanoseconds() - started) / 1e6, status: status))
                }
            }
            for await outcome in group {
                switch outcome {
                case .received(let values, let ended):
                    traffic.latencies += values
                    if ended { traffic.ended += 1 }
                case .sent(let count): traffic.sent += count
                case .sample(0, let sample): traffic.before = sample
                case .sample(_, let sample): traffic.after = sample
                case .during(let during): traffic.during = during
                }
            }
        }
        return traffic
    }

    func result(_ setup: Setup, _ traffic: Traffic) -> FanoutResult {
        let sessions = rooms * roomSize
        let expected = traffic.sent * roomSize
        let latencies = traffic.latencies
        var result = FanoutResult(
            label: label, rooms: rooms, roomSize: roomSize, ratePerRoom: traffic.rate, durationSeconds: duration, sessions: sessions,
            sent: traffic.sent, expectedDeliveries: expected, deliveries: latencies.count, lost: max(0, expected - latencies.count),
            deliveriesPerSecond: Double(latencies.count) / duration, latencyMilliseconds: percentiles(latencies),
            joinMilliseconds: percentiles(setup.joinTimes), failedJoins: setup.failedJoins, machine: Machine.description
        )
        result.sessionsEnded = traffic.ended
        result.joinsPerSecond = setup.joinsPerSecond
        result.during = traffic.during
        if !setup.rejoinTimes.isEmpty { result.rejoinMilliseconds = percentiles(setup.rejoinTimes) }
        if let before = traffic.before, let after = traffic.after {
            result.serverCPUSeconds = after.cpuSeconds - before.cpuSeconds
            if !latencies.isEmpty { result.serverCPUMicrosecondsPerDelivery = (after.cpuSeconds - before.cpuSeconds) / Double(latencies.count) * 1e6 }
        }
        if let baseline = setup.baseline, let idle = setup.idle, let joined = setup.joined {
            result.serverRSSKiB = joined.rssKiB
            result.serverRSSKiBPerSession = Double(idle.rssKiB - baseline.rssKiB) / Double(sessions)
            result.serverRSSKiBPerMembership = Double(joined.rssKiB - idle.rssKiB) / Double(sessions)
        }
        return result
    }

    /// One run at `rate`.
    func execute() async throws -> FanoutResult {
        let progress = quiet ? nil : Task { await showProgress(total: rooms * roomSize) }
        defer { progress?.cancel() }
        let setup = try await setUp()
        defer { Task { await Logins.closeAll(setup.clients) } }
        return result(setup, await traffic(setup, rate: rate))
    }

    /// Whether a phase sustained its load: nothing lost, p99 under the limit.
    static func sustained(_ result: FanoutResult, p99Limit: Double) -> Bool {
        result.lost == 0 && result.failedJoins == 0 && result.sessionsEnded == 0
            && (result.latencyMilliseconds["p99"] ?? .infinity) < p99Limit
    }

    /// The highest rate that is sustained: from `rate`, doubling until a phase fails,
    /// then `steps` bisections between the last success and the failure; then a phase
    /// at half of that rate, for the time to deliver under ordinary load.
    func search(p99Limit: Double, steps: Int) async throws -> (best: FanoutResult?, half: FanoutResult?, tried: [FanoutResult]) {
        let progress = quiet ? nil : Task { await showProgress(total: rooms * roomSize) }
        defer { progress?.cancel() }
        var setup = try await setUp()
        var tried: [FanoutResult] = []
        func phase(_ rate: Double) async throws -> FanoutResult {
            let measured = await traffic(setup, rate: rate)
            let outcome = result(setup, measured)
            tried.append(outcome)
            if measured.ended > 0 {
                // The server dropped sessions (overloaded): start the next phase afresh.
                FileHandle.standardError.write(Data("the server ended \(measured.ended) session(s): logging in again\n".utf8))
                await Logins.closeAll(setup.clients)
                setup = try await setUp()
            }
            let verdict = Self.sustained(outcome, p99Limit: p99Limit) ? "sustained" : "not sustained"
            FileHandle.standardError.write(
                Data(
                    ("rate \(String(format: "%.1f", rate))/s per room: \(String(format: "%.0f", outcome.deliveriesPerSecond)) deliveries/s, "
                        + "p99 \(String(format: "%.2f", outcome.latencyMilliseconds["p99"] ?? .nan)) ms, lost \(outcome.lost): \(verdict)\n").utf8
                )
            )
            // Let a backlog drain before the next phase.
            try? await Task.sleep(for: .seconds(1))
            return outcome
        }
        var best: FanoutResult?
        var low = 0.0
        var high = rate
        let first = try await phase(rate)
        if Self.sustained(first, p99Limit: p99Limit) {
            // Up: double while sustained.
            best = first
            low = rate
            high = rate * 2
            while true {
                let outcome = try await phase(high)
                guard Self.sustained(outcome, p99Limit: p99Limit) else { break }
                best = outcome
                low = high
                high *= 2
            }
        } else {
            // Down: halve (at most 5 times) until sustained.
            var lower = rate / 2
            while lower >= rate / 32 {
                let outcome = try await phase(lower)
                if Self.sustained(outcome, p99Limit: p99Limit) {
                    best = outcome
                    low = lower
                    break
                }
                high = lower
                lower /= 2
            }
        }
        for _ in 0..<max(0, steps) where low > 0 {
            let middle = (low + high) / 2
            let outcome = try await phase(middle)
            if Self.sustained(outcome, p99Limit: p99Limit) {
                best = outcome
                low = middle
            } else {
                high = middle
            }
        }
        var half: FanoutResult?
        if let best { half = try await phase(best.ratePerRoom / 2) }
        await Logins.closeAll(setup.clients)
        return (best, half, tried)
    }

    enum Outcome: Sendable {
        case received([UInt64], Bool)
        case sent(Int)
        case sample(Int, ProcessSample?)
        case during(During)
    }

    private func showProgress(total: Int) async {
        let started = ContinuousClock.now
        var lastSent = 0
        var lastReceived = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            if Task.isCancelled { return }
            let sent = live.sent.load(ordering: .relaxed)
            let received = live.received.load(ordering: .relaxed)
            let elapsed = (ContinuousClock.now - started).components.seconds
            FileHandle.standardError.write(
                Data(
                    ("  \(elapsed) s: logged in \(live.loggedIn.load(ordering: .relaxed))/\(total), joined "
                        + "\(live.joined.load(ordering: .relaxed))/\(total), sent \(sent - lastSent)/s, delivered \(received - lastReceived)/s\n").utf8
                )
            )
            lastSent = sent
            lastReceived = received
        }
    }
}

extension ProcessSample: Sendable {}

/// The measured interval, in CLOCK_MONOTONIC nanoseconds.
struct Window: Sendable {
    var start: UInt64
    var end: UInt64
    func contains(_ time: UInt64) -> Bool { time >= start && time < end }
}

/// Runs `command` with /bin/sh and returns its exit status (127 when it cannot start).
/// (posix_spawn and waitpid, not Foundation's Process: that notices the end of a command
/// only once every process that inherited its descriptors is gone, and a command that
/// starts a server leaves one running.)
func runShell(_ command: String) async -> Int32 {
    await ProcessSplit.run("/bin/sh", ["-c", command])
}

func sleep(until deadline: UInt64) async {
    let now = monotonicNanoseconds()
    if deadline > now { try? await Task.sleep(nanoseconds: deadline - now) }
}

enum Machine {
    static var description: String {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("model name") }.map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) }
        return "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(cpu ?? "unknown CPU"), "
            + "\(ProcessInfo.processInfo.physicalMemory / 1_073_741_824) GiB"
    }
}
