import Storage
import Synchronization
import XMPPCore

/// The queue of durable room changes: one lane per room, so that a room whose writes
/// fail (the store is slow for it, or keeps refusing) never holds up another room's
/// writes, activations or hand-overs. Within a lane everything keeps its order:
/// consecutive changes under one fence are stored in one transaction of at most
/// `batching.limit` changes (so one input's changes may be split between two writes
/// when a backlog is large), and a `.run` runs once everything queued before it in the
/// room is stored.
final class RoomWriter: Sendable {
    enum Item: Sendable {
        case change(RoomFence, StoredRoomChange)
        /// Runs once what the room queued before it is stored: `stored` when it was,
        /// `failed` when the store refused some of it for good, `superseded` when the
        /// fence was refused (another node owns the room now).
        /// `superseded`: another node owns the room now (the write was refused as stale).
        case run(RoomFence, stored: @Sendable () -> Void, failed: @Sendable () -> Void, superseded: @Sendable () -> Void)
        case barrier(Countdown)
    }

    /// What storing one group of changes came to.
    enum Outcome: Sendable {
        case stored
        /// Another node owns the room: drop everything under this fence.
        case stale
        /// Some changes could never be stored and were dropped; the rest are stored.
        case rejected
    }

    /// Resumes its continuation once every lane it was put in has reached it.
    final class Countdown: Sendable {
        private let state: Mutex<(count: Int, continuation: CheckedContinuation<Void, Never>?)>

        init(_ continuation: CheckedContinuation<Void, Never>) {
            state = Mutex((0, continuation))
        }

        func add() { state.withLock { $0.count += 1 } }

        /// One lane reached it (or `add` calls are done, with `count == 0`).
        func reached(adding: Int = -1) {
            let ready = state.withLock { state -> CheckedContinuation<Void, Never>? in
                state.count += adding
                guard state.count <= 0, let continuation = state.continuation else { return nil }
                state.continuation = nil
                return continuation
            }
            ready?.resume()
        }
    }

    private struct Lane {
        var items: [Item] = []
    }

    private struct Fenced: Hashable {
        var room: JID
        var fence: RoomFence
    }

    private struct State {
        /// Rooms with queued or in-flight items; a room's lane goes when it is drained.
        var lanes: [JID: Lane] = [:]
        /// Fences the store refused: what else comes under them is dropped.
        var stale: Set<Fenced> = []
        /// Each room's part of the backlog (queued or being written), while it has one.
        var roomBacklogs: [JID: PressureGauge] = [:]
        var finished = false
    }

    private let state = Mutex(State())
    /// Bytes of the changes queued and not yet written (roughly: their text), with the
    /// marks between which the node slows the rooms' senders down.
    let backlog: PressureGauge
    /// How many changes one write takes (what the store has shown it stores in time).
    let batching = WriteBatching()
    private let starts: AsyncStream<JID>
    private let startContinuation: AsyncStream<JID>.Continuation

    /// The marks of one room's part of the backlog: a room whose writes fall behind (its
    /// rows locked, its store slow for it) slows and sheds its own senders long before
    /// the node's backlog slows everyone's.
    let roomHigh: Int

    init(backlog: PressureGauge = PressureGauge(high: 8 << 20, low: 4 << 20)) {
        self.backlog = backlog
        roomHigh = max(64 * 1024, backlog.high / 8)
        (starts, startContinuation) = AsyncStream.makeStream(of: JID.self)
    }

    func push(_ item: Item, for room: JID) {
        let start = state.withLock { state -> Bool in
            guard !state.finished else { return false }
            if case .change(_, let change) = item {
                let bytes = change.approximateBytes
                backlog.add(bytes)
                let gauge = state.roomBacklogs[room] ?? PressureGauge(high: roomHigh, low: roomHigh / 2)
                state.roomBacklogs[room] = gauge
                gauge.add(bytes)
            }
            if state.lanes[room] != nil {
                state.lanes[room]!.items.append(item)
                return false
            }
            state.lanes[room] = Lane(items: [item])
            return true
        }
        if start { startContinuation.yield(room) }
    }

    /// Returns once everything queued before the call (for `room`, or for every room)
    /// is stored or dropped.
    func flush(_ room: JID? = nil) async {
        await withCheckedContinuation { continuation in
            let countdown = Countdown(continuation)
            state.withLock { state in
                for key in room.map({ [$0] }) ?? Array(state.lanes.keys) where state.lanes[key] != nil {
                    countdown.add()
                    state.lanes[key]!.items.append(.barrier(countdown))
                }
            }
            countdown.reached(adding: 0)
        }
    }

    /// Stops taking items; `run` returns once the queued ones are written.
    func finish() {
        state.withLock { $0.finished = true }
        startContinuation.finish()
    }

    /// Writes until `finish`: each room's lane in a task of its own while it has items.
    /// `store` stores one group of changes (one transaction), retrying what may pass
    /// later, and says how it went.
    func run(store: @escaping @Sendable (JID, RoomFence, [StoredRoomChange]) async -> Outcome) async {
        await withDiscardingTaskGroup { group in
            for await room in starts {
                group.addTask { await self.drain(room, store: store) }
            }
        }
    }

    /// `bytes` of `room`'s changes are written (or dropped): out of the backlogs.
    private func stored(_ bytes: Int, of room: JID) {
        backlog.add(-bytes)
        let gauge = state.withLock { $0.roomBacklogs[room] }
        gauge?.add(-bytes)
        // Gone once empty and nobody waits on it (decided under the lock that `push` adds under).
        state.withLock { state in
            if let gauge, state.roomBacklogs[room] === gauge, gauge.level <= 0, gauge.waiting == 0 { state.roomBacklogs[room] = nil }
        }
    }

