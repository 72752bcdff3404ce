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

/// A flag tasks share.
final class SharedFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
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
        /// Messages sent to the first room (whose stalled occupants' copies are not expected).
        var firstRoomSent = 0
    }

    /// --stall and --big-sender, measured in the first phase.
    struct Disturbance: Sendable {
        var stalledEnded = 0
        /// Per stalled occupant the others saw leave: seconds from the stall.
        var stalledLeft: [Double] = []
        var bigSent = 0
        var bigTaken = 0
        var bigEnded = false
    }

    /// The --big-sender client, logged in and alone in a room of its own.
    struct BigSender: Sendable {
        var client: XMPPClient
        var room: String
        /// Set when the server ends its session: it stops sending.
        let ended = SharedFlag()
    }

    func bigSenderSetUp() async throws -> BigSender {
        var options = clientOptions
        // A small send buffer: the client sees at once that the server stops reading it.
        options.sendBufferBytes = 64 * 1024
        let logins = Logins(connection: connection, options: options)
        let client = try await logins.all(count: 1, firstUser: (firstRoom + rooms) * roomSize, counters: LiveCounters())[0]
        let room = "bench-big-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))@\(connection.muc)"
        if case .failure(let error) = await Joins.join(client, room: room, nick: "big", create: true) {
            throw PhaseError("the big sender could not create \(room): \(error)")
        }
        return BigSender(client: client, room: room)
    }

    /// Runs the phases back to back after a warm-up at the first one's rate.
    func phasedTraffic(
        _ setup: Setup, phases: [TrafficPhase], backpressure: SenderBackpressure, duringPhase: Int, big: BigSender?
    ) async -> ([PhaseTraffic], Disturbance) {
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
        var disturbance = Disturbance()
        let (roomSize, senders, serverPIDs, live) = (self.roomSize, self.senders, self.serverPIDs, self.live)
        // --stall: the last occupants of the first room; the others watch them leave.
        let stalled = Set((roomSize - stall)..<roomSize)
        let stalledFrom = Set(stalled.map { "\(setup.roomJIDs[0])/o\($0)" })
        // The rate in force at a time: the first phase's during the warm-up.
        let schedule: [(start: UInt64, rate: Double)] =
            [(start: start, rate: phases[0].rate)] + zip(windows, phases).dropFirst().map { (start: $0.start, rate: $1.rate) }

        enum PhaseOutcome: Sendable {
            case received([[UInt64]], [[UInt64]], endedAt: UInt64?, left: [String: UInt64])
            case stalled(ended: Bool)
            case bigSent(Int)
            case bigReceived(taken: Int, ended: Bool)
            case sent([Int], [Int], room: Int)
            case sample(Int, ProcessSample?)
            case peak([Int])
            case during(Int, During)
        }
        let leftIndex = Dictionary(uniqueKeysWithValues: stalledFrom.sorted().enumerated().map { ($1, $0) })
        var leftSeconds = Array(repeating: Double.infinity, count: leftIndex.count)
        await withTaskGroup(of: PhaseOutcome.self) { group in
            for (index, client) in setup.clients.enumerated() {
                if stalled.contains(index) {
                    group.addTask {
                        // Stops reading for the first phase, then reads to see whether the
                        // server ended the session.
                        await sleep(until: windows[0].start)
                        try? await client.setReading(false)
                        await sleep(until: windows[0].end)
                        try? await client.setReading(true)
                        while true {
                            let now = monotonicNanoseconds()
                            guard now < stopReading, let event = await client.next(timeout: .nanoseconds(Int64(stopReading - now))) else { break }
                            if event == .streamClosed || event == .disconnected { return .stalled(ended: true) }
                        }
                        return .stalled(ended: false)
                    }
                    continue
                }
                let watches = index < roomSize && !stalledFrom.isEmpty
                group.addTask {
                    var latencies = Array(repeating: [UInt64](), count: windows.count)
                    var settled = latencies
                    var endedAt: UInt64?
                    var left: [String: UInt64] = [:]
                    while true {
                        let now = monotonicNanoseconds()
                        guard now < stopReading, let event = await client.next(timeout: .nanoseconds(Int64(stopReading - now))) else { break }
                        if event == .streamClosed || event == .disconnected {
                            endedAt = monotonicNanoseconds()
                            break
                        }
                        // (A leave before the stall is not it: the join probes leave and join again.)
                        if watches, case .element(let element) = event, element.name == "presence", element.type == "unavailable",
                            let from = element[attribute: "from"], stalledFrom.contains(from), left[from] == nil,
                            monotonicNanoseconds() >= windows[0].start
                        {
                            left[from] = monotonicNanoseconds()
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
                    return .received(latencies, settled, endedAt: endedAt, left: left)
                }
            }
            if let big {
                let (client, jid) = (big.client, big.room)
                let ended = big.ended
                group.addTask {
                    // As fast as the socket takes: a message whenever it is writable.
                    await sleep(until: windows[0].start)
                    var sent = 0
                    while true {
                        let now = monotonicNanoseconds()
                        guard now < windows[0].end, !ended.isSet else { break }
                        guard client.isWritable else {
                            try? await Task.sleep(nanoseconds: 1_000_000)
                            continue
                        }
                        client.send(
                            XMLElement(
                                "message", namespace: Namespace.client, ["to": jid, "type": "groupchat"],
                                children: [XMLElement("body", namespace: Namespace.client, text: "big|\(sent)|\(now)")]))
                        sent += 1
                        if sent % 32 == 0 { await Task.yield() }
                    }
                    return .bigSent(sent)
                }
                group.addTask {
                    var taken = 0
                    while true {
                        let now = monotonicNanoseconds()
                        guard now < stopReading, let event = await client.next(timeout: .nanoseconds(Int64(stopReading - now))) else { break }
                        if event == .streamClosed || event == .disconnected {
                            ended.set()
                            return .bigReceived(taken: taken, ended: true)
                        }
                        if case .element(let element) = event, element.name == "message", element.child("body")?.text.hasPrefix("big|") == true,
                            windows[0].contains(monotonicNanoseconds())
                        {
                            taken += 1
                        }
                    }
                    return .bigReceived(taken: taken, ended: false)
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
                    return .sent(sent, held, room: room)
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
                case .stalled(let ended):
                    if ended { disturbance.stalledEnded += 1 }
                case .bigSent(let sent):
                    disturbance.bigSent = sent
                case .bigReceived(let taken, let ended):
                    disturbance.bigTaken = taken
                    disturbance.bigEnded = ended
                case .received(let latencies, let settled, let endedAt, let left):
                    for (from, at) in left {
                        let seconds = Double(at - min(at, windows[0].start)) / 1e9
                        if let index = leftIndex[from] { leftSeconds[index] = min(leftSeconds[index], seconds) }
                    }
                    for index in results.indices {
                        results[index].latencies += latencies[index]
                        results[index].settled += settled[index]
                    }
                    if let endedAt {
                        // Before the first window: the first phase; after the last: the last.
                        let index = all.phase(of: endedAt) ?? (endedAt < windows[0].start ? 0 : windows.count - 1)
                        results[index].ended += 1
                    }
                case .sent(let sent, let held, let room):
                    for index in results.indices {
                        results[index].sent += sent[index]
                        results[index].heldBack += held[index]
                        if room == 0 { results[index].firstRoomSent = sent[index] }
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
        disturbance.stalledLeft = leftSeconds.filter(\.isFinite).sorted()
        return (results, disturbance)
    }

    /// The phases measured, each as a result of its own.
    func executePhases(_ phases: [TrafficPhase], backpressure: SenderBackpressure, duringPhase: Int) async throws -> [FanoutResult] {
        let progress = quiet ? nil : Task { await showProgressForPhases(total: rooms * roomSize) }
        defer { progress?.cancel() }
        let setup = try await setUp()
        defer { Task { await Logins.closeAll(setup.clients) } }
        let big = bigSender ? try await bigSenderSetUp() : nil
        defer { if let big { Task { await big.client.close() } } }
        let (measured, disturbance) = await phasedTraffic(
            setup, phases: phases, backpressure: backpressure, duringPhase: duringPhase, big: big)
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
            if stall > 0 {
                // The stalled occupants' copies are not expected (from the first phase on).
                outcome.expectedDeliveries -= phase.firstRoomSent * stall
                outcome.lost = max(0, outcome.expectedDeliveries - outcome.deliveries)
                if index == 0 {
                    outcome.stalled = stall
                    outcome.stalledEnded = disturbance.stalledEnded
                    outcome.stalledLeftAfterSeconds = disturbance.stalledLeft
                }
            }
            if big != nil, index == 0 {
                outcome.bigSenderSent = disturbance.bigSent
                outcome.bigSenderTakenPerSecond = Double(disturbance.bigTaken) / phase.phase.seconds
                outcome.bigSenderEnded = disturbance.bigEnded
            }
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
