import Foundation
import Logging
import MUC
import Storage
import Synchronization
import XMPPCore
import XMPPXMLParser

// Activating a room: claiming it in the store, loading it, handling what waited; input that waits too long.
extension MUCService {
    func activate(_ box: RoomBox) async {
        let me = placement.nodeName
        let started = clock.now()
        var delay: Duration = .milliseconds(20)
        var askedHolder = false
        func note(_ problem: String) {
            box.state.withLock { $0.activationProblem = problem }
        }
        while true {
            guard placement.owner(of: box.jid) == me else { return retire(box) }  // not ours after all
            guard placement.canServe else {
                if placement.isRejoining {
                    return retire(box, refusing: StanzaError(.serviceUnavailable, text: "this node lost its place in the cluster; try again"))
                }
                // The lease is not confirmed yet (the database restarting, say): wait for
                // it, as input to an active room does — at most `inputTimeout`.
                note("this node's lease is not confirmed (the database may be unreachable)")
                if clock.now() - started > inputTimeout, box.state.withLock({ $0.pending.isEmpty }) { return retire(box) }
                try? await clock.sleep(delay)
                delay = min(delay * 2, .milliseconds(250))
                continue
            }
            // Nothing waits for the room any more (what did was refused after
            // `inputTimeout`): stop trying; the next input starts again.
            if clock.now() - started > inputTimeout, box.state.withLock({ $0.pending.isEmpty }) {
                let problem = box.state.withLock { $0.activationProblem } ?? "unknown"
                logger.warning("gave up activating a room", metadata: ["room": "\(box.jid)", "why": "\(problem)"])
                return retire(box)
            }
            do {
                // Writes queued under an earlier epoch of this room (it ended or moved
                // and came back) are stored first: the new epoch would refuse them, and
                // the room must be read as they leave it. Other rooms' writes are not
                // waited for.
                await flushWrites(box.jid)
                let pending = box.state.withLock { $0.pending }
                let wantsCreation = pending.contains { Self.isJoin($0.stanza) }
                if try await store.loadRoom(box.jid) == nil && !wantsCreation {
                    // No such room, and nothing here creates it — but a join that arrived
                    // meanwhile does: it is routed again (and activates the room anew).
                    return retire(box, refusing: StanzaError(.itemNotFound, text: "no such room"), routingFrom: { Self.isJoin($0.stanza) })
                }
                guard let epoch = try await store.claim(box.jid, node: me, incarnation: placement.incarnation) else {
                    // Another live incarnation holds it: a hand-over in progress, normally.
                    let holder = try await store.owner(of: box.jid)
                    note("its ownership is held by \(holder?.description ?? "nobody")")
                    if !askedHolder, clock.now() - started > .seconds(1), let holder, holder.live,
                        let node = holder.node, node != me
                    {
                        // Longer than a hand-over takes: the holder may hold the row
                        // without serving the room; it releases it if so.
                        askedHolder = true
                        try await store.askToRelease(box.jid, holder: node)
                        logger.info("asked a room's holder to release it", metadata: ["room": "\(box.jid)", "holder": "\(holder)"])
                    }
                    try? await clock.sleep(delay)
                    delay = min(delay * 2, .milliseconds(250))
                    continue
                }
                let fence = RoomFence(node: me, epoch: epoch)
                let stored = try await store.loadRoom(box.jid)
                let refusal = stored == nil ? try await creationRefusal(box) : nil
                counterState.withLock { $0.activations += 1 }
                install(stored, fence: fence, in: box, creationRefusal: refusal)
                logger.debug("room activated", metadata: ["room": "\(box.jid)", "epoch": "\(epoch)"])
                // The ring changed while the room was activating (a rebalance passes over
                // rooms that are not active yet): it moves on now.
                if placement.owner(of: box.jid) != me { Task { await self.rebalance() } }
                return
            } catch let error as PermanentStoreError {
                // The room's rows cannot be read: retrying would keep its joiners waiting
                // for ever.
                logger.error("activating a room failed for good", metadata: ["room": "\(box.jid)", "error": "\(error)"])
                return retire(box, refusing: StanzaError(.internalServerError, text: "the room cannot be loaded"))
            } catch {
                note("the database did not answer (\(error))")
                logger.warning("activating a room failed; retrying", metadata: ["room": "\(box.jid)", "error": "\(String(reflecting: error))"])
                try? await clock.sleep(delay)
                delay = min(delay * 2, .seconds(1))
            }
        }
    }

    // MARK: - Input that waits too long

    /// Refuses, every `inputTimeout / 4`, the input that has waited for its room longer
    /// than `inputTimeout`, until cancelled.
    public func runInputTimeouts() async {
        while !Task.isCancelled {
            try? await clock.sleep(max(inputTimeout / 4, .milliseconds(50)))
            expireWaitingInput()
        }
    }

