import ClusterTestSupport
import Foundation
import PostgresNIO
import XMPPCore
import XMPPStream

/// What clients do: connect, join, leave, change nick, configure, change affiliations.
/// Every request to a room must be answered within the bound; what an answer commits
/// goes into the model (`world`), and what it must do to occupants (removals) into their
/// memberships.
extension Chaos {
    /// Connects `client` to a random live node unless it is connected; tries the live
    /// nodes again until the recovery bound (a node may be dying or starting).
    func reconnect(_ client: ChaosClient, rng: inout SeededRandom) async throws {
        if client.connected { return }
        let deadline = ContinuousClock.now + recovery
        var lastError = "no live node"
        while true {
            if let node = nodes.live.randomElement(using: &rng) {
                let generation = client.nextGeneration
                do {
                    let session = try await Session.open(
                        label: client.label, node: node.name, port: node.port, generation: generation,
                        account: client.account,
                        password: client.password, resource: "\(client.label)-\(runTag)-g\(generation)", timeout: bound
                    )
                    client.attach(session)
                    trace("\(client.label) logged in on \(node.name) as \(session.jid)")
                    passed()
                    return
                } catch {
                    lastError = "\(node.name): \(error)"
                }
            }
            if ContinuousClock.now >= deadline {
                throw CheckFailure(
                    "clients can log in",
                    "\(client.label) could not log in on any live node (\(nodes.live.map(\.name))) within \(recovery.text): \(lastError)"
                )
            }
            try await Task.sleep(for: .milliseconds(200))  // the next attempt's pace
        }
    }

    /// Joins every room `client` wants and is not in.
    func joinWanted(_ client: ChaosClient) async throws {
        for room in client.wants.sorted() where client.membership(in: room) == nil {
            if case .refused = try await join(client, room) { client.wants.remove(room) }
        }
    }

    enum JoinOutcome {
        case entered(Membership)
        case refused(String)
        /// The client's stream ended before the answer (its node died).
        case sessionEnded
    }

