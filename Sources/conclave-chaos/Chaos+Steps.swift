import ClusterTestSupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What one step does to the cluster.
enum Operation: CustomStringConvertible {
    case start(String)
    /// SIGTERM: the node drains, then exits.
    case stop(String)
    case kill(String)
    /// Stopped (or killed) and started again at once under the same name.
    case restart(String, kill: Bool)
    /// SIGSTOP, longer than the lease, SIGCONT.
    case pause(String)
    /// To this many nodes, along 1 → 3 → 2 → 4 → 1 (`index`: the place in that cycle).
    case resize(Int, index: Int)
    case postgresRestart(outage: Double)
    /// `conclave node drain`, then SIGTERM.
    case drain(String)
    /// Every node down (killed or stopped), then these started.
    case allDown(kill: Bool, then: [String])
    case affiliation(room: String, jid: String, affiliation: String, via: Chaos.AffiliationPath)
    /// Nothing but the clients' traffic, for a moment.
    case quiet

    var description: String {
        switch self {
        case .start(let node): "start \(node)"
        case .stop(let node): "stop \(node) (SIGTERM)"
        case .kill(let node): "kill -9 \(node)"
        case .restart(let node, let kill): "restart \(node) (\(kill ? "kill -9" : "SIGTERM"), start)"
        case .pause(let node): "pause \(node) (SIGSTOP past the lease)"
        case .resize(let count, _): "resize to \(count)"
        case .postgresRestart(let outage): "restart PostgreSQL (down \(String(format: "%.1f", outage)) s)"
        case .drain(let node): "drain \(node), stop it"
        case .allDown(let kill, let then):
            "all down (\(kill ? "kill -9" : "SIGTERM")), start \(then.joined(separator: ","))"
        case .affiliation(let room, let jid, let affiliation, let via):
            "\(via.rawValue): \(jid.prefix { $0 != "@" }) \(affiliation) in \(room.prefix { $0 != "@" })"
        case .quiet: "quiet"
        }
    }

    /// The name `--operations` uses for this kind of step.
    var kind: String {
        switch self {
        case .start: "start"
        case .stop: "stop"
        case .kill: "kill"
        case .restart: "restart"
        case .pause: "pause"
        case .resize: "resize"
        case .postgresRestart: "postgres"
        case .drain: "drain"
        case .allDown: "all-down"
        case .affiliation: "affiliation"
        case .quiet: "quiet"
        }
    }

    static let kinds = [
        "start", "stop", "kill", "restart", "pause", "resize", "postgres", "drain", "all-down", "affiliation", "quiet",
    ]
}

extension Chaos {
    static let resizeCycle = [1, 3, 2, 4]

    func runStep(_ number: Int) async throws {
        var rng = SeededRandom.step(number, of: settings.seed)
        affected = []
        gracefullyStopped = []
        let operation = chooseOperation(&rng)
        action = operation.description
        trace("operation: \(action)")
        let load = Load(clients: clients)
        load.start()
        epochs.startPolling(context: "during step \(number) (\(action))")
        // The load goes on while the clients recover (rejoining rooms whose owner just
        // died), so that messages also meet rooms that are failing over.
        do {
            try await perform(operation, &rng)
            trace("operation done; clients recover")
            try await recover()
        } catch {
            await load.stop()
            await epochs.stopPolling()
            throw error
        }
        await load.stop()
        await epochs.stopPolling()
        try epochs.verdict()
        var scenarioRNG = SeededRandom.step(number, of: settings.seed ^ 0xC11E_5CE7)
        let done = try await scenario(&scenarioRNG)
        if !done.isEmpty { action += " + " + done.joined(separator: ", ") }
        try await verify(&rng)
    }

    func chooseOperation(_ rng: inout SeededRandom) -> Operation {
        let running = nodes.running.map(\.name)
        let stopped = nodes.stopped
        var choices: [(Operation, Int)] = []
        if let name = stopped.randomElement(using: &rng) { choices.append((.start(name), 3)) }
        if running.count >= 2 {
            choices.append((.stop(running.randomElement(using: &rng)!), 2))
            choices.append((.kill(running.randomElement(using: &rng)!), 3))
            choices.append((.drain(running.randomElement(using: &rng)!), 2))
        }
        if let name = running.randomElement(using: &rng) {
            choices.append((.restart(name, kill: rng.chance(0.5)), 3))
            choices.append((.pause(running.randomElement(using: &rng)!), 2))
        }
        // The next size along the cycle that differs from the current one.
        var next = (resizeIndex + 1) % Self.resizeCycle.count
        while min(Self.resizeCycle[next], settings.maxNodes) == running.count && next != resizeIndex {
            next = (next + 1) % Self.resizeCycle.count
        }
        let target = min(Self.resizeCycle[next], settings.maxNodes)
        choices.append((.resize(target, index: next), target == running.count ? 0 : 2))
        if embedded && settings.postgresRestarts {
            choices.append((.postgresRestart(outage: [0, 0, 1, 3].randomElement(using: &rng)!), 1))
        }
        let kill = rng.chance(0.5)
        let count = Int.random(in: 1...settings.maxNodes, using: &rng)
        choices.append((.allDown(kill: kill, then: Array(nodes.names.shuffled(using: &rng).prefix(count)).sorted()), 1))
        let rooms = world.persistentRooms.filter { world.rooms[$0]?.exists == true }
        if let room = rooms.randomElement(using: &rng) {
            let jid = world.managedJIDs.filter { $0 != clients[0].bare }.randomElement(using: &rng)!
            let affiliation = ["member", "member", "member", "none", "none", "outcast", "admin"].randomElement(
                using: &rng)!
            choices.append((.affiliation(room: room, jid: jid, affiliation: affiliation, via: .cli), 2))
            choices.append((.affiliation(room: room, jid: jid, affiliation: affiliation, via: .sql), 2))
        }
        choices.append((.quiet, 1))
        if let allowed = settings.operations {
            choices = choices.map { ($0.0, allowed.contains($0.0.kind) ? $0.1 : 0) }
        }
        return rng.weighted(choices) ?? .quiet
    }

