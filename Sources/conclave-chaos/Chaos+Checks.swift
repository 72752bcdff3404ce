import ClusterTestSupport
import Foundation
import XMPPCore
import XMPPStream

/// What is read from one session's event log, kept up to date incrementally (a session
/// of a long run receives tens of thousands of stanzas; the checks read them every step).
final class SessionIndex {
    var scanned = 0
    /// Numbered groupchat messages in arrival order.
    var numbered: [(index: Int, room: String, sender: String, number: Int)] = []
    /// The ids of error stanzas received (a refused message comes back with its id).
    var errorIDs: Set<String> = []
    /// "room sender number" of every numbered message received.
    private var seen: Set<String> = []

    func update(from session: Session) {
        let events = session.events(from: scanned)
        for (offset, entry) in events.enumerated() {
            guard case .element(let element) = entry.event else { continue }
            if element.type == "error", let id = element.id { errorIDs.insert(id) }
            if let (sender, number) = MUC.numbered(element), let room = MUC.bareFrom(element) {
                numbered.append((scanned + offset, room, sender, number))
                seen.insert("\(room) \(sender) \(number)")
            }
        }
        scanned += events.count
    }

    func echoed(_ sender: String, _ number: Int, in room: String) -> Bool {
        seen.contains("\(room) \(sender) \(number)")
    }
}

/// The checks made after every step.
extension Chaos {
    func index(_ session: Session) -> SessionIndex {
        let key = ObjectIdentifier(session)
        let index = indexes[key] ?? SessionIndex()
        indexes[key] = index
        index.update(from: session)
        return index
    }

    /// How long the others may take to see a dead node's occupants leave: the lease, a
    /// heartbeat, the bound, and what is left of PostgreSQL's restart grace.
    func deathBound() async -> Duration {
        let grace = (try? await sql.restartGraceLeft()) ?? 0
        return bound + lease + .milliseconds(Int64((settings.heartbeatSeconds + grace) * 1000))
    }

    /// Every node the harness started and did not stop still runs.
    func checkNodesRun() throws {
        for node in nodes.running {
            if let status = node.child.exitStatus {
                throw CheckFailure(
                    "nodes keep running",
                    "\(node.name) exited with status \(status) on its own (\(node.logPath)):\n\(node.tail(20))")
            }
            passed()
        }
    }