    /// Joins `room` with a new nick and checks the answer against the model: a refusal
    /// the model predicts is an answer like any other; a transient error is retried until
    /// the recovery bound; no answer within the bound is a failure.
    /// `mayExist`: creating, but the room may exist already (it is repaired).
    @discardableResult
    func join(_ client: ChaosClient, _ room: String, mayExist: Bool = false) async throws -> JoinOutcome {
        let expected = world.expectation(joining: room, as: client.bare)
        let deadline = ContinuousClock.now + recovery
        var transient: [String] = []
        while true {
            guard let session = client.session, !session.ended else { return .sessionEnded }
            let nick = client.newNick()
            let mark = session.count
            session.send(
                XMLElement(
                    "presence", namespace: Namespace.client, ["to": "\(room)/\(nick)"],
                    children: [
                        XMLElement(
                            "x", namespace: Namespace.muc,
                            children: [XMLElement("history", namespace: Namespace.muc, ["maxstanzas": "0"])])
                    ]
                )
            )
            guard
                let answer = await session.waitFor(
                    after: mark, timeout: answerBound, where: { MUC.answersPresence($0, to: room, as: nick) })
            else {
                if session.ended { return .sessionEnded }
                throw CheckFailure(
                    "every join is answered",
                    "\(client.label) on \(session.node): the join of \(room) as \(nick) was not answered within \(answerBound.text)"
                        + (transient.isEmpty
                            ? "" : " (after \(transient.count) transient refusals: \(transient.last!))")
                        + "\n    \(await placement(of: room))\n    received meanwhile:\n      \(session.recent(from: mark))"
                )
            }
            passed()
            if let error = MUC.error(answer.element) {
                if case .refused(let condition) = expected, condition == error.condition {
                    trace(
                        "\(client.label) on \(session.node): join of \(room) refused as expected: \(MUC.describe(error))"
                    )
                    passed()
                    return .refused(condition)
                }
                if recentlyChangedOutside(room) {
                    // The room may not have applied a change made by the CLI or SQL a
                    // moment ago (it learns of it by NOTIFY): it answers by the old state.
                    trace(
                        "\(client.label) on \(session.node): join of \(room) refused by the state before a change made outside: \(MUC.describe(error)); again"
                    )
                    try await Task.sleep(for: .milliseconds(100))  // the next attempt's pace
                    continue
                }
                if MUC.isTransient(error), ContinuousClock.now < deadline {
                    transient.append(MUC.describe(error))
                    trace("\(client.label) on \(session.node): join of \(room) refused for now: \(MUC.describe(error))")
                    transientRefusals += 1
                    try await Task.sleep(for: .milliseconds(250))  // the next attempt's pace
                    continue
                }
                throw CheckFailure(
                    MUC.isTransient(error)
                        ? "rooms recover within the bound" : "committed affiliations and configuration hold",
                    "\(client.label) on \(session.node): joining \(room) was refused with \(MUC.describe(error))"
                        + (transient.isEmpty ? "" : " (\(transient.count) refusals over \(recovery.text))")
                        + "; expected: it \(expected) (affiliation \(world.affiliation(of: client.bare, in: room)), members-only \(world.rooms[room]?.membersOnly ?? false))"
                        + "\n    \(await placement(of: room))"
                )
            }
            let created = MUC.statusCodes(answer.element).contains("201")
            // Entered by the state before a change made outside: the change, once the room
            // applies it, removes the newcomer.
            var lateRemoval: (code: String, why: String)?
            if case .refused = expected, !created, recentlyChangedOutside(room) {
                lateRemoval = (
                    world.affiliation(of: client.bare, in: room) == "outcast" ? "301" : "321",
                    "a change made outside reached \(room) after \(client.label) entered"
                )
            }
            guard
                expected == .enters(created: created) || (mayExist && expected == .enters(created: true))
                    || lateRemoval != nil
            else {
                throw CheckFailure(
                    "committed affiliations and configuration hold",
                    "\(client.label) on \(session.node): joining \(room) it \(created ? "entered and created the room (201)" : "entered"); expected: it \(expected) (affiliation \(world.affiliation(of: client.bare, in: room)), members-only \(world.rooms[room]?.membersOnly ?? false))\n    \(answer.element)"
                )
            }
            passed()
            if created {
                // Created: stored before the self-presence was sent, with its creator as owner.
                var model = world.rooms[room] ?? World.Room(jid: room, persistent: false, exists: true)
                model.exists = true
                model.affiliations[client.bare] = "owner"
                world.rooms[room] = model
            }
            membershipCount += 1
            let membership = Membership(
                id: membershipCount, room: room, nick: nick, session: session, sentIndex: mark,
                joinedIndex: answer.index, joinedAt: answer.at,
                expectedRemoval: lateRemoval
            )
            client.add(membership)
            if lateRemoval == nil { client.wants.insert(room) }
            trace("\(client.label) on \(session.node) entered \(room) as \(nick)\(created ? " (created it)" : "")")
            return .entered(membership)
        }
    }

    /// Leaves `room`; the room must answer with the own unavailable presence.
    func leave(_ client: ChaosClient, _ room: String) async throws {
        client.wants.remove(room)
        guard let membership = client.membership(in: room) else { return }
        let session = membership.session
        guard !session.ended else { return }
        client.update(membership.id) { $0.leaving = true }
        // The room may have removed the occupant just before (a room made members-only
        // tells only the removed occupant, with 322): a leave it is no longer in goes
        // unanswered, as in Prosody. So the removal counts as the answer, even when it
        // arrived before the leave was sent — anything since the last audit.
        let mark = min(session.count, audited[membership.id] ?? membership.joinedIndex + 1)
        session.send(
            XMLElement(
                "presence", namespace: Namespace.client, ["to": "\(room)/\(membership.nick)", "type": "unavailable"]))
        let answer = await session.waitFor(after: mark, timeout: answerBound) {
            $0.name == "presence" && $0.type == "unavailable" && MUC.bareFrom($0) == room
                && MUC.statusCodes($0).contains("110") && !MUC.statusCodes($0).contains("303")
        }
        if let answer, MUC.statusCodes(answer.element).contains("322") {
            // The others were not told (see above): they keep its presence.
            unannounced.insert(membership.nick)
        }
        if answer == nil && !session.ended {
            throw CheckFailure(
                "every leave is answered",
                "\(client.label) on \(session.node): leaving \(room) (nick \(membership.nick)) was not answered within \(answerBound.text)\n    \(await placement(of: room))\n    received meanwhile:\n      \(session.recent(from: mark))"
            )
        }
        passed()
        trace(
            "\(client.label) on \(session.node) left \(room) (\(membership.nick))"
                + (answer == nil ? ": its stream ended first" : ""))
        client.close(membership.id)
        retireEmptyTemporaryRooms()
    }

