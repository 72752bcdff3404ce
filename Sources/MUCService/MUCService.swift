import Foundation
public import Logging
public import MUC
public import Storage
import Synchronization
public import XMPPCore
import XMPPXMLParser

/// Runs the rooms this node owns. A room is activated on its first input: the node
/// claims it in the store (a new fencing epoch), loads it — configuration,
/// affiliations, history and occupants — and handles what waited meanwhile. One lock
/// per room serialises its stanzas; effects are delivered in the order the room
/// produced them; durable changes go to the store in that order through the room's
/// lane of the writer, fenced with the room's epoch. A room whose owner should now be
/// another node is handed over: the writes are finished, ownership released, and what
/// arrives later is forwarded.
public final class MUCService: Sendable {
    public let domain: JID
    /// Only service administrators may create rooms (others get `not-allowed`).
    public let restrictRoomCreation: Bool
    let store: any RoomStore
    let environment: RoomEnvironment
    let placement: any RoomPlacement
    let output: any RoomOutput
    let logger: Logger
    let rooms = Mutex<[JID: RoomBox]>([:])
    let writes: RoomWriter
    /// Above this many bytes in the writer's backlog, rooms refuse new messages and joins
    /// with `resource-constraint` (wait) instead of queueing more for the store.
    let writerShedBytes: Int
    /// Writes in flight at once (the store's pool also serves activations and reads).
    let writeSlots = AsyncLimiter(8)
    let counterState = Mutex(Counters())
    /// Counted on every room output, so an atomic rather than `counterState`'s lock.
    let deliveryCount = Atomic<Int>(0)
    /// A sweep of unserved ownerships is running (`releaseUnserved`).
    private let sweeping = Atomic<Bool>(false)

    public struct Counters: Sendable {
        public var activations = 0
        public var handOvers = 0
        public var staleWrites = 0
        public var forwarded = 0
        /// Room stanzas handed to occupants' nodes: one per recipient (fan-out).
        public var deliveries = 0
        /// Room changes the store refused for good (dropped; the room re-read).
        public var rejectedWrites = 0
        /// Writes of several room changes given up at their deadline, then written in
        /// smaller pieces.
        public var timedOutWrites = 0
        /// Messages and joins refused because the store was far behind.
        public var shed = 0
        /// Room input refused because it waited longer than `inputTimeout` (its room
        /// could not be activated, was moving, or this node's lease was unconfirmed).
        public var inputsTimedOut = 0
        /// Owner rows this node's incarnation held for rooms it did not serve, released.
        public var unservedReleased = 0
        /// Messages that reached their room a second time (sent again after the room
        /// moved or its owner died, though handled before): dropped.
        public var duplicatesDropped = 0
    }

    enum Phase { case activating, active, leaving, gone }

    struct Slot {
        var phase: Phase = .activating
        var room: Room?
        var fence: RoomFence?
        /// Inputs that arrived while the room was activating or leaving, in order.
        var pending: [RoomInput] = []
        /// Occupant real JID → the node holding the session.
        var homes: [JID: String] = [:]
        var positions: [JID: Int64] = [:]
        var nextPosition: Int64 = 1
        /// The next stanza creates the room.
        var creating = false
        /// Why the join that would create the room may not (its user owns
        /// `muc_limits.rooms_per_user` rooms already), decided at activation.
        var creationRefusal: StanzaError?
        /// Active, but what waited during activation is still being handled: new input
        /// queues behind it.
        var catchingUp = true
        /// Occupants as last queued for the store (with their home node).
        var stored: [JID: (Occupant, String)] = [:]
        /// Output waiting in the write queue for a durable change to be stored.
        var deferred = 0
        /// The recipients' addresses as the room writes them in `to`, parsed: the room
        /// addresses the same occupants again and again, and parsing a JID (with its
        /// normalisation) was a tenth of a busy node's time.
        var addresses: [String: JID] = [:]
        /// Why activation has not succeeded yet (for the error and log of input that
        /// waits too long).
        var activationProblem: String?
        /// Output waiting for other nodes to acknowledge their copies of the same answer.
        var held = HeldRoomOutput()
        /// The occupants (real JIDs) whose nodes were told they are in the room
        /// (`RoomOutput.membership`), or knew it from an earlier owner, with that node.
        var members: [JID: String] = [:]