    /// Judges every membership that ended since the last look: a leave the harness sent,
    /// a removal it caused, or a stream on a node the step stopped are fine; anything
    /// else dropped someone on a live node.
    func audit() throws {
        try checkNodesRun()
        for client in clients {
            for membership in client.open {
                let session = membership.session
                // Only what arrived since the last look (a long run's logs are long).
                let start = audited[membership.id] ?? membership.joinedIndex + 1
                let events = session.events(from: start)
                audited[membership.id] = start + events.count
                let removal = events.lazy.compactMap { entry -> XMLElement? in
                    guard case .element(let element) = entry.event, element.name == "presence",
                        element.type == "unavailable",
                        MUC.bareFrom(element) == membership.room
                    else { return nil }
                    let codes = MUC.statusCodes(element)
                    return codes.contains("110") && !codes.contains("303") ? element : nil
                }.first
                if let removal {
                    let codes = MUC.statusCodes(removal).filter { $0 != "110" }
                    let fine =
                        (membership.leaving && codes.isEmpty)
                        || (membership.expectedRemoval.map { codes.contains($0.code) } ?? false)
                        || (codes.contains("332") && !gracefullyStopped.isEmpty)
                        // Its node was paused or stopped: the others may have removed it.
                        || affected.contains(session.node)
                        // A room made members-only by its owner a moment after the CLI or
                        // SQL made this occupant a member: the room may not have learnt of
                        // the affiliation yet (NOTIFY) and acts on the state before it.
                        || (codes.contains("322") && recentlyChangedOutside(membership.room))
                        // A removal awaited for a members-only switch, and an affiliation taken
                        // away outside at the same time: the room may apply the switch first
                        // and then remove the non-member for its affiliation (321).
                        || (codes.contains("321") && membership.expectedRemoval?.code == "322"
                            && recentlyChangedOutside(membership.room))
                    guard fine else {
                        throw CheckFailure(
                            "nobody on a live node is dropped",
                            "\(client.label) on \(session.node) (nick \(membership.nick)) was removed from \(membership.room) with status \(codes)"
                                + (membership.expectedRemoval.map { " (expected \($0.code): \($0.why))" }
                                    ?? " (nothing the harness did removes it)")
                                + ":\n    \(removal)"
                        )
                    }
                    passed()
                    trace(
                        "\(client.label) on \(session.node) (\(membership.nick)) out of \(membership.room) with status \(codes)"
                    )
                    closed[membership.nick] =
                        "\(client.label) left \(membership.room) (status \(codes)) at step \(step)"
                    // A room that becomes members-only tells only the removed occupant
                    // (MUC/Room+IQ.swift, "as Prosody does"): the others keep its presence.
                    if codes.contains("322") { unannounced.insert(membership.nick) }
                    if membership.expectedRemoval != nil { removals += 1 }
                    client.close(membership.id)
                    if codes.contains("332") { client.wants.insert(membership.room) }
                } else if session.ended {
                    try judgeEnd(of: session, client: client)
                    trace(
                        "\(client.label): \(membership.nick) in \(membership.room) ends with its stream on \(session.node) (\(session.endReason))"
                    )
                    closed[membership.nick] =
                        "\(client.label)'s stream on \(session.node) ended (\(session.endReason)) at step \(step)"
                    endedInRoom[membership.room, default: []].append((membership.nick, client.label))
                    client.close(membership.id)
                }
            }
            if let session = client.session, session.ended { try judgeEnd(of: session, client: client) }
        }
        retireEmptyTemporaryRooms()
    }

    private func judgeEnd(of session: Session, client: ChaosClient) throws {
        if session.closedByUs || affected.contains(session.node) || !(nodes.node(session.node)?.isRunning ?? false) {
            return
        }
        throw CheckFailure(
            "nobody on a live node is dropped",
            "the stream of \(client.label) on \(session.node) ended although the step did not touch \(session.node): \(session.endReason); last stanzas:\n      \(session.recent(from: max(session.count - 8, 0)))"
        )
    }