    /// Changes the nick in `room`: the room answers with the old nick's unavailable (303)
    /// and the new nick's self-presence, or an error.
    func changeNick(_ client: ChaosClient, in room: String) async throws {
        guard let membership = client.membership(in: room), !membership.session.ended else { return }
        let session = membership.session
        let nick = client.newNick()
        let mark = session.count
        session.send(XMLElement("presence", namespace: Namespace.client, ["to": "\(room)/\(nick)"]))
        guard
            let answer = await session.waitFor(
                after: mark, timeout: answerBound, where: { MUC.answersPresence($0, to: room, as: nick) })
        else {
            if session.ended { return }
            throw CheckFailure(
                "every presence to a room is answered",
                "\(client.label) on \(session.node): the nick change in \(room) from \(membership.nick) to \(nick) was not answered within \(answerBound.text)\n    \(await placement(of: room))\n    received meanwhile:\n      \(session.recent(from: mark))"
            )
        }
        passed()
        if let error = MUC.error(answer.element) {
            if MUC.isTransient(error) { return }
            // Removed (banned, made a non-member) by a change of the same step that the
            // room handled first: it is no longer an occupant to rename.
            var removed = false
            for entry in session.events(from: mark) {
                guard case .element(let element) = entry.event else { continue }
                if element.name == "presence", element.type == "unavailable",
                    element[attribute: "from"] == "\(room)/\(membership.nick)", MUC.statusCodes(element).contains("110")
                {
                    removed = true
                }
            }
            if error.condition == "item-not-found", removed || client.membership(in: room)?.expectedRemoval != nil {
                trace("\(client.label): nick change in \(room) refused: it was removed from the room first")
                return
            }
            throw CheckFailure(
                "nick changes",
                "\(client.label): changing nick in \(room) to \(nick) was refused with \(MUC.describe(error))")
        }
        client.update(membership.id) { $0.nick = nick }
        trace("\(client.label) on \(session.node) is now \(nick) in \(room) (was \(membership.nick))")
    }

    /// Sends an IQ to `room` and waits for its answer; `nil` when the stream ended first.
    func roomIQ(_ client: ChaosClient, to room: String, type: String, _ payload: XMLElement, what: String) async throws
        -> XMLElement?
    {
        guard let session = client.session, !session.ended else { return nil }
        iqCount += 1
        let id = "\(client.label)-iq\(iqCount)"
        let mark = session.count
        session.send(
            XMLElement("iq", namespace: Namespace.client, ["type": type, "id": id, "to": room], children: [payload]))
        guard
            let answer = await session.waitFor(
                after: mark, timeout: answerBound,
                where: {
                    $0.name == "iq" && $0.id == id && ($0.type == "result" || $0.type == "error")
                })
        else {
            if session.ended { return nil }
            throw CheckFailure(
                "every IQ to a room is answered",
                "\(client.label) on \(session.node): \(what) (IQ \(id)) was not answered within \(answerBound.text)\n    \(await placement(of: room))\n    received meanwhile:\n      \(session.recent(from: mark))"
            )
        }
        passed()
        return answer.element
    }