    /// Refuses the input that has waited longer than `inputTimeout` (the others keep
    /// their order), with an error that says why, and logs each room once.
    /// `now`: the service clock's time (its current time by default).
    public func expireWaitingInput(now: Duration? = nil) {
        let now = now ?? clock.now()
        let boxes = rooms.withLock { Array($0.values) }
        let canServe = placement.canServe
        for box in boxes {
            let (expired, why) = box.state.withLock { slot -> ([RoomInput], String) in
                guard let first = slot.pending.first?.heldSince, now - first > inputTimeout else { return ([], "") }
                var expired: [RoomInput] = []
                // A session's leave is internal and removes an occupant: it keeps waiting.
                slot.pending.removeAll { input in
                    guard let since = input.heldSince, now - since > inputTimeout, input.sessionEnd == nil else { return false }
                    expired.append(input)
                    return true
                }
                let why: String =
                    switch slot.phase {
                    case .activating: "the room could not be activated (\(slot.activationProblem ?? "still trying"))"
                    case .leaving: "the room is moving to another node"
                    case .active where !canServe: "this node's lease is not confirmed (the database may be unreachable)"
                    case .active: "the room is busy"
                    case .gone: "the room stopped here"
                    }
                return (expired, why)
            }
            guard !expired.isEmpty else { continue }
            counterState.withLock { $0.inputsTimedOut += expired.count }
            let seconds = inputTimeout.components.seconds
            logger.warning(
                "room input waited too long; refused",
                metadata: ["room": "\(box.jid)", "stanzas": "\(expired.count)", "why": "\(why)", "bound": "\(seconds) s"]
            )
            let error = StanzaError(.resourceConstraint, text: "\(why); gave up after \(seconds) s, try again")
            for input in expired { refuse(input, error) }
        }
    }

    /// Why the first join waiting for `box` (a room that does not exist) may not create
    /// it: its user owns `muc_limits.rooms_per_user` rooms already, counted in PostgreSQL
    /// so that rooms on every node count. Service administrators are not limited.
    func creationRefusal(_ box: RoomBox) async throws -> StanzaError? {
        let limit = environment.limits.roomsPerUser
        let creator = box.state.withLock { slot in slot.pending.first { Self.isJoin($0.stanza) }?.real.bare }
        guard limit > 0, let creator, !environment.isServiceAdmin(creator) else { return nil }
        guard try await store.ownedRoomCount(creator) >= limit else { return nil }
        return StanzaError(.policyViolation, text: "you own \(limit) rooms already, the most one user may")
    }

    func install(_ stored: StoredRoom?, fence: RoomFence, in box: RoomBox, creationRefusal: StanzaError? = nil) {
        box.state.withLock { slot in
            slot.fence = fence
            if let stored {
                var room = Self.room(from: stored, logger: logger)
                var reader = StoredStanzaReader()
                var gone: [JID] = []
                for occupant in stored.occupants {
                    guard let presence = reader.read(occupant.presence), let role = Role(rawValue: occupant.role) else {
                        // Skipped alone: the occupant is not restored (its session, if
                        // alive, joins again), the others are.
                        logger.error(
                            "a stored occupant cannot be read; skipped",
                            metadata: ["room": "\(box.jid)", "position": "\(occupant.position)"]
                        )
                        continue
                    }
                    room.restore(
                        Occupant(
                            nick: occupant.nick, realJID: occupant.realJID, role: role, presence: presence,
                            occupantID: environment.occupantID(box.jid, occupant.realJID.bare)
                        )
                    )
                    slot.homes[occupant.realJID] = occupant.homeNode
                    slot.positions[occupant.realJID] = occupant.position
                    if let restored = room.occupant(real: occupant.realJID) {
                        slot.stored[occupant.realJID] = (restored, occupant.homeNode)
                    }
                    slot.nextPosition = max(slot.nextPosition, occupant.position + 1)
                    if !placement.isReachable(occupant.homeNode) { gone.append(occupant.realJID) }
                }
                slot.room = room
                slot.phase = .active
                // Their nodes were told they are in the room by an earlier owner — unless it
                // died before the notice left: each reachable node is told again (a session
                // it does not hold any more leaves at once).
                slot.members = [:]
                var told: [RoomOutgoing] = []
                for occupant in room.occupants {
                    guard let home = slot.homes[occupant.realJID] else { continue }
                    slot.members[occupant.realJID] = home
                    if placement.isReachable(home) { told.append(.membership(real: occupant.realJID, entered: true, node: home)) }
                }
                send(told, answering: nil, slot: &slot, box: box)
                // Occupants whose node died leave, and the others are told.
                for real in gone {
                    guard var current = slot.room else { break }
                    let effects = current.sessionEnded(real, environment: environment)
                    slot.room = current
                    apply(effects, slot: &slot, box: box, request: nil, occupantsChanged: true)
                    if effects.roomEnded { break }
                }
                if let current = slot.room, current.isEmpty, !current.configuration.persistent {
                    // A temporary room nobody is in any more (its node died): gone.
                    enqueue(.deleted, slot: slot, box: box)
                    slot.room = nil
                    slot.homes = [:]
                    slot.members = [:]
                    slot.positions = [:]
                    slot.stored = [:]
                    if slot.pending.contains(where: { Self.isJoin($0.stanza) }) {
                        slot.room = Room(jid: box.jid, locked: true)
                        slot.creating = true
                    } else {
                        slot.phase = .gone
                    }
                }
            } else {
                slot.room = Room(jid: box.jid, locked: true)
                slot.creating = true
                slot.creationRefusal = creationRefusal
                slot.phase = .active
            }
        }
        drainPending(box)
    }

    /// Handles what waited, in order, then leaves the room to direct processing.
    func drainPending(_ box: RoomBox) {
        while true {
            let canServe = placement.canServe
            let (next, phase) = box.state.withLock { slot -> (RoomInput?, Phase) in
                if slot.phase == .active, !canServe { return (nil, slot.phase) }
                guard slot.phase == .active, !slot.pending.isEmpty else {
                    slot.catchingUp = false
                    return (nil, slot.phase)
                }
                return (slot.pending.removeFirst(), slot.phase)
            }
            if phase == .gone { return end(box) }
            guard let next else { return }
            process(next, in: box)
        }
    }
}
