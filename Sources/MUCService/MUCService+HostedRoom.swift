import Foundation
import Logging
import MUC
import Storage
import Synchronization
import XMPPCore
import XMPPXMLParser

// A room this node serves: its input handled under its lock, its output typed, split by node and sent in order, its occupancy stored.
extension MUCService {
    /// A groupchat message whose sender's occupant already has a message with the same
    /// id in the room's history (kept in memory, loaded from the store on activation):
    /// input that reached the room twice, across a move or an owner's death. Input that
    /// travelled once (`hops` below 2) is never looked up.
    static func handledBefore(_ stanza: XMLElement, from real: JID, in room: Room) -> HistoryEntry? {
        guard stanza.stanzaKind == .message, stanza.type == "groupchat", let id = stanza.id, !id.isEmpty,
            let nick = room.occupant(real: real)?.nick
        else { return nil }
        return room.history.last { $0.senderNick == nick && $0.message.id == id }
    }

    /// What a room refuses while the store is far behind: groupchat messages and joins.
    static func isShedUnderOverload(_ stanza: XMLElement) -> Bool {
        (stanza.stanzaKind == .message && stanza.type == "groupchat") || isJoin(stanza)
    }

    static func isJoin(_ stanza: XMLElement) -> Bool {
        guard stanza.stanzaKind == .presence, stanza.type == nil, let to = try? stanza.toJID(), to.resourcepart != nil else {
            return false
        }
        return stanza.child("x", namespace: Namespace.muc) != nil
    }

    func process(_ input: RoomInput, in box: RoomBox) {
        var ended = false
        var requeue: [RoomInput] = []
        var refused: RoomInput?
        let canServe = placement.canServe
        box.state.withLock { slot in
            guard slot.phase == .active, var room = slot.room else {
                if slot.phase == .gone {
                    requeue.append(input)
                } else if !slot.hold(input, at: clock.now()) {
                    refused = input
                }
                return
            }
            guard canServe else {
                // The lease is not confirmed (PostgreSQL unreachable for a while): hold
                // the input, in order, until it is — or until the node knows it lost it.
                if !slot.hold(input, at: clock.now()) { refused = input }
                slot.catchingUp = true
                return
            }
            let stanza = input.stanza
            if let token = input.sessionEnd {
                if room.occupant(real: input.real) != nil {
                    let effects = room.sessionEnded(input.real, environment: environment)
                    slot.room = room
                    apply(effects, slot: &slot, box: box, request: nil, occupantsChanged: true)
                    ended = effects.roomEnded
                }
                send([.left(token: token, node: input.home)], answering: nil, slot: &slot, box: box)
                return
            }
            if slot.creating {
                guard Self.isJoin(stanza) else {
                    // Only a join creates a room; anything before it finds none.
                    if stanza.type != "error", stanza.type != "result" {
                        answer(input, with: stanza.errorReply(serviceError(StanzaError(.itemNotFound, text: "no such room"), answering: stanza)))
                    }
                    return
                }
                let refusal: StanzaError? =
                    if restrictRoomCreation && !environment.isServiceAdmin(input.real.bare) {
                        StanzaError(.notAllowed, text: "only administrators may create rooms")
                    } else {
                        slot.creationRefusal
                    }
                if let refusal {
                    var reply = stanza.errorReply(serviceError(refusal, answering: stanza))
                    reply.append(XMLElement("x", namespace: Namespace.muc))
                    answer(input, with: reply)
                    slot.phase = .gone
                    ended = true
                    return
                }
            }
            if input.hops >= 2, let entry = Self.handledBefore(stanza, from: input.real, in: room) {
                // Routed again after its room moved or its owner died (a frame not yet
                // acknowledged is sent again), but handled before: it is not handled twice.
                // Its sender's node routed it again, so its sender never saw it accepted,
                // and the owner that handled it may have died before some (or all) copies
                // left: the stored message goes out again as a replay, and the recipients'
                // nodes deliver it only to those that did not get it then.
                counterState.withLock { $0.duplicatesDropped += 1 }
                logger.info(
                    "a message handled before its room moved came again; sent again to whoever missed it",
                    metadata: ["room": "\(box.jid)"])
                var effects = RoomEffects()
                effects.broadcast(entry.message, to: room.occupants.map(\.realJID))
                apply(effects, slot: &slot, box: box, request: input, occupantsChanged: false, replaying: entry.message.id)
                return
            }
            if Self.isShedUnderOverload(stanza), isShedding(box.jid),
                stanza.stanzaKind == .message || room.occupant(real: input.real) == nil
            {
                // The store is far behind: what would add to it most (messages, newcomers)
                // is refused, with an error the sender sees, until it catches up.
                // Occupants' presence, leaves, answers and the room's own business go on.
                counterState.withLock { $0.shed += 1 }
                var reply = stanza.errorReply(serviceError(Self.overloaded, answering: stanza))
                if Self.isJoin(stanza) { reply.append(XMLElement("x", namespace: Namespace.muc)) }
                answer(input, with: reply)
                if slot.creating {
                    slot.phase = .gone
                    ended = true
                }
                return
            }
            let isNew = slot.creating
            slot.creating = false
            let changesOccupants = stanza.stanzaKind != .message
            if changesOccupants, room.occupant(real: input.real) == nil || Self.isJoin(stanza) {
                slot.homes[input.real] = input.home
            }
            let effects = room.handle(stanza, from: input.real, environment: environment, isNew: isNew)
            // Routed again after a failover, and not in the history: the dead owner may
            // still have sent some copies before it stored the message. As a replay, the
            // copies reach only the occupants their nodes did not deliver it to before.
            let replaying =
                input.hops >= 2 && stanza.stanzaKind == .message && stanza.type == "groupchat" && !(stanza.id ?? "").isEmpty ? stanza.id : nil
            trace(input, "handled: \(effects.output.count) piece(s) of output")
            slot.room = room
            apply(effects, slot: &slot, box: box, request: input, occupantsChanged: changesOccupants, replaying: replaying)
            if effects.roomEnded || (isNew && room.isEmpty) {
                ended = true
                slot.phase = .gone
            }
        }
        if ended { end(box) }
        for input in requeue { handle(input) }
        if let refused { refuse(refused, Self.overloaded) }
    }