    /// The owner submits the configuration form. Returns whether it was committed.
    @discardableResult
    func configure(_ room: String, by client: ChaosClient, persistent: Bool, membersOnly: Bool, name: String)
        async throws -> Bool
    {
        let fields: [(String, String)] = [
            ("FORM_TYPE", Namespace.mucRoomConfig), ("muc#roomconfig_roomname", name),
            ("muc#roomconfig_persistentroom", persistent ? "1" : "0"),
            ("muc#roomconfig_membersonly", membersOnly ? "1" : "0"),
        ]
        let form = XMLElement(
            "x", namespace: Namespace.dataForms, ["type": "submit"],
            children: fields.map { field, value in
                XMLElement(
                    "field", namespace: Namespace.dataForms, ["var": field],
                    children: [XMLElement("value", namespace: Namespace.dataForms, text: value)])
            }
        )
        let what = "configuring \(room) (members-only \(membersOnly), name \"\(name)\")"
        guard
            let answer = try await roomIQ(
                client, to: room, type: "set", XMLElement("query", namespace: Namespace.mucOwner, children: [form]),
                what: what)
        else { return false }
        if let error = MUC.error(answer) {
            if MUC.isTransient(error) { return false }
            throw CheckFailure(
                "configuration changes", "\(client.label): \(what) was refused with \(MUC.describe(error))")
        }
        trace("\(client.label): \(what) committed")
        var model = world.rooms[room] ?? World.Room(jid: room, persistent: persistent, exists: true)
        let becameMembersOnly = membersOnly && !model.membersOnly
        model.exists = true
        model.membersOnly = membersOnly
        model.name = name
        world.rooms[room] = model
        if becameMembersOnly {
            // Occupants whose stream ended and whose room may not have removed them yet.
            for ended in endedInRoom[room] ?? [] {
                guard let other = clients.first(where: { $0.label == ended.label }),
                    (World.rank[world.affiliation(of: other.bare, in: room)] ?? 0) < 1
                else { continue }
                unannounced.insert(ended.nick)
            }
            for other in clients {
                guard let membership = other.membership(in: room) else { continue }
                if (World.rank[world.affiliation(of: other.bare, in: room)] ?? 0) < 1 {
                    other.update(membership.id) {
                        // A removal committed earlier (an outcast by IQ) happens first.
                        if $0.expectedRemoval == nil {
                            $0.expectedRemoval = ("322", "\(room) became members-only (\(client.label)'s form)")
                        }
                    }
                    other.wants.remove(room)
                }
            }
        }
        return true
    }

    /// Creates `room` by joining it, then configures it (a new room is locked until then).
    /// Returns whether the room is there, configured.
    @discardableResult
    func createRoom(_ room: String, by client: ChaosClient, persistent: Bool, mayExist: Bool = false) async throws
        -> Bool
    {
        guard case .entered = try await join(client, room, mayExist: mayExist) else { return false }
        let name = "\(room.prefix { $0 != "@" }) \(runTag)"
        let deadline = ContinuousClock.now + recovery
        while try await !configure(room, by: client, persistent: persistent, membersOnly: false, name: name) {
            guard client.connected else { return false }
            guard ContinuousClock.now < deadline else {
                throw CheckFailure(
                    "rooms recover within the bound",
                    "\(client.label) could not configure its new room \(room) within \(recovery.text)")
            }
            try await Task.sleep(for: .milliseconds(250))  // the next attempt's pace
        }
        return true
    }

    enum AffiliationPath: String { case iq = "IQ", cli = "CLI", sql = "SQL" }

    /// Changes an affiliation by the owner's IQ, the CLI or plain SQL; what is committed
    /// goes into the model, with the removal it must cause.
    func setAffiliation(room: String, jid: String, affiliation: String, via path: AffiliationPath) async throws {
        switch path {
        case .iq:
            let owner = clients[0]
            let item = XMLElement("item", namespace: Namespace.mucAdmin, ["affiliation": affiliation, "jid": jid])
            let what = "setting \(jid) to \(affiliation) in \(room)"
            guard
                let answer = try await roomIQ(
                    owner, to: room, type: "set", XMLElement("query", namespace: Namespace.mucAdmin, children: [item]),
                    what: what)
            else { return }
            if let error = MUC.error(answer) {
                if MUC.isTransient(error) { return }
                throw CheckFailure(
                    "affiliation changes", "\(owner.label): \(what) was refused with \(MUC.describe(error))")
            }
        case .cli:
            try await setAffiliationByCLI(room: room, jid: jid, affiliation: affiliation, commit: false)
        case .sql:
            let query: PostgresQuery
            if affiliation == "none" {
                query = "DELETE FROM room_affiliations WHERE room = \(room) AND jid = \(jid)"
            } else if world.affiliation(of: jid, in: room) != "none" {
                query =
                    "UPDATE room_affiliations SET affiliation = \(affiliation), updated_at = now() WHERE room = \(room) AND jid = \(jid)"
            } else {
                query =
                    "INSERT INTO room_affiliations (room, jid, affiliation, reason) VALUES (\(room), \(jid), \(affiliation), 'chaos')"
            }
            do {
                try await sql.execute(query)
                changedOutside[room] = .now
            } catch {
                throw CheckFailure("affiliation changes", "SQL \(query.sql) failed: \(SQL.describe(error))")
            }
        }
        commitAffiliation(
            room: room, jid: jid, affiliation: affiliation, why: "\(jid) set to \(affiliation) by \(path.rawValue)")
    }