        /// Input one room holds at most while it cannot take it (activating, moving, its
        /// owner's lease unconfirmed); beyond it new messages and joins are refused
        /// (`MUCService.isShedUnderOverload`), so that a flood into a room that is not
        /// ready cannot grow the node's memory within `inputTimeout`.
        static let maxHeldInputs = 10_000

        /// Holds `input` back, in order, noting when it started waiting.
        /// Keeps `input` until the room can take it; `now`: the service clock's time.
        /// `false`: not kept (the room holds too much, and it can be refused).
        @discardableResult
        mutating func hold(_ input: RoomInput, at now: Duration) -> Bool {
            if pending.count >= Self.maxHeldInputs, MUCService.isShedUnderOverload(input.stanza) { return false }
            var input = input
            if input.heldSince == nil { input.heldSince = now }
            pending.append(input)
            return true
        }
    }

    final class RoomBox: Sendable {
        let jid: JID
        let state = Mutex(Slot())
        /// Configuration and affiliation changes queued for the store so far: a re-read
        /// of the room is current only if none was queued while it read.
        let queuedSettings = Atomic<Int>(0)
        init(_ jid: JID) { self.jid = jid }
    }

    /// How long input may wait for its room (activation, a hand-over, an unconfirmed
    /// lease) before its sender gets an error.
    public let inputTimeout: Duration
    /// The time of timeouts and backoffs (`ServiceClock.continuous` but in tests).
    public let clock: ServiceClock

    public init(
        domain: JID,
        store: any RoomStore,
        environment: RoomEnvironment,
        placement: any RoomPlacement,
        output: any RoomOutput,
        restrictRoomCreation: Bool = false,
        inputTimeout: Duration = .seconds(5),
        clock: ServiceClock = .continuous,
        writerBacklogBytes: Int = 8 << 20,
        logger: Logger
    ) {
        writes = RoomWriter(backlog: PressureGauge(high: writerBacklogBytes, low: writerBacklogBytes / 2))
        writerShedBytes = writerBacklogBytes * 4
        self.inputTimeout = inputTimeout
        self.clock = clock
        self.domain = domain
        self.restrictRoomCreation = restrictRoomCreation
        self.store = store
        self.environment = environment
        self.placement = placement
        self.output = output
        self.logger = logger
    }

    /// What this node's rooms have done so far (for `/metrics`).
    public var counters: Counters {
        var counters = counterState.withLock { $0 }
        counters.deliveries = deliveryCount.load(ordering: .relaxed)
        return counters
    }

    /// Bytes of room changes queued for the store and not yet written: while high, the
    /// node stops reading the rooms' senders (local sessions, and the links of peers that
    /// forward their input); above four times the high mark rooms refuse new messages
    /// and joins.
    public var writerBacklog: PressureGauge { writes.backlog }

    /// The queue a stanza to `room` (served here) adds to, when it is above its mark: the
    /// room's own part of the writer's backlog, or the whole backlog.
    public func writerPressure(for room: JID) -> PressureGauge? {
        if writes.backlog.isHigh { return writes.backlog }
        if let own = writes.backlog(of: room), own.isHigh { return own }
        return nil
    }

    /// Whether new messages and joins to `room` are refused now: the writer's backlog is
    /// above four times its mark, or the room's own part above four times the room's.
    func isShedding(_ room: JID) -> Bool {
        if writes.backlog.level > writerShedBytes { return true }
        return (writes.backlog(of: room)?.level ?? 0) > writes.roomHigh * 4
    }

    /// The node that owns `room` now (by the ring), if any.
    public func owner(of room: JID) -> String? { placement.owner(of: room) }

    /// The node this service runs on.
    public var nodeName: String { placement.nodeName }

    /// Rooms this node serves now.
    public var roomCount: Int { rooms.withLock { $0.count } }