    /// Delivers the effects and queues the durable changes, in order. `replaying`: the
    /// id of a groupchat message sent again after a failover (`StanzaCopies.replay`).
    func apply(
        _ effects: RoomEffects, slot: inout Slot, box: RoomBox, request: RoomInput?, occupantsChanged: Bool, replaying: String? = nil
    ) {
        guard let room = slot.room else { return }
        let outgoing = outgoing(effects, room: room, slot: &slot, request: request, occupantsChanged: occupantsChanged, replaying: replaying)
        for change in effects.changes {
            enqueue(stored(change, room: room), slot: slot, box: box)
        }
        if effects.roomEnded, !effects.changes.contains(.destroyed) {
            // A temporary room whose last occupant left: its rows go too.
            enqueue(.deleted, slot: slot, box: box)
        }
        if occupantsChanged, !effects.roomEnded { storeOccupancy(room, slot: &slot, box: box, request: request) }
        // A change that must survive the owner (configuration, affiliations, existence,
        // subject) is stored before anyone is told about it; and while such a write is
        // pending, later output of the room waits behind it, so the order holds. A
        // deposed owner's waiting output is dropped with its refused write.
        let durable = effects.changes.contains { change in
            if case .history = change { return false }
            return true
        }
        guard durable || slot.deferred > 0, let fence = slot.fence else {
            send(outgoing, answering: request, slot: &slot, box: box)
            return
        }
        slot.deferred += 1
        writes.push(
            .run(
                fence,
                stored: {
                    box.state.withLock { slot in
                        self.send(outgoing, answering: request, slot: &slot, box: box)
                        slot.deferred -= 1
                    }
                },
                failed: {
                    // Not stored: nobody is told about it, the sender gets an error, and
                    // the room is re-read from the store (`rejected`).
                    box.state.withLock { $0.deferred -= 1 }
                    if let request {
                        self.refuse(request, StanzaError(.notAcceptable, text: "the room could not store this change"))
                    }
                },
                superseded: {
                    // Another node owns the room now, and this change is not in what it
                    // read: the request goes to it (once this node stops serving the
                    // room; a few forwards at most, as any moving room's input).
                    box.state.withLock { $0.deferred -= 1 }
                    if let request {
                        var again = request
                        again.hops += 1
                        self.handle(again)
                    }
                }
            ),
            for: box.jid
        )
    }

