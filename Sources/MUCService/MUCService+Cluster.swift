import Logging
import MUC
import Storage
import Synchronization
public import XMPPCore

extension MUCService {
    // MARK: - Changes made elsewhere

    /// A room's affiliations, configuration or existence changed in the store. `origin`
    /// is the writer's fence (`nil`: the CLI, plain SQL). The owner re-reads the room
    /// once its own queued writes are stored, and applies the difference: an occupant
    /// who lost membership of a members-only room leaves with 321 on every node.
    public func roomChanged(_ room: JID, origin: String?) async {
        // This node's own writes (under any epoch) are in its memory already.
        if let origin, origin.hasPrefix(placement.nodeName + ":") { return }
        await reread(room, rejected: false)
        logger.info("applied a change made elsewhere", metadata: ["room": "\(room)", "origin": "\(origin ?? "sql")"])
    }

    /// The store refused one of the room's changes for good: the room is re-read so
    /// that what it holds (configuration, affiliations, subject, history) is what the
    /// store has, and occupants are told what changed back.
    func reconcile(_ room: JID) async {
        await reread(room, rejected: true)
    }

    /// Re-reads `room` from the store once its queued writes are stored, and applies
    /// the difference. `rejected`: memory may be ahead of the store (a refused write),
    /// so the subject and history are taken from the store as well.
    private func reread(_ room: JID, rejected: Bool) async {
        guard let box = rooms.withLock({ $0[room] }) else { return }
        let fence = box.state.withLock { $0.fence }
        // A configuration or affiliation change the room makes while this reads is in
        // its memory but maybe not yet in what was read: applying that older read would
        // undo it. Read again until nothing was queued meanwhile (checked under the
        // room's lock, where changes are queued).
        for attempt in 1...20 {
            let queued = box.queuedSettings.load(ordering: .relaxed)
            await flushWrites(room)
            let stored: StoredRoom?
            do {
                stored = try await store.loadRoom(room)
            } catch {
                logger.error("reading a changed room failed", metadata: ["room": "\(room)", "error": "\(error)"])
                return
            }
            let (current, ended) = box.state.withLock { slot -> (Bool, Bool) in
                guard rejected || box.queuedSettings.load(ordering: .relaxed) == queued || attempt == 20 else {
                    return (false, false)
                }
                return (true, apply(stored, to: &slot, box: box, fence: fence, rejected: rejected))
            }
            if ended { end(box) }
            if current { break }
        }
    }

    /// Applies what the store holds (`stored`; `nil`: the room is gone) to the room;
    /// `true` when the room ended (the caller ends it, outside the room's lock).
    private func apply(_ stored: StoredRoom?, to slot: inout Slot, box: RoomBox, fence: RoomFence?, rejected: Bool) -> Bool {
        do {
            guard slot.phase == .active, var current = slot.room, slot.fence == fence else { return false }
            var effects: RoomEffects
            if let stored {
                let fresh = Self.room(from: stored, logger: logger)
                effects = current.applyExternal(configuration: fresh.configuration, environment: environment)
                let more = current.applyExternal(
                    affiliations: Self.affiliations(stored.affiliations), environment: environment
                )
                effects.output += more.output
                if rejected {
                    current.subject = fresh.subject
                    current.subjectNick = fresh.subjectNick
                    current.subjectStamp = fresh.subjectStamp
                    current.history = fresh.history
                }
                if current.isEmpty && !current.configuration.persistent {
                    effects.roomEnded = true
                    effects.changes = [.destroyed]
                } else {
                    effects.changes = []
                }
            } else {
                effects = current.destroyedElsewhere(environment: environment)
                effects.changes = []
            }
            slot.room = current
            apply(effects, slot: &slot, box: box, request: nil, occupantsChanged: true)
            if effects.roomEnded {
                slot.phase = .gone
                return true
            }
            return false
        }
    }

    // MARK: - Membership changes

    /// Nodes died: their sessions leave the rooms this node serves, the others are told.
    public func removeOccupantsOfUnreachableNodes() {
        let boxes = rooms.withLock { Array($0.values) }
        for box in boxes {
            var ended = false
            box.state.withLock { slot in
                guard slot.phase == .active else { return }
                let gone = slot.homes.filter { !placement.isReachable($0.value) }.map(\.key).sorted()
                for real in gone {
                    guard var room = slot.room, room.occupant(real: real) != nil else {
                        slot.homes[real] = nil
                        continue
                    }
                    let effects = room.sessionEnded(real, environment: environment)
                    slot.room = room
                    apply(effects, slot: &slot, box: box, request: nil, occupantsChanged: true)
                    if effects.roomEnded {
                        slot.phase = .gone
                        ended = true
                        break
                    }
                }
            }
            if ended { end(box) }
        }
    }

    /// The ring changed: rooms that now belong to another node are handed over.
    /// Returns once they all are.
    public func rebalance() async {
        let me = placement.nodeName
        let moving = rooms.withLock { rooms in
            rooms.values.filter { box in
                // No owner at all (the last node is stopping): the room stays here.
                guard let owner = placement.owner(of: box.jid), owner != me else { return false }
                return box.state.withLock { $0.phase == .active }
            }
        }
        guard !moving.isEmpty else { return }
        // Until every node routes by the new ring, input for these rooms still comes
        // here: keep handling it, so that a sender's earlier stanzas are never overtaken
        // by its later ones going straight to the new owner.
        await placement.ringBarrier()
        await withTaskGroup(of: Void.self) { group in
            for box in moving {
                group.addTask { await self.handOver(box) }
            }
        }
    }