    func perform(_ operation: Operation, _ rng: inout SeededRandom) async throws {
        switch operation {
        case .start(let name):
            try await startNodes([name])
        case .stop(let name):
            affected.insert(name)
            gracefullyStopped.insert(name)
            trace("SIGTERM \(name)")
            try await nodes.stop(name)
        case .kill(let name):
            affected.insert(name)
            trace("SIGKILL \(name)")
            try await nodes.kill(name)
        case .restart(let name, let kill):
            affected.insert(name)
            if kill {
                trace("SIGKILL \(name)")
                try await nodes.kill(name)
            } else {
                gracefullyStopped.insert(name)
                trace("SIGTERM \(name)")
                try await nodes.stop(name)
            }
            try await startNodes([name])
        case .pause(let name):
            try await pause(name)
        case .resize(let count, let index):
            resizeIndex = index
            var running = nodes.running.map(\.name)
            while running.count > count {
                let name = running.randomElement(using: &rng)!
                affected.insert(name)
                gracefullyStopped.insert(name)
                trace("SIGTERM \(name)")
                try await nodes.stop(name)
                running.removeAll { $0 == name }
            }
            if running.count < count {
                try await startNodes(Array(nodes.stopped.shuffled(using: &rng).prefix(count - running.count)))
            }
        case .postgresRestart(let outage):
            try await restartPostgres(outage: outage)
        case .drain(let name):
            affected.insert(name)
            gracefullyStopped.insert(name)
            let result = try await ChildProcess.run(
                settings.binDirectory + "/conclave",
                [
                    "node", "drain", name, "--timeout", "60", "--database-url", url.description, "--log-level",
                    "warning",
                ],
                directory: runDirectory, timeout: .seconds(90)
            )
            guard result.status == 0 else { throw CheckFailure("a drain completes", "\(result)") }
            passed()
            trace("SIGTERM \(name)")
            try await nodes.stop(name)
        case .allDown(let kill, let then):
            for node in nodes.running {
                affected.insert(node.name)
                if kill {
                    trace("SIGKILL \(node.name)")
                    try await nodes.kill(node.name)
                } else {
                    gracefullyStopped.insert(node.name)
                    trace("SIGTERM \(node.name)")
                    try await nodes.stop(node.name)
                }
            }
            try await startNodes(then)
        case .affiliation(let room, let jid, let affiliation, let via):
            try await setAffiliation(room: room, jid: jid, affiliation: affiliation, via: via)
        case .quiet:
            try await Task.sleep(for: .seconds(2))  // the step is this moment of plain traffic
        }
        passed()
    }