    /// The room's output as it leaves: each broadcast serialized once and split by the
    /// node that holds its recipients (one `RoomCopies` per node, in the order the
    /// recipients first appear), each single addressed to its recipient's node; then the
    /// occupants who entered or left, for their sessions' nodes.
    func outgoing(
        _ effects: RoomEffects, room: Room, slot: inout Slot, request: RoomInput?, occupantsChanged: Bool, replaying: String?
    ) -> [RoomOutgoing] {
        var outgoing: [RoomOutgoing] = []
        var copies = 0
        func node(of recipient: JID) -> String? {
            if let request, recipient == request.real { return request.home }
            return slot.homes[recipient]
        }
        func key(_ stanza: XMLElement) -> (StanzaCopies.MessageKey?, Bool) {
            guard stanza.name == "message", stanza.type == "groupchat", let id = stanza.id, !id.isEmpty else { return (nil, false) }
            return (StanzaCopies.MessageKey(room: room.jid.description, id: id), id == replaying)
        }
        for delivery in effects.output {
            switch delivery {
            case .single(var stanza):
                if stanza[attribute: "from"] == nil {
                    stanza[attribute: "from"] = request?.stanza[attribute: "to"] ?? room.jid.description
                }
                guard let text = stanza[attribute: "to"] else { continue }
                let to: JID
                if let known = slot.addresses[text] {
                    to = known
                } else {
                    guard let parsed = try? JID(text) else { continue }
                    if slot.addresses.count >= 4096 { slot.addresses.removeAll(keepingCapacity: true) }
                    slot.addresses[text] = parsed
                    to = parsed
                }
                stanza[attribute: "to"] = nil
                let (message, replay) = key(stanza)
                outgoing.append(.copies(RoomCopies(stanza, to: [to], message: message, replay: replay), node: node(of: to)))
                copies += 1
            case .broadcast(let stanza, let recipients):
                let prepared = PreparedStanza(stanza)
                let (message, replay) = key(stanza)
                if recipients.count == 1 {
                    outgoing.append(
                        .copies(
                            RoomCopies(stanza, prepared: prepared, to: recipients, message: message, replay: replay),
                            node: node(of: recipients[0])))
                } else {
                    var nodes: [String?] = []
                    var byNode: [String?: [JID]] = [:]
                    for recipient in recipients {
                        let home = node(of: recipient)
                        if byNode[home] == nil { nodes.append(home) }
                        byNode[home, default: []].append(recipient)
                    }
                    for home in nodes {
                        outgoing.append(
                            .copies(
                                RoomCopies(stanza, prepared: prepared, to: byNode[home] ?? [], message: message, replay: replay),
                                node: home))
                    }
                }
                copies += recipients.count
            }
        }
        deliveryCount.add(copies, ordering: .relaxed)
        // Who entered or left: only an input that may change occupants, or one after
        // which their number differs (a bounced message removes its sender), is compared.
        // An occupant whose session is now on another node (it joined again from there)
        // counts as having left the node told before and entered the new one. A node that
        // is gone is not told anything.
        if occupantsChanged || room.occupants.count != slot.members.count {
            var present: [JID: String] = [:]
            for occupant in room.occupants {
                if let home = node(of: occupant.realJID) { present[occupant.realJID] = home }
            }
            for (real, told) in slot.members.sorted(by: { $0.key.description < $1.key.description })
            where present[real] != told && placement.isReachable(told) {
                outgoing.append(.membership(real: real, entered: false, node: told))
            }
            for occupant in room.occupants {
                guard let home = present[occupant.realJID], slot.members[occupant.realJID] != home else { continue }
                outgoing.append(.membership(real: occupant.realJID, entered: true, node: home))
            }
            slot.members = present
        }
        return outgoing
    }