    /// Clients whose stream ended log in again on a live node and rejoin their rooms.
    func recover() async throws {
        // The streams to a node that is gone end within moments; judge them all at once,
        // or a client would rejoin a temporary room that is ending with its other occupants.
        let deadline = ContinuousClock.now + bound
        while let client = clients.first(where: { client in
            client.session.map { !$0.ended && !(nodes.node($0.node)?.isRunning ?? false) } ?? false
        }) {
            if ContinuousClock.now >= deadline {
                throw CheckFailure(
                    "streams end with their node",
                    "\(client.label)'s stream to \(client.session!.node), which is gone, is still open \(bound.text) later"
                )
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        try audit()
        for (offset, client) in clients.enumerated() {
            var rng = SeededRandom.step(step &* 64 &+ offset, of: settings.seed ^ 0x5EED)
            trace("recover: \(client.label) reconnects if needed")
            try await reconnect(client, rng: &rng)
            trace("recover: \(client.label) rejoins \(client.wants.count) room(s)")
            try await joinWanted(client)
        }
        try audit()
    }

    // MARK: - After every step

    func verify(_ rng: inout SeededRandom) async throws {
        try await recover()
        // A quiet round: every occupant says something in each of its rooms.
        var said: [String] = []
        for client in clients {
            for membership in client.open where client.say(membership.room) { said.append("\(client.label) in \(membership.room)") }
        }
        trace("check: quiet round: \(said.joined(separator: ", "))")
        try await checkMessagesAnswered()
        trace("check: removals")
        try await checkRemovals()
        trace("check: deliveries")
        try await checkDeliveries()
        trace("check: rosters")
        try await checkRosters()
        trace("check: epochs")
        try await checkEpochs()
        trace("check: durability")
        try await checkDurability()
        trace("check: temporary rooms vanish")
        try await checkTemporaryRoomsVanish()
        trace("check: the seed")
        try await runSeed(&rng)
        try checkNodesRun()
    }

    /// Every message sent is echoed to its sender (accepted) or refused with an error.
    func checkMessagesAnswered() async throws {
        let deadline = ContinuousClock.now + answerBound
        while true {
            var waiting: [(ChaosClient, SentMessage)] = []
            for client in clients {
                let sessions = client.sessions
                for (position, message) in client.unsettled {
                    let session = sessions[message.generation - 1]
                    let index = index(session)
                    if index.echoed(client.label, message.number, in: message.room) {
                        client.settle(position, echoed: true)
                        passed()
                    } else if index.errorIDs.contains("\(client.label)-\(message.number)") {
                        client.settle(position, echoed: false)
                        refusedMessages += 1
                        passed()
                    } else if session.ended {
                        client.settle(position, echoed: false)
                    } else {
                        waiting.append((client, message))
                    }
                }
            }
            if waiting.isEmpty { return }
            if ContinuousClock.now >= deadline {
                let (client, message) = waiting[0]
                throw CheckFailure(
                    "every message to a room is answered",
                    "\(waiting.count) message(s) neither echoed nor refused within \(answerBound.text), e.g. \(client.label) #\(message.number) to \(message.room), sent \((ContinuousClock.now - message.at).text) ago on \(client.sessions[message.generation - 1].node)\n    \(await placement(of: message.room))"
                )
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Every removal an affiliation or configuration change must cause happened.
    func checkRemovals() async throws {
        let deadline = ContinuousClock.now + answerBound
        while true {
            try audit()
            let pending = clients.flatMap { client in
                client.open.filter { $0.expectedRemoval != nil && !$0.removalOptional }.map { (client, $0) }
            }
            if pending.isEmpty { return }
            if ContinuousClock.now >= deadline {
                let (client, membership) = pending[0]
                throw CheckFailure(
                    "committed affiliations and configuration hold",
                    "\(client.label) on \(membership.session.node) is still in \(membership.room) \(answerBound.text) after \(membership.expectedRemoval!.why) (it must leave with status \(membership.expectedRemoval!.code))\n    \(await placement(of: membership.room))"
                )
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Every message a room accepted reaches every occupant on a live node exactly once,
    /// in its sender's order. An occupant is owed what was sent after its join was
    /// confirmed (the room handled the join first); a client whose stream ended starts
    /// over with its new membership (what it missed meanwhile is not owed).
    func checkDeliveries() async throws {
        let deadline = ContinuousClock.now + answerBound
        while true {
            var missing: [String] = []
            var owedCount = 0
            var verdicts: [() throws -> Void] = []
            var sentTo: [String: [String: [SentMessage]]] = [:]  // sender → room → messages
            for sender in clients { sentTo[sender.label] = Dictionary(grouping: sender.sent, by: \.room) }
            for receiver in clients {
                for membership in receiver.open where !membership.session.ended {
                    let index = index(membership.session)
                    var got: [String: [Int]] = [:]
                    for entry in index.numbered
                    where entry.index > membership.joinedIndex && entry.room == membership.room {
                        got[entry.sender, default: []].append(entry.number)
                    }
                    for sender in clients {
                        let sent = sentTo[sender.label]?[membership.room] ?? []
                        let received = got[sender.label] ?? []
                        let arrived = Set(received)
                        owedCount += sent.filter { $0.echoed && $0.at > membership.joinedAt }.count
                        let owed = sent.filter {
                            $0.echoed && $0.at > membership.joinedAt && !arrived.contains($0.number)
                        }
                        if !owed.isEmpty {
                            missing.append(
                                "\(receiver.label) on \(membership.session.node) in \(membership.room) misses \(ranges(owed.map(\.number))) of \(sender.label)"
                            )
                        }
                        let generation = Dictionary(
                            sent.map { ($0.number, $0.generation) }, uniquingKeysWith: { a, _ in a })
                        verdicts.append { [self] in
                            var counts: [Int: Int] = [:]
                            for number in received { counts[number, default: 0] += 1 }
                            let duplicated = counts.filter { $0.value > 1 }.map(\.key).sorted()
                            guard duplicated.isEmpty else {
                                throw CheckFailure(
                                    "each accepted message arrives exactly once",
                                    "\(receiver.label) on \(membership.session.node) got \(sender.label)'s \(ranges(duplicated)) in \(membership.room) more than once"
                                )
                            }
                            var highest: [Int: Int] = [:]
                            for number in received {
                                let session = generation[number] ?? 0
                                if let top = highest[session], number < top {
                                    throw CheckFailure(
                                        "messages arrive in their sender's order",
                                        "\(receiver.label) on \(membership.session.node) got \(sender.label) #\(number) after #\(top) in \(membership.room) (arrival order: \(received.suffix(20)))"
                                    )
                                }
                                highest[session] = max(highest[session] ?? number, number)
                            }
                            passed()
                        }
                    }
                }
            }
            if missing.isEmpty {
                for verdict in verdicts { try verdict() }
                trace(
                    "deliveries: \(verdicts.count) occupant × sender pairs, \(owedCount) copies owed, all arrived once, in order"
                )
                return
            }
            if ContinuousClock.now >= deadline {
                throw CheckFailure(
                    "each accepted message reaches every occupant on a live node",
                    "after \(answerBound.text): " + missing.prefix(6).joined(separator: "; ")
                        + (missing.count > 6 ? " (\(missing.count) in all)" : "")
                )
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Every occupant's view of its room (the presences it received since its join) is
    /// who is in it: dead nodes' occupants left, nobody else did, nobody from earlier runs stayed.
    func checkRosters() async throws {
        let deadline = ContinuousClock.now + (await deathBound())
        while true {
            var wrong: [String] = []
            var expected: [String: Set<String>] = [:]
            for client in clients {
                for membership in client.open where !membership.session.ended {
                    expected[membership.room, default: []].insert(membership.nick)
                }
            }
            var compared = 0
            var firstRoom: String?
            for client in clients {
                for membership in client.open where !membership.session.ended {
                    // The view is kept up to date incrementally, from the join on.
                    var (scanned, view) = views[membership.id] ?? (membership.sentIndex, [])
                    let events = membership.session.events(from: scanned)
                    for entry in events {
                        guard case .element(let element) = entry.event, element.name == "presence",
                            element.type != "error",
                            let (room, nick) = MUC.occupant(element), room == membership.room
                        else { continue }
                        if element.type == "unavailable" { view.remove(nick) } else { view.insert(nick) }
                    }
                    views[membership.id] = (scanned + events.count, view)
                    view.subtract(unannounced)
                    let want = expected[membership.room] ?? []
                    compared += 1
                    if view != want {
                        firstRoom = firstRoom ?? membership.room
                        let extra = view.subtracting(want).sorted().map { nick in
                            "\(nick) (\(closed[nick] ?? (nick.contains("-\(runTag)-") ? "?" : "not of this run")))"
                        }
                        let lacking = want.subtracting(view).sorted()
                        wrong.append(
                            "\(client.label) on \(membership.session.node) sees in \(membership.room)"
                                + (extra.isEmpty ? "" : " occupants who left: \(extra.joined(separator: ", "))")
                                + (lacking.isEmpty ? "" : " no presence of \(lacking.joined(separator: ", "))")
                        )
                    }
                }
            }
            if wrong.isEmpty {
                passed(compared)
                trace(
                    "rosters: \(compared) views match \(expected.mapValues(\.count).sorted { $0.key < $1.key }.map { "\($0.key.prefix { $0 != "@" }):\($0.value)" }.joined(separator: " "))"
                )
                return
            }
            if ContinuousClock.now >= deadline {
                throw CheckFailure(
                    "occupants of dead nodes leave; nobody else does",
                    wrong.prefix(6).joined(separator: ";\n    ") + (wrong.count > 6 ? " (\(wrong.count) in all)" : "")
                        + "\n    \(await placement(of: firstRoom ?? ""))"
                )
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    func checkEpochs() async throws {
        let owners: [String: (node: String?, epoch: Int64)]
        do {
            owners = try await sql.owners()
        } catch {
            throw CheckFailure("the database answers", "reading room_owners: \(SQL.describe(error))")
        }
        passed(epochs.observe(owners, context: "after step \(step)"))
        try epochs.verdict()
    }

    /// The configuration and affiliations committed are in PostgreSQL.
    func checkDurability() async throws {
        let rooms = world.persistentRooms
        let stored = try await sql.rooms(rooms)
        let affiliations = try await sql.affiliations(of: rooms)
        for room in rooms {
            guard let model = world.rooms[room], model.exists else { continue }
            guard let row = stored[room] else {
                throw CheckFailure(
                    "committed affiliations and configuration hold",
                    "the persistent room \(room) is gone from the rooms table")
            }
            guard row.persistent, row.membersOnly == model.membersOnly, row.name == model.name else {
                throw CheckFailure(
                    "committed affiliations and configuration hold",
                    "\(room) is stored with persistent \(row.persistent), members-only \(row.membersOnly), name \"\(row.name)\"; committed: persistent true, members-only \(model.membersOnly), name \"\(model.name)\""
                )
            }
            passed()
            for jid in world.managedJIDs {
                let found = affiliations[room]?[jid] ?? "none"
                let committed = world.affiliation(of: jid, in: room)
                guard found == committed else {
                    throw CheckFailure(
                        "committed affiliations and configuration hold",
                        "\(jid) is stored as \(found) in \(room); the last committed change made it \(committed)"
                    )
                }
                passed()
            }
        }
    }

    /// A temporary room whose occupants all left is removed.
    func checkTemporaryRoomsVanish() async throws {
        guard !vanishing.isEmpty else { return }
        let deadline = ContinuousClock.now + (await deathBound())
        while true {
            let left = try await sql.rooms(vanishing)
            vanishing = vanishing.filter { left[$0] != nil }
            if vanishing.isEmpty {
                passed()
                return
            }
            if ContinuousClock.now >= deadline {
                throw CheckFailure(
                    "temporary rooms end with their last occupant",
                    "\(vanishing.joined(separator: ", ")) still in the rooms table after their last occupant left\n    \(await placement(of: vanishing[0]))"
                )
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// The seed scenario, its two clients on two live nodes (the same one when only one runs).
    func runSeed(_ rng: inout SeededRandom) async throws {
        let live = nodes.live
        guard !live.isEmpty else { return }
        let first = live.randomElement(using: &rng)!
        let second = live.count > 1 ? live.filter { $0 !== first }.randomElement(using: &rng)! : first
        let output = runDirectory + "/seed-step\(step).out"
        let result = try await ChildProcess.run(
            settings.binDirectory + "/conclave-spec",
            [
                "--node", first.address, "--node", second.address, "--timeout",
                String(format: "%.1f", answerBound.seconds), settings.seedScript,
            ],
            directory: runDirectory, timeout: .seconds(120), outputFile: output
        )
        guard result.status == 0 else {
            throw CheckFailure(
                "the seed passes",
                "conclave-spec with Romeo on \(first.name), Juliet on \(second.name) exited \(result.status) (output in \(output)):\n\(result.output.split(separator: "\n").suffix(25).joined(separator: "\n"))\n    \(await placement(of: "room@conference.localhost"))"
            )
        }
        try? FileManager.default.removeItem(atPath: output)
        seedRuns += 1
        passed()
    }
}

/// "[#3-5, #9]" for [3, 4, 5, 9].
func ranges(_ numbers: [Int]) -> String {
    "[" + numberRuns(numbers.sorted(), prefix: "#").joined(separator: ", ") + "]"
}
