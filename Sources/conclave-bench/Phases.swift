import Foundation
import NIOCore
import Synchronization
import XMPPCore
import XMPPStream

/// `fanout --then RATE:SECONDS …`: traffic whose rate changes from one phase to the next
/// with no pause between them (an overload, then ordinary load), each phase measured on
/// its own by the send time of its messages.
struct TrafficPhase: Sendable, Codable {
    var rate: Double
    var seconds: Double

    /// `RATE:SECONDS`.
    init(parsing text: String) throws {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let rate = Double(parts[0]), let seconds = Double(parts[1]), rate > 0, seconds > 0 else {
            throw PhaseError("a phase is RATE:SECONDS (messages a second per room, seconds), both positive: \(text)")
        }
        self.rate = rate
        self.seconds = seconds
    }

    init(rate: Double, seconds: Double) {
        self.rate = rate
        self.seconds = seconds
    }
}

struct PhaseError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// What a sender does with a message due while the server does not read it (its socket
/// is full: the server's backpressure).
enum SenderBackpressure: String, Sendable, Codable {
    /// Queue it in the client (an open loop: what the server does not take waits).
    case queue
    /// Do not send it (a client that waits for its socket, as an application would):
    /// counted as held back.
    case drop
}

/// The measured windows of the phases, back to back.
struct PhaseWindows: Sendable {
    var windows: [Window]

    func phase(of time: UInt64) -> Int? { windows.firstIndex { $0.contains(time) } }
}

extension FanoutRun {
    /// Per phase: latencies of what was sent in it, and of what was sent from 5 s into it.
    struct PhaseTraffic: Sendable {
        var phase: TrafficPhase
        var window: Window
        var sent = 0
        var heldBack = 0
        var latencies: [UInt64] = []
        var settled: [UInt64] = []
        var before: ProcessSample?
        var after: ProcessSample?
        var peakRSSKiB = 0
        var during: During?
        /// Sessions the server ended while this phase was measured (or, for the last
        /// phase, during the drain after it).
        var ended = 0
    }

    /// Runs the phases back to back after a warm-up at the first one's rate.
    func phasedTraffic(_ setup: Setup, phases: [TrafficPhase], backpressure: SenderBackpressure, duringPhase: Int) async -> (
        [PhaseTraffic]
    ) {
        let start = monotonicNanoseconds() + 200_000_000
        var built: [Window] = []
        var at = start + UInt64(warmup * 1e9)
        for phase in phases {
            let end = at + UInt64(phase.seconds * 1e9)
            built.append(Window(start: at, end: end))
            at = end
        }
        let windows = built
        let measureEnd = at
        let stopReading = measureEnd + UInt64(drain * 1e9)
        let all = PhaseWindows(windows: windows)
        var results = zip(phases, windows).map { PhaseTraffic(phase: $0, window: $1) }
        let (roomSize, senders, serverPIDs, live) = (self.roomSize, self.senders, self.serverPIDs, self.live)
        // The rate in force at a time: the first phase's during the warm-up.
        let schedule: [(start: UInt64, rate: Double)] =
            [(start: start, rate: phases[0].rate)] + zip(windows, phases).dropFirst().map { (start: $0.start, rate: $1.rate) }

        enum PhaseOutcome: Sendable {
            case received([[UInt64]], [[UInt64]], endedAt: UInt64?)
            case sent([Int], [Int])
            case sample(Int, ProcessSample?)
            case peak([Int])
            case during(Int, During)
        }
        await withTaskGroup(of: PhaseOutcome.self) { group in
            for client in setup.clients {
                group.addTask {
                    var latencies = Array(repeating: [UInt64](), count: windows.count)
                    var settled = latencies
                    var endedAt: UInt64?
                    while true {
                        let now = monotonicNanoseconds()
                        guard now < stopReading, let event = await client.next(timeout: .nanoseconds(Int64(stopReading - now))) else { break }
                        if event == .streamClosed || event == .disconnected {
                            endedAt = monotonicNanoseconds()
                            break
                        }
                        guard case .element(let element) = event, element.name == "message",
                            let body = element.child("body")?.text, body.hasPrefix("bench|")
                        else { continue }
                        let arrived = monotonicNanoseconds()
                        live.received.add(1, ordering: .relaxed)
                        let fields = body.split(separator: "|")
                        guard fields.count == 4, let sent = UInt64(fields[3]), arrived >= sent, let index = all.phase(of: sent) else { continue }
                        latencies[index].append(arrived - sent)
                        if sent >= windows[index].start + 5_000_000_000 { settled[index].append(arrived - sent) }
                    }
                    return .received(latencies, settled, endedAt: endedAt)
                }
            }
            for room in 0..<setup.roomJIDs.count {
                let roomClients = Array(setup.clients[(room * roomSize)..<(room * roomSize + senders)])
                let jid = setup.roomJIDs[room]
                group.addTask {
                    var sent = Array(repeating: 0, count: windows.count)
                    var held = sent
                    var sequence = 0
                    for (index, step) in schedule.enumerated() {
                        let stepEnd = index + 1 < schedule.count ? schedule[index + 1].start : measureEnd
                        var k = 0
                        while true {
                            let due = step.start + UInt64(Double(k) * 1e9 / step.rate)
                            guard due < stepEnd else { break }
                            k += 1
                            await sleep(until: due)
                            let now = monotonicNanoseconds()
                            let phase = all.phase(of: now)
                            let client = roomClients[sequence % roomClients.count]
                            sequence += 1
                            if backpressure == .drop, !client.isWritable {
                                if let phase { held[phase] += 1 }
                                continue
                            }
                            client.send(
                                XMLElement(
                                    "message", namespace: Namespace.client, ["to": jid, "type": "groupchat"],
                                    children: [XMLElement("body", namespace: Namespace.client, text: "bench|\(room)|\(sequence)|\(now)")]
                                )
                            )
                            live.sent.add(1, ordering: .relaxed)
                            if let phase { sent[phase] += 1 }
                        }
                    }
                    return .sent(sent, held)
                }
            }
            for (index, window) in windows.enumerated() {
                group.addTask {
                    await sleep(until: window.start)
                    return .sample(2 * index, ProcessSample.total(serverPIDs))
                }
                group.addTask {
                    await sleep(until: window.end)
                    return .sample(2 * index + 1, ProcessSample.total(serverPIDs))
                }
            }
            group.addTask {
                // The servers' resident memory, twice a second: its peak in each phase.
                var peaks = Array(repeating: 0, count: windows.count)
                while true {
                    let now = monotonicNanoseconds()
                    guard now < stopReading else { break }
                    if let index = all.phase(of: now), let sample = ProcessSample.total(serverPIDs) {
                        peaks[index] = max(peaks[index], sample.rssKiB)
                    }
                    await sleep(until: now + 500_000_000)
                }
                return .peak(peaks)
            }
            if let command = during, duringPhase < windows.count {
                let at = duringAt
                let phaseStart = windows[duringPhase].start
                group.addTask {
                    await sleep(until: phaseStart + UInt64(at * 1e9))
                    let started = monotonicNanoseconds()
                    let status = await runShell(command)
                    return .during(
                        duringPhase,
                        During(command: command, atSeconds: at, tookMilliseconds: Double(monotonicNanoseconds() - started) / 1e6, status: status))
                }
            }
            for await outcome in group {
                switch outcome {
                case .received(let latencies, let settled, let endedAt):
                    for index in results.indices {
                        results[index].latencies += latencies[index]
                        results[index].settled += settled[index]
                    }
                    if let endedAt {
                        // Before the first window: the first phase; after the last: the last.
                        let index = all.phase(of: endedAt) ?? (endedAt < windows[0].start ? 0 : windows.count - 1)
                        results[index].ended += 1
                    }
                case .sent(let sent, let held):
                    for index in results.indices {
                        results[index].sent += sent[index]
                        results[index].heldBack += held[index]
                    }
                case .sample(let slot, let sample):
                    if slot % 2 == 0 { results[slot / 2].before = sample } else { results[slot / 2].after = sample }
                case .peak(let peaks):
                    for index in results.indices { results[index].peakRSSKiB = peaks[index] }
                case .during(let index, let during):
                    results[index].during = during
                }
            }
        }
        return results
    }