    /// Sends a room's output. When it answers input and goes to other nodes besides the
    /// sender's, what goes to the sender's node waits until the others acknowledged theirs
    /// (`HeldRoomOutput`); output for a node with output waiting queues behind it.
    func send(_ outgoing: [RoomOutgoing], answering request: RoomInput?, slot: inout Slot, box: RoomBox) {
        if slot.phase == .gone {
            // The room ended (destroyed, emptied) and this is its last output, stored
            // first: nothing is held (the next input to its address is answered by the
            // service at once, and must not overtake it).
            sendAllHeld(&slot, room: box.jid)
            for item in outgoing { send(item, room: box.jid, keeping: request?.receipt) }
            return
        }
        var ticket: HeldOutputTicket?
        if let home = request?.home, outgoing.contains(where: { $0.node == home }),
            outgoing.contains(where: { $0.node != nil && $0.node != home })
        {
            let id = slot.held.newTicket()
            ticket = HeldOutputTicket(id: id, receipt: request?.receipt) { [self] id in
                // Let go wherever a link acknowledged (under its locks): sent just after.
                output.later { self.release(id, box: box) }
            }
        }
        for item in outgoing {
            if let ticket, item.node == request?.home {
                slot.held.append(.init(item: item, keep: request?.receipt, waitsFor: ticket.id))
            } else if slot.held.isHolding(item.node) {
                slot.held.append(.init(item: item, keep: ticket ?? request?.receipt))
            } else {
                send(item, room: box.jid, keeping: ticket ?? request?.receipt)
            }
        }
    }

    func send(_ item: RoomOutgoing, room: JID, keeping keep: (any AnyObject & Sendable)?) {
        switch item {
        case .copies(let copies, let node): output.deliver(copies, node: node, keeping: keep)
        case .membership(let real, let entered, let node): output.membership(room: room, real: real, entered: entered, node: node)
        case .left(let token, let node): output.left(token: token, room: room, node: node)
        }
    }

    /// The room ended: what it held goes now, in order per node (`HeldRoomOutput.takeAll`).
    func sendAllHeld(_ slot: inout Slot, room: JID) {
        for entry in slot.held.takeAll() {
            send(entry.item, room: room, keeping: entry.keep)
        }
    }

    func release(_ ticket: UInt64, box: RoomBox) {
        box.state.withLock { slot in
            for entry in slot.held.open(ticket) {
                send(entry.item, room: box.jid, keeping: entry.keep)
            }
        }
    }

    func storeOccupancy(_ room: Room, slot: inout Slot, box: RoomBox, request: RoomInput?) {
        // Occupancy, so that another node can continue the room.
        let present = Set(room.occupants.map(\.realJID))
        for real in slot.homes.keys where !present.contains(real) {
            slot.homes[real] = nil
            slot.stored[real] = nil
            if slot.positions.removeValue(forKey: real) != nil {
                enqueue(.occupantLeft(real), slot: slot, box: box)
            }
        }
        for occupant in room.occupants {
            let position: Int64
            if let known = slot.positions[occupant.realJID] {
                position = known
            } else {
                position = slot.nextPosition
                slot.nextPosition += 1
                slot.positions[occupant.realJID] = position
            }
            let home = slot.homes[occupant.realJID] ?? request?.home ?? placement.nodeName
            if let last = slot.stored[occupant.realJID], last.0 == occupant, last.1 == home { continue }
            slot.stored[occupant.realJID] = (occupant, home)
            let stored = StoredOccupant(
                realJID: occupant.realJID, nick: occupant.nick, role: occupant.role.rawValue,
                presence: occupant.presence.serialized(parentNamespace: Namespace.client),
                homeNode: home, position: position
            )
            enqueue(.occupant(stored), slot: slot, box: box)
        }
    }

    func enqueue(_ change: StoredRoomChange, slot: Slot, box: RoomBox) {
        guard let fence = slot.fence else { return }
        switch change {
        case .configuration, .affiliation: box.queuedSettings.add(1, ordering: .relaxed)
        default: break
        }
        writes.push(.change(fence, change), for: box.jid)
    }
}