    /// `room`'s part of the backlog, while it has one.
    func backlog(of room: JID) -> PressureGauge? { state.withLock { $0.roomBacklogs[room] } }

    private func take(_ room: JID) -> [Item]? {
        state.withLock { state in
            guard let lane = state.lanes[room] else { return nil }
            guard !lane.items.isEmpty else {
                state.lanes[room] = nil
                return nil
            }
            state.lanes[room]!.items = []
            return lane.items
        }
    }

    private func isStale(_ room: JID, _ fence: RoomFence) -> Bool {
        state.withLock { $0.stale.contains(Fenced(room: room, fence: fence)) }
    }

    private func drain(_ room: JID, store: @Sendable (JID, RoomFence, [StoredRoomChange]) async -> Outcome) async {
        // Changes refused for good since the last `.run` (per fence): that run fails.
        var failed: Set<RoomFence> = []
        var group: (fence: RoomFence, changes: [StoredRoomChange], bytes: Int)?
        func storeGroup() async {
            guard let (fence, changes, bytes) = group else { return }
            group = nil
            defer { stored(bytes, of: room) }
            guard !isStale(room, fence) else { return }
            switch await store(room, fence, changes) {
            case .stored: break
            case .stale: state.withLock { _ = $0.stale.insert(Fenced(room: room, fence: fence)) }
            case .rejected: failed.insert(fence)
            }
        }
        while let items = take(room) {
            for item in items {
                if case .change(let fence, let change) = item {
                    if let current = group, current.fence != fence || current.changes.count >= batching.limit {
                        await storeGroup()
                    }
                    if group == nil { group = (fence, [], 0) }
                    group!.changes.append(change)
                    group!.bytes += change.approximateBytes
                    continue
                }
                await storeGroup()
                switch item {
                case .run(let fence, let stored, let failure, let superseded):
                    guard !isStale(room, fence) else {
                        superseded()
                        continue
                    }
                    if failed.remove(fence) != nil { failure() } else { stored() }
                case .barrier(let countdown):
                    countdown.reached()
                case .change:
                    break
                }
            }
            await storeGroup()
        }
    }
}

/// The size of one write, in changes, adapted to how long the store takes: halved when a
/// write ran out of time (and smaller than the write that did), doubled back after a run
/// of writes of the current size that took a small part of the deadline, but kept below
/// the size that last ran out of time for a while. A backlog is then
/// written in pieces the store can take, never retried whole against a deadline that
/// it always exceeds.
final class WriteBatching: Sendable {
    static let smallest = 1
    static let largest = 4096
    static let initial = 256
    /// Quick writes of the full size in a row before the size doubles.
    static let quickStreak = 8
    /// Quick writes after which the size that last ran out of time may be tried again.
    static let forgetAfter = 64

    private struct State {
        var limit = WriteBatching.initial
        var quick = 0
        /// The size of the write that last ran out of time: the size stays below it until
        /// `forgetAfter` quick writes.
        var ceiling: Int?
        var quickSinceTimeout = 0
    }

    private let state = Mutex(State())

    var limit: Int { state.withLock { $0.limit } }

    /// A write of `count` changes was stored in `took`, within `deadline`.
    func stored(_ count: Int, took: Duration, deadline: Duration) {
        state.withLock { state in
            if took > deadline / 2 {
                state.limit = max(Self.smallest, min(state.limit, count) / 2)
                state.quick = 0
                return
            }
            guard took < deadline / 10 else { return }
            state.quickSinceTimeout += 1
            if state.quickSinceTimeout >= Self.forgetAfter { state.ceiling = nil }
            guard count >= state.limit else { return }
            state.quick += 1
            guard state.quick >= Self.quickStreak else { return }
            state.quick = 0
            let cap = state.ceiling.map { max(Self.smallest, $0 - 1) } ?? Self.largest
            state.limit = min(cap, Self.largest, state.limit * 2)
        }
    }

    /// A write of `count` changes ran out of time.
    func timedOut(_ count: Int) {
        state.withLock { state in
            state.limit = max(Self.smallest, min(state.limit, count) / 2)
            state.ceiling = min(state.ceiling ?? count, count)
            state.quick = 0
            state.quickSinceTimeout = 0
        }
    }
}

/// At most `limit` callers at a time between `acquire` and `release` (the writes in
/// flight, so that the lanes leave connections for activations and reads).
final class AsyncLimiter: Sendable {
    private let state: Mutex<(available: Int, waiting: [CheckedContinuation<Void, Never>])>

    init(_ limit: Int) {
        state = Mutex((limit, []))
    }

    func acquire() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Bool in
                guard state.available > 0 else {
                    state.waiting.append(continuation)
                    return false
                }
                state.available -= 1
                return true
            }
            if ready { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.waiting.isEmpty else {
                state.available += 1
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }
}

extension StoredRoomChange {
    /// About what the change takes in memory and on the wire to the store: its text.
    var approximateBytes: Int {
        switch self {
        case .configuration(let json, _, _): 64 + json.utf8.count
        case .occupant(let occupant):
            64 + occupant.realJID.description.utf8.count + occupant.nick.utf8.count + occupant.presence.utf8.count
                + occupant.homeNode.utf8.count
        case .occupantLeft(let real): 64 + real.description.utf8.count
        case .subject(let subject, let nick, _): 64 + subject.utf8.count + (nick?.utf8.count ?? 0)
        case .affiliation(let jid, _, let reason, let nick): 64 + jid.description.utf8.count + (reason?.utf8.count ?? 0) + (nick?.utf8.count ?? 0)
        case .history(let entry, _): 64 + entry.stanza.utf8.count + entry.nick.utf8.count + (entry.id?.utf8.count ?? 0)
        case .deleted: 64
        }
    }
}