    /// Occupants of the rooms this node serves.
    public var occupantCount: Int {
        let boxes = rooms.withLock { Array($0.values) }
        return boxes.reduce(0) { $0 + $1.state.withLock { $0.room?.occupants.count ?? 0 } }
    }

    // MARK: - Input

    /// A stanza to the MUC domain or one of its rooms.
    public func handle(_ input: RoomInput) {
        if input.home == placement.nodeName, placement.isRejoining, input.sessionEnd == nil {
            // What the room would answer could not reach this node's sessions until the
            // others see it again: answered here instead.
            return refuse(input, StanzaError(.serviceUnavailable, text: "this node is rejoining the cluster; try again"))
        }
        guard let next = rooms.withLock({ route(input, in: &$0, behindOthers: false) }) else { return }
        perform(next)
    }

    /// One line per routing decision at debug level (a replayed `make chaos` finding).
    func trace(_ input: RoomInput, _ decision: @autoclosure () -> String) {
        logger.debug(
            "room input",
            metadata: [
                "to": "\(input.stanza[attribute: "to"] ?? "-")", "kind": "\(input.stanza.name)/\(input.stanza.type ?? "-")",
                "id": "\(input.stanza.id ?? "-")", "real": "\(input.real)", "home": "\(input.home)", "hops": "\(input.hops)",
                "decision": "\(decision())",
            ]
        )
    }

    /// What routing an input leaves to do once the rooms lock is released.
    enum Routed {
        case service(RoomInput)
        case process(RoomInput, RoomBox)
        /// The room was active; what was just queued in it is handled in order.
        case drain(RoomBox)
        case activate(RoomBox)
        /// The node it was forwarded to could not take it now: routed again.
        case retry(RoomInput)
        case refuse(RoomInput, StanzaError)
    }

    /// Routes one input while the rooms lock is held: into a room this node holds, or onto
    /// the link of the node that owns the room. Decision and hand-off happen under the
    /// one lock that ring changes and room retirements also take, so that a sender's
    /// later input can never take a new path while its earlier input still waits on an
    /// old one. `behindOthers`: the input is older than input the room may be
    /// processing right now (it waited elsewhere), so it queues instead of being
    /// processed by the caller directly.
    func route(_ input: RoomInput, in rooms: inout [JID: RoomBox], behindOthers: Bool) -> Routed? {
        guard let to = try? input.stanza.toJID() else { return nil }
        guard to.localpart != nil else { return .service(input) }
        let roomJID = to.bare
        if let box = rooms[roomJID] {
            return box.state.withLock { slot -> Routed? in
                // A room on its way out (`.gone`) is still in `rooms` until `retire`
                // takes it out under this lock, and routes what it holds again.
                guard slot.phase == .active, !slot.catchingUp else {
                    trace(input, "held (\(slot.phase), catching up \(slot.catchingUp))")
                    guard slot.hold(input, at: clock.now()) else { return .refuse(input, Self.overloaded) }
                    return nil
                }
                guard behindOthers else {
                    trace(input, "processed")
                    return .process(input, box)
                }
                trace(input, "queued behind others")
                guard slot.hold(input, at: clock.now()) else { return .refuse(input, Self.overloaded) }
                slot.catchingUp = true
                return .drain(box)
            }
        }
        // Only a room this node does not hold needs the ring (not every stanza).
        guard let owner = placement.owner(of: roomJID) else {
            return .refuse(input, StanzaError(.serviceUnavailable, text: "no node can serve the room now"))
        }
        guard owner == placement.nodeName else {
            guard input.hops < 4 else { return .refuse(input, StanzaError(.serviceUnavailable, text: "the room is moving; try again")) }
            counterState.withLock { $0.forwarded += 1 }
            var forwarded = input
            forwarded.hops += 1
            let sent = output.forward(forwarded, to: owner)
            trace(input, sent ? "forwarded to \(owner)" : "not forwarded to \(owner); again")
            return sent ? nil : .retry(forwarded)
        }
        if Self.isShedUnderOverload(input.stanza), isShedding(roomJID) {
            // Far behind the store: no room is activated (claimed, loaded) for a message
            // or a join now.
            counterState.withLock { $0.shed += 1 }
            return .refuse(input, Self.overloaded)
        }
        trace(input, "activates the room")
        let box = RoomBox(roomJID)
        box.state.withLock { $0.hold(input, at: clock.now()) }
        rooms[roomJID] = box
        return .activate(box)
    }