    func setAffiliationByCLI(room: String, jid: String, affiliation: String, commit: Bool = true) async throws {
        let result = try await ChildProcess.run(
            settings.binDirectory + "/conclave",
            [
                "room", "affiliation", "set", room, jid, affiliation, "--reason", "chaos", "--database-url",
                url.description, "--log-level", "warning",
            ],
            directory: runDirectory, timeout: .seconds(60)
        )
        guard result.status == 0 else { throw CheckFailure("affiliation changes", "\(result)") }
        changedOutside[room] = .now
        passed()
        if commit {
            commitAffiliation(
                room: room, jid: jid, affiliation: affiliation, why: "\(jid) set to \(affiliation) by CLI")
        }
    }

    /// A change of `room` was committed by the CLI or SQL less than the bound ago.
    func recentlyChangedOutside(_ room: String) -> Bool {
        changedOutside[room].map { ContinuousClock.now - $0 < answerBound } ?? false
    }

    func commitAffiliation(room: String, jid: String, affiliation: String, why: String) {
        trace("committed: \(why) in \(room)")
        world.rooms[room]?.affiliations[jid] = affiliation == "none" ? nil : affiliation
        guard let code = world.removal(after: affiliation, in: room) else {
            // Back in good standing while a removal committed outside a moment ago is still
            // awaited: the room may apply this change first and the other as already undone.
            if recentlyChangedOutside(room) {
                for client in clients where client.bare == jid {
                    if let membership = client.membership(in: room), membership.expectedRemoval != nil {
                        client.update(membership.id) { $0.removalOptional = true }
                    }
                }
            }
            return
        }
        for client in clients where client.bare == jid {
            client.wants.remove(room)
            if let membership = client.membership(in: room) {
                // A removal committed earlier happens first: the room applies them in order.
                client.update(membership.id) { if $0.expectedRemoval == nil { $0.expectedRemoval = (code, why) } }
            }
        }
    }

    /// Temporary rooms whose last occupant (of this run's clients) is gone: they must
    /// vanish from `rooms`; their names are not used again.
    func retireEmptyTemporaryRooms() {
        for room in world.liveTemporaryRooms where !clients.contains(where: { $0.membership(in: room) != nil }) {
            world.rooms[room]?.exists = false
            world.rooms[room]?.retired = true
            for client in clients { client.wants.remove(room) }
            trace("\(room): its last occupant left; it must vanish")
            vanishing.append(room)
        }
    }

    /// Where a room is, for failure messages: `conclave room where` and the owner row.
    func placement(of room: String) async -> String {
        var text = "placement of \(room):"
        if let result = try? await ChildProcess.run(
            settings.binDirectory + "/conclave",
            ["room", "where", room, "--database-url", url.description, "--log-level", "warning"],
            directory: runDirectory, timeout: .seconds(20)
        ) {
            // Without the CLI's own log lines (they start with a timestamp).
            let lines = result.output.split(separator: "\n").filter { !($0.first?.isNumber ?? false) }
            text += " `conclave room where`: " + lines.joined(separator: "; ")
        }
        if let rows = try? await sql.rows(
            "SELECT name, incarnation, state, (lease_until > now())::bool FROM cluster_nodes ORDER BY name",
            as: (String, Int64, String, Bool).self
        ) {
            text +=
                "; cluster_nodes: "
                + rows.map { "\($0.0)#\($0.1) \($0.2)\($0.3 ? " alive" : " expired")" }.joined(separator: ", ")
        }
        return text
    }
}