    /// SIGSTOP for longer than the lease, then SIGCONT: the others declare the node dead;
    /// it must notice its lost lease, close its clients' streams and rejoin.
    func pause(_ name: String) async throws {
        guard let node = nodes.node(name) else { return }
        affected.insert(name)
        let offset = node.logSize
        // During the first 10 s after PostgreSQL started, every lease that ran out since
        // counts as alive (the restart grace): a pause then must outlast the grace too.
        let grace = Duration.milliseconds(Int64(((try? await sql.restartGraceLeft()) ?? 0) * 1000))
        let pause = grace + lease + .milliseconds(1500)
        trace("SIGSTOP \(name) for \(pause.text)")
        nodes.pause(name)
        try await Task.sleep(for: pause)  // the pause itself
        trace("SIGCONT \(name)")
        nodes.resume(name)
        guard
            await node.waitForLog("lease lost", after: offset, timeout: bound + .seconds(settings.heartbeatSeconds))
                != nil
        else {
            throw CheckFailure(
                "a paused node rejoins",
                "\(name) was paused \(pause.text) (lease \(lease.text)) and did not log 'lease lost' within \(bound.text) of SIGCONT"
            )
        }
        passed()
        // Its clients' streams end (reset): their occupancies were ended by the others.
        let deadline = ContinuousClock.now + bound
        while let client = clients.first(where: {
            $0.session.map { $0.node == name && !$0.ended && !$0.closedByUs } ?? false
        }) {
            if ContinuousClock.now >= deadline {
                throw CheckFailure(
                    "a paused node rejoins",
                    "\(name) logged 'lease lost' but \(client.label)'s stream on it is still open \(bound.text) later"
                )
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        // It registers again as a new incarnation; until then it answers room input with
        // `service-unavailable` ("rejoining"), which the steps after this one must not meet.
        guard await node.waitForLog("joined the cluster", after: offset, timeout: bound) != nil else {
            throw CheckFailure("a paused node rejoins", "\(name) logged 'lease lost' but did not join the cluster again within \(bound.text)")
        }
        passed()
    }

    /// `db.sh stop`, the outage, `db.sh start` (the embedded server only).
    func restartPostgres(outage: Double) async throws {
        let stop = try await ChildProcess.run(
            settings.dbScript, ["stop"], directory: runDirectory, timeout: .seconds(60), keepConclaveVariables: true)
        guard stop.status == 0 else { throw ChaosError("\(stop)") }
        if outage > 0 { try await Task.sleep(for: .milliseconds(Int64(outage * 1000))) }  // the outage itself
        let start = try await ChildProcess.run(
            settings.dbScript, ["start"], directory: runDirectory, timeout: .seconds(90), keepConclaveVariables: true)
        guard start.status == 0 else { throw ChaosError("\(start)") }
        graceEnds = .now + .seconds(10.5)
    }

    /// What the clients do after the operation: 1–3 of joins (checked against the
    /// model), leaves, temporary rooms, nick changes, configuration and affiliation changes.
    func scenario(_ rng: inout SeededRandom) async throws -> [String] {
        var done: [String] = []
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            let connected = clients.filter(\.connected)
            guard !connected.isEmpty else { break }
            let members = connected.flatMap { client in client.open.map { (client, $0.room) } }
            let rooms = world.persistentRooms.filter { world.rooms[$0]?.exists == true }
            enum Action { case join, leave, temporary, nick, configure, affiliate }
            let action = rng.weighted([
                // Leaves only now and then when few are in rooms, so that the rooms stay busy.
                (Action.join, 4), (.leave, members.count >= 10 ? 3 : members.count >= 4 ? 1 : 0),
                (.temporary, world.liveTemporaryRooms.count < 2 ? 1 : 0),
                (.nick, members.isEmpty ? 0 : 2), (.configure, 2), (.affiliate, 1),
            ])!
            switch action {
            case .join:
                let candidates = connected.flatMap { client in
                    rooms.filter { client.membership(in: $0) == nil }.map { (client, $0) }
                }
                guard let (client, room) = candidates.randomElement(using: &rng) else { continue }
                let outcome = try await join(client, room)
                if outcome.refusal != nil { client.wants.remove(room) }
                done.append(
                    "\(client.label) joins \(room.prefix { $0 != "@" })" + (outcome.refusal.map { " (\($0))" } ?? ""))
            case .leave:
                let (client, room) = members.randomElement(using: &rng)!
                try await leave(client, room)
                done.append("\(client.label) leaves \(room.prefix { $0 != "@" })")
            case .temporary:
                temporaryCount += 1
                let room = "chaos-t-\(runTag)-\(temporaryCount)@conference.localhost"
                let creator = connected.randomElement(using: &rng)!
                guard try await createRoom(room, by: creator, persistent: false) else { continue }
                var joined = 0
                for other in connected.filter({ $0 !== creator }).shuffled(using: &rng).prefix(
                    Int.random(in: 1...2, using: &rng))
                {
                    if case .entered = try await join(other, room) { joined += 1 }
                }
                done.append("\(creator.label) opens \(room.prefix { $0 != "@" }) (+\(joined))")
            case .nick:
                let (client, room) = members.randomElement(using: &rng)!
                try await changeNick(client, in: room)
                done.append("\(client.label) renames in \(room.prefix { $0 != "@" })")
            case .configure:
                guard let room = rooms.randomElement(using: &rng), let model = world.rooms[room] else { continue }
                let membersOnly = rng.chance(0.5) ? !model.membersOnly : model.membersOnly
                let name = "chaos \(runTag) \(step).\(done.count)"
                let committed = try await configure(
                    room, by: clients[0], persistent: true, membersOnly: membersOnly, name: name)
                done.append(
                    "c1 configures \(room.prefix { $0 != "@" }) (members-only \(membersOnly))"
                        + (committed ? "" : " refused"))
            case .affiliate:
                guard let room = rooms.randomElement(using: &rng) else { continue }
                let jid = world.managedJIDs.filter { $0 != clients[0].bare }.randomElement(using: &rng)!
                let affiliation = ["member", "member", "none", "outcast", "admin"].randomElement(using: &rng)!
                try await setAffiliation(room: room, jid: jid, affiliation: affiliation, via: .iq)
                done.append("IQ: \(jid.prefix { $0 != "@" }) \(affiliation) in \(room.prefix { $0 != "@" })")
            }
        }
        return done
    }
}

extension Chaos.JoinOutcome {
    var refusal: String? {
        if case .refused(let condition) = self { return condition }
        return nil
    }
}