    /// The error of input refused because the node cannot take more of it now.
    static let overloaded = StanzaError(.resourceConstraint, type: .wait, text: "the room service is overloaded; try again shortly")

    func perform(_ next: Routed) {
        switch next {
        case .service(let input): handleService(input)
        case .process(let input, let box): process(input, in: box)
        case .drain(let box): drainPending(box)
        case .activate(let box): Task { await self.activate(box) }
        case .retry(let input): handle(input)
        case .refuse(let input, let error): refuse(input, error)
        }
    }

    /// Changes where rooms live (the ring, the links) while no input is being routed, and
    /// routes the room input `change` returns (frames queued for nodes that went away)
    /// before any input that arrives after the change.
    public func changeRoutes(_ change: () -> [RoomInput]) {
        routeWaiting { _ in change() }
    }

    /// Takes a room that stopped here out of `rooms`, and routes what waited in it, in
    /// order, ahead of later input (or refuses it all with `error`).
    /// `from`: the first input routed again instead of refused, with all after it.
    func retire(_ box: RoomBox, refusing error: StanzaError? = nil, routingFrom first: (RoomInput) -> Bool = { _ in false }) {
        var refused: [RoomInput] = []
        routeWaiting { rooms in
            if rooms[box.jid] === box { rooms[box.jid] = nil }
            let waiting = box.state.withLock { slot in
                slot.phase = .gone
                defer { slot.pending = [] }
                return slot.pending
            }
            guard error == nil else {
                let split = waiting.firstIndex(where: first) ?? waiting.endIndex
                refused = Array(waiting[..<split])
                return Array(waiting[split...])
            }
            return waiting
        }
        if let error { for input in refused { refuse(input, error) } }
    }

    /// Runs `take` under the rooms lock and routes the inputs it returns (input that
    /// waited elsewhere) in their order, before the lock lets any later input through.
    func routeWaiting(_ take: (inout [JID: RoomBox]) -> [RoomInput]) {
        var actions: [Routed] = []
        rooms.withLock { rooms in
            for input in take(&rooms) {
                if let next = route(input, in: &rooms, behindOthers: true) { actions.append(next) }
            }
        }
        for next in actions { perform(next) }
    }

    /// A room that ended here (a temporary room emptied, a destroyed room): taken out,
    /// and its ownership released once its last writes are stored, so that whichever
    /// node the ring names next claims it at once.
    func end(_ box: RoomBox) {
        let fence = box.state.withLock { slot in
            sendAllHeld(&slot, room: box.jid)
            return slot.fence
        }
        retire(box)
        guard let fence else { return }
        Task { await self.release(box.jid, fence: fence) }
    }

    /// Releases `fence`'s ownership of `room` once the room's queued writes are stored.
    /// A later claim of the room (a new epoch) is not affected.
    func release(_ room: JID, fence: RoomFence) async {
        await flushWrites(room)
        do {
            try await store.release(room, fence: fence)
        } catch {
            // The periodic sweep (`releaseUnserved`) tries again.
            logger.warning("releasing an ended room failed", metadata: ["room": "\(room)", "error": "\(error)"])
        }
    }

