import ClusterTestSupport
import Synchronization

/// "At most one node serves a room at a time": every claim bumps the room's fencing
/// epoch in `room_owners`, so the epochs seen must only grow. This remembers the highest
/// epoch seen per room (from the rows earlier runs left on) and the first regression.
/// While an operation runs it also polls the table, so that a regression that a later
/// claim hides again is seen too.
final class EpochWatch: Sendable {
    private let state = Mutex(State())
    private let sql: SQL

    struct State {
        var highest: [String: (epoch: Int64, node: String?)] = [:]
        var regression: String?
        var observations = 0
        var poller: Task<Void, Never>?
    }

    init(sql: SQL) { self.sql = sql }

    /// Compares one reading of `room_owners` with what was seen; returns how many rooms it checked.
    @discardableResult
    func observe(_ owners: [String: (node: String?, epoch: Int64)], context: String) -> Int {
        state.withLock { state in
            state.observations += 1
            for (room, owner) in owners {
                if let seen = state.highest[room] {
                    if owner.epoch < seen.epoch, state.regression == nil {
                        state.regression =
                            "room_owners of \(room): epoch \(owner.epoch) (node \(owner.node ?? "NULL")) after epoch \(seen.epoch) (node \(seen.node ?? "NULL")) was seen (\(context))"
                    }
                    if owner.epoch > seen.epoch { state.highest[room] = (owner.epoch, owner.node) }
                } else {
                    state.highest[room] = (owner.epoch, owner.node)
                }
            }
            return owners.count
        }
    }

    var rooms: Int { state.withLock { $0.highest.count } }
    var maxEpoch: Int64 { state.withLock { $0.highest.values.map(\.epoch).max() ?? 0 } }

    /// Polls `room_owners` every 250 ms until `stopPolling` (errors, e.g. while PostgreSQL
    /// restarts, are skipped: the next reading catches up).
    func startPolling(context: String) {
        let task = Task { [self] in
            while !Task.isCancelled {
                if let owners = try? await sql.owners() { observe(owners, context: context) }
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
        state.withLock { $0.poller = task }
    }

    func stopPolling() async {
        let task = state.withLock { state -> Task<Void, Never>? in
            defer { state.poller = nil }
            return state.poller
        }
        task?.cancel()
        await task?.value
    }

    /// Throws the first regression seen.
    func verdict() throws {
        if let regression = state.withLock({ $0.regression }) {
            throw CheckFailure("fencing epochs only grow", regression)
        }
    }
}

/// Numbered messages sent while an operation runs: every 150 ms one client with an open
/// membership says something in one of its rooms. What the rooms accept is checked after
/// the step like everything else.
final class Load: Sendable {
    private let clients: [ChaosClient]
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(clients: [ChaosClient]) { self.clients = clients }

    func start() {
        let clients = clients
        let task = Task {
            while !Task.isCancelled {
                let speakers = clients.filter { $0.connected && !$0.open.isEmpty }
                if let client = speakers.randomElement(), let room = client.open.randomElement()?.room {
                    client.say(room)
                }
                try? await Task.sleep(for: .milliseconds(150))
            }
        }
        self.task.withLock { $0 = task }
    }

    func stop() async {
        let task = self.task.withLock { task -> Task<Void, Never>? in
            defer { task = nil }
            return task
        }
        task?.cancel()
        await task?.value
    }
}