    /// The phases measured, each as a result of its own.
    func executePhases(_ phases: [TrafficPhase], backpressure: SenderBackpressure, duringPhase: Int) async throws -> [FanoutResult] {
        let progress = quiet ? nil : Task { await showProgressForPhases(total: rooms * roomSize) }
        defer { progress?.cancel() }
        let setup = try await setUp()
        defer { Task { await Logins.closeAll(setup.clients) } }
        let measured = await phasedTraffic(setup, phases: phases, backpressure: backpressure, duringPhase: duringPhase)
        return measured.enumerated().map { index, phase in
            var traffic = Traffic(rate: phase.phase.rate, sent: phase.sent, latencies: phase.latencies)
            traffic.before = phase.before
            traffic.after = phase.after
            traffic.during = phase.during
            traffic.ended = phase.ended
            var outcome = result(setup, traffic)
            outcome.durationSeconds = phase.phase.seconds
            outcome.deliveriesPerSecond = Double(phase.latencies.count) / phase.phase.seconds
            outcome.offeredDeliveriesPerSecond = phase.phase.rate * Double(rooms * roomSize)
            outcome.heldBack = phase.heldBack
            outcome.phase = index
            if !phase.settled.isEmpty { outcome.settledLatencyMilliseconds = percentiles(phase.settled) }
            if phase.peakRSSKiB > 0 { outcome.serverPeakRSSKiB = phase.peakRSSKiB }
            return outcome
        }
    }

    private func showProgressForPhases(total: Int) async {
        var lastSent = 0
        var lastReceived = 0
        let started = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            if Task.isCancelled { return }
            let sent = live.sent.load(ordering: .relaxed)
            let received = live.received.load(ordering: .relaxed)
            FileHandle.standardError.write(
                Data(
                    ("  \((ContinuousClock.now - started).components.seconds) s: logged in \(live.loggedIn.load(ordering: .relaxed))/\(total), "
                        + "sent \(sent - lastSent)/s, delivered \(received - lastReceived)/s\n").utf8))
            lastSent = sent
            lastReceived = received
        }
    }
}