    /// Stops serving the room: finishes its writes, releases ownership (the next owner
    /// claims it at once), and forwards what arrived meanwhile.
    func handOver(_ box: RoomBox) async {
        let start = ContinuousClock.now
        let fence = box.state.withLock { slot -> RoomFence? in
            guard slot.phase == .active else { return nil }
            slot.phase = .leaving
            return slot.fence
        }
        guard let fence else { return }
        await flushWrites(box.jid)
        var delay: Duration = .milliseconds(50)
        for _ in 0..<20 {
            do {
                try await store.release(box.jid, fence: fence)
                break
            } catch {
                logger.warning("releasing a room failed; retrying", metadata: ["room": "\(box.jid)", "error": "\(error)"])
                try? await clock.sleep(delay)
                delay = min(delay * 2, .seconds(1))
            }
        }
        // What arrived while it was leaving goes to the new owner ahead of anything later.
        retire(box)
        counterState.withLock { $0.handOvers += 1 }
        logger.info(
            "room handed over",
            metadata: ["room": "\(box.jid)", "to": "\(placement.owner(of: box.jid) ?? "-")", "took": "\(ContinuousClock.now - start)"]
        )
    }

    /// A write was refused: another node owns the room now. Stop serving it.
    func stepDown(_ room: JID, fence: RoomFence) {
        guard let box = rooms.withLock({ $0[room] }) else { return }
        guard box.state.withLock({ $0.fence == fence && $0.phase != .gone }) else { return }
        retire(box)
    }

    /// The lease is confirmed again: input held meanwhile is handled, in order.
    public func resumeHeld() {
        let boxes = rooms.withLock { Array($0.values) }
        for box in boxes where box.state.withLock({ $0.phase == .active && $0.catchingUp && $0.room != nil }) {
            drainPending(box)
        }
    }

    /// This node lost its lease: answers whose copies for the sender's node wait for other
    /// nodes to acknowledge theirs never leave. Called before the links drop what they
    /// hold (which would let them go): the other nodes never got their copies, and this
    /// node's sessions are closed, so no sender hears a message was accepted that the
    /// others missed.
    public func discardHeldOutput() {
        let boxes = rooms.withLock { Array($0.values) }
        for box in boxes {
            box.state.withLock { $0.held.discard() }
        }
    }

    /// This node lost its lease: others may own its rooms now. Everything is dropped
    /// without writing (the writes would be refused anyway); held input of this node's
    /// sessions is answered with an error.
    public func dropAll() {
        let boxes = rooms.withLock { rooms in
            defer { rooms = [:] }
            return Array(rooms.values)
        }
        var held: [RoomInput] = []
        for box in boxes {
            box.state.withLock { slot in
                slot.phase = .gone
                held += slot.pending
                slot.pending = []
                slot.held.discard()
            }
        }
        // Input that came over a node link is not acknowledged now (the links stopped):
        // its sender routes it to the room's next owner, so it gets no error from here.
        for input in held where input.receipt == nil {
            refuse(input, StanzaError(.serviceUnavailable, text: "this node lost its place in the cluster; try again"))
        }
        if !boxes.isEmpty { logger.warning("lease lost: stopped serving every room", metadata: ["rooms": "\(boxes.count)"]) }
    }

    /// The last node is shutting down: occupants of every room are told (332) before
    /// their sessions close.
    public func systemShutdown() {
        let boxes = rooms.withLock { Array($0.values) }
        for box in boxes {
            box.state.withLock { slot in
                guard slot.phase == .active, var room = slot.room else { return }
                let effects = room.systemShutdown(environment: environment)
                slot.room = room
                apply(effects, slot: &slot, box: box, request: nil, occupantsChanged: true)
            }
        }
    }


    // MARK: - The service itself

    func handleService(_ input: RoomInput) {
        let stanza = input.stanza
        func reply(_ element: XMLElement) { answer(input, with: element) }
        guard stanza.stanzaKind == .iq, let type = stanza.type, type == "get" || type == "set" else {
            if stanza.stanzaKind == .message, stanza.type != "error" {
                reply(stanza.errorReply(StanzaError(.serviceUnavailable)))
            }
            return
        }
        let payload = stanza.elements.first
        switch (type, payload?.namespace, payload?.name) {
        case ("get", Namespace.discoInfo, "query"):
            var query = XMLElement("query", namespace: Namespace.discoInfo)
            query.append(
                XMLElement("identity", namespace: Namespace.discoInfo, ["category": "conference", "type": "text", "name": "Chatrooms"])
            )
            for feature in [Namespace.discoInfo, Namespace.discoItems, Namespace.muc, Namespace.ping] {
                query.append(XMLElement("feature", namespace: Namespace.discoInfo, ["var": feature]))
            }
            reply(stanza.iqResult(query))
        case ("get", Namespace.discoItems, "query"):
            // Rooms live on every node: the list comes from the store, a page at a time
            // (at most `muc_limits.disco_items_max` items, XEP-0059 for the rest).
            let page = ResultSetPage(query: payload, limit: environment.limits.discoItemsMax)
            Task {
                var query = XMLElement("query", namespace: Namespace.discoItems)
                do {
                    let (rooms, count) = try await store.publicRooms(after: page.after, limit: page.max)
                    for (jid, name) in rooms {
                        query.append(XMLElement("item", namespace: Namespace.discoItems, ["jid": jid.description, "name": name]))
                    }
                    let set = ResultSetPage.answer(
                        query: payload, first: rooms.first?.jid.description, last: rooms.last?.jid.description,
                        count: count, given: rooms.count
                    )
                    if let set { query.append(set) }
                    reply(stanza.iqResult(query))
                } catch {
                    reply(stanza.errorReply(StanzaError(.internalServerError)))
                }
            }
        case ("get", Namespace.ping, "ping"):
            reply(stanza.iqResult())
        default:
            reply(stanza.errorReply(StanzaError(.serviceUnavailable)))
        }
    }
}