    /// Releases the owner rows this incarnation holds for rooms it does not serve (the
    /// room ended, its activation gave up after claiming, a release failed), or only
    /// `room`'s: a holder that is alive but does not serve a room must not keep others
    /// from it.
    public func releaseUnserved(only room: JID? = nil) async {
        // One sweep at a time (a slow database must not pile them up).
        if room == nil {
            guard sweeping.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return }
        }
        defer { if room == nil { sweeping.store(false, ordering: .releasing) } }
        let me = placement.nodeName
        let held: [(room: JID, epoch: Int64)]
        do {
            if let room {
                guard let record = try await store.owner(of: room), record.node == me,
                    record.incarnation == placement.incarnation
                else { return }
                held = [(room, record.epoch)]
            } else {
                held = try await store.heldRooms(node: me, incarnation: placement.incarnation)
            }
        } catch {
            logger.warning("reading the rooms this node holds failed", metadata: ["error": "\(error)"])
            return
        }
        // A room served here that the ring gives to another node (it became active after
        // the rebalance of its ring change) is handed over, not kept.
        let misplaced = rooms.withLock { rooms in
            rooms.values.contains { box in
                placement.owner(of: box.jid) != me && box.state.withLock { $0.phase == .active }
            }
        }
        if misplaced { await rebalance() }
        for (room, epoch) in held where rooms.withLock({ $0[room] == nil }) {
            await flushWrites(room)
            // Activated here meanwhile: that claim made a new epoch, which this release
            // does not match.
            do {
                try await store.release(room, fence: RoomFence(node: me, epoch: epoch))
                counterState.withLock { $0.unservedReleased += 1 }
                logger.info("released a room this node held but did not serve", metadata: ["room": "\(room)", "epoch": "\(epoch)"])
            } catch {
                logger.warning("releasing a room failed", metadata: ["room": "\(room)", "error": "\(error)"])
            }
        }
    }

    /// Activates `room` without input (its previous owner released it or died), so
    /// that occupants of dead nodes leave and the room keeps serving.
    public func activate(room: JID) {
        guard placement.owner(of: room) == placement.nodeName else { return }
        let box = rooms.withLock { rooms -> RoomBox? in
            guard rooms[room] == nil else { return nil }
            let box = RoomBox(room)
            rooms[room] = box
            return box
        }
        if let box { Task { await self.activate(box) } }
    }

    /// How often a session's end that no node could take is routed again (every 250 ms).
    static let sessionEndRetries = 120

    func refuse(_ input: RoomInput, _ error: StanzaError) {
        guard input.stanza.type != "error", input.stanza.type != "result" else { return }
        if let token = input.sessionEnd {
            // The session's node must not wait for it.
            let room = (try? input.stanza.toJID())??.bare ?? domain
            if input.retries == 0 {
                output.left(token: token, room: room, node: input.home)
            }
            // But the room must still lose the occupant: refused now (the room moving, its
            // owner dead and not yet declared so), the end is routed again a little later,
            // for up to 30 s, or the room would keep a ghost (make test, chaos seed
            // 112037213: a node restarted while the rooms' owners had just died, and the
            // occupants of its earlier run stayed in a persistent room).
            guard input.retries < Self.sessionEndRetries else {
                return logger.warning("a session's end could not reach its room", metadata: ["room": "\(room)", "jid": "\(input.real)"])
            }
            var again = RoomInput.sessionEnded(room: room, real: input.real, home: input.home, token: token)
            again.retries = input.retries + 1
            Task {
                try? await clock.sleep(.milliseconds(250))
                self.handle(again)
            }
            return
        }
        var reply = input.stanza.errorReply(serviceError(error, answering: input.stanza))
        // A refused join says it answers a join (XEP-0045 §7.2), as the room's own refusals do.
        if Self.isJoin(input.stanza), reply.child("x", namespace: Namespace.muc) == nil { reply.append(XMLElement("x", namespace: Namespace.muc)) }
        answer(input, with: reply, keeping: input.receipt)
    }

    /// Sends `stanza` to the sender of `input` (its `to` is the sender's real JID).
    func answer(_ input: RoomInput, with stanza: XMLElement, keeping keep: (any AnyObject & Sendable)? = nil) {
        var stanza = stanza
        stanza[attribute: "to"] = nil
        output.deliver(RoomCopies(stanza, to: [input.real]), node: input.home, keeping: keep)
    }

    /// An error the service found (not the room): says so (`by`, RFC 6120 §8.2) unless
    /// the stanza was addressed to the service itself.
    func serviceError(_ error: StanzaError, answering stanza: XMLElement) -> StanzaError {
        guard error.by == nil, let to = stanza[attribute: "to"], to != domain.description else { return error }
        var marked = error
        marked.by = domain
        return marked
    }

}
