import Foundation
public import Logging
public import MUC
public import Storage
import Synchronization
public import XMPPCore
import XMPPXMLParser

/// A stanza for a room, with where its sender's session lives.
public struct RoomInput: Sendable {
    public var stanza: XMLElement
    /// The sender's real full JID.
    public var real: JID
    /// The node holding the sender's session.
    public var home: String
    /// How often it was forwarded between nodes.
    public var hops: Int
    /// When this node first held it back (its room activating, moving, or its lease
    /// unconfirmed): input that waits longer than the service's `inputTimeout` is
    /// refused.
    var heldSince: ContinuousClock.Instant?
    /// How often a session's end was routed again because no node could take it then.
    var retries = 0
    /// Released with the last copy of this input, once it is handled, refused or passed
    /// on: input that came over a node link is acknowledged to its sender then
    /// (`LinkReceipt`), so that its sender still holds it if this node dies first.
    public var receipt: (any AnyObject & Sendable)?

    /// A session's end (`sessionEnded(room:…)`): the token its node gets back once the
    /// room removed the occupant. Such input is not a stanza: its `stanza` only
    /// addresses the room.
    public var sessionEnd: UInt64?

    public init(stanza: XMLElement, real: JID, home: String, hops: Int = 0) {
        self.stanza = stanza
        self.real = real
        self.home = home
        self.hops = hops
    }

    /// The session `real`, held by `home`, ended: the room removes it and answers
    /// `RoomOutput.left(token:…)`.
    public static func sessionEnded(room: JID, real: JID, home: String, token: UInt64, hops: Int = 0) -> RoomInput {
        var input = RoomInput(
            stanza: XMLElement("presence", namespace: Namespace.client, ["to": room.description, "type": "unavailable"]),
            real: real, home: home, hops: hops)
        input.sessionEnd = token
        return input
    }
}

/// Where rooms live: which node should own a room now (the ring), and which nodes
/// are still reachable.
public protocol RoomPlacement: Sendable {
    var nodeName: String { get }
    /// The node that should own `room` now; `nil` when no node can.
    func owner(of room: JID) -> String?
    /// The node is alive and holds sessions.
    func isReachable(_ node: String) -> Bool
    /// This node's lease is valid: it may apply changes to rooms.
    var canServe: Bool { get }
    /// This node's incarnation: room ownership is claimed under it.
    var incarnation: Int64 { get }
    /// The node lost its lease and is registering again: the others do not count it
    /// as a member, so room output for its sessions would not reach them.
    var isRejoining: Bool { get }
    /// Returns once every live node has taken the current ring, and everything each sent
    /// this node under the previous one has arrived (or a timeout passed).
    func ringBarrier() async
}

/// Copies of one piece of a room's output for the recipients one node holds: the
/// stanza (no `to`) and, serialized once for the whole broadcast, its bytes.
public struct RoomCopies: Sendable {
    /// The stanza without `to`: for recipients who are not occupants (`node` `nil`),
    /// whose delivery needs it (offline storage, a bare JID's resources).
    public var stanza: XMLElement
    public var copies: StanzaCopies

    public var recipients: [JID] { copies.recipients }

    public init(_ stanza: XMLElement, prepared: PreparedStanza? = nil, to recipients: [JID], message: StanzaCopies.MessageKey? = nil, replay: Bool = false) {
        self.stanza = stanza
        copies = StanzaCopies(stanza: prepared ?? PreparedStanza(stanza), recipients: recipients, message: message, replay: replay)
    }

    /// A stanza with its `to`, for that recipient.
    public init?(single stanza: XMLElement) {
        guard let to = try? stanza.toJID() else { return nil }
        var stanza = stanza
        stanza[attribute: "to"] = nil
        self.init(stanza, to: [to])
    }
}

/// Where room output goes: sessions on this node or on others.
public protocol RoomOutput: Sendable {
    /// The copies for recipients held by `node`; `nil`: the recipient is not an
    /// occupant, find where it is. `keep` stays alive until `node` has the copies (its
    /// link acknowledged them): the receipt of the input they answer, so that its sender
    /// hears the input was handled only once the answer has left this node.
    func deliver(_ copies: RoomCopies, node: String?, keeping keep: (any AnyObject & Sendable)?)
    /// The room `room` handled the end of a session `node` holds (`RoomInput.sessionEnded`).
    func left(token: UInt64, room: JID, node: String)
    /// `real`, a session `node` holds, entered `room` or left it: what that node tells
    /// the room when the session ends.
    func membership(room: JID, real: JID, entered: Bool, node: String)
    /// Input this node will not handle: queued for the node that owns the room, in the
    /// order of the calls. `false`: that node cannot take it now (no link, a full queue).
    /// Called while routing is locked: must not route anything itself.
    func forward(_ input: RoomInput, to node: String) -> Bool
}

extension RoomOutput {
    /// One stanza, its `to` set, for a session `node` holds.
    public func deliver(single stanza: XMLElement, node: String?, keeping keep: (any AnyObject & Sendable)? = nil) {
        guard let copies = RoomCopies(single: stanza) else { return }
        deliver(copies, node: node, keeping: keep)
    }
}

/// What a room sends, in its order: copies of its stanzas, and what the nodes of its
/// occupants' sessions must know besides (membership, a session's end handled).
enum RoomOutgoing {
    case copies(RoomCopies, node: String?)
    case membership(real: JID, entered: Bool, node: String)
    case left(token: UInt64, node: String)

    var node: String? {
        switch self {
        case .copies(_, let node): node
        case .membership(_, _, let node), .left(_, let node): node
        }
    }
}

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
    let writes = RoomWriter()
    /// Writes in flight at once (the store's pool also serves activations and reads).
    private let writeSlots = AsyncLimiter(8)
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
        /// (`RoomOutput.membership`), or knew it from an earlier owner.
        var members: Set<JID> = []

        /// Holds `input` back, in order, noting when it started waiting.
        mutating func hold(_ input: RoomInput) {
            var input = input
            if input.heldSince == nil { input.heldSince = .now }
            pending.append(input)
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

    public init(
        domain: JID,
        store: any RoomStore,
        environment: RoomEnvironment,
        placement: any RoomPlacement,
        output: any RoomOutput,
        restrictRoomCreation: Bool = false,
        inputTimeout: Duration = .seconds(5),
        logger: Logger
    ) {
        self.inputTimeout = inputTimeout
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

    /// Rooms this node serves now.
    public var roomCount: Int { rooms.withLock { $0.count } }

    /// Occupants of the rooms this node serves.
    public var occupantCount: Int {
        let boxes = rooms.withLock { Array($0.values) }
        return boxes.reduce(0) { $0 + $1.state.withLock { $0.room?.occupants.count ?? 0 } }
    }

    // MARK: - Writer

    /// Writes durable changes until `finishWrites` (run it for the node's lifetime).
    ///
    /// Each room's changes are written in their order, one transaction for what queued
    /// under one fence; rooms do not depend on each other, and are written side by
    /// side, so that one room's trouble never holds up another. A room's fence that the
    /// store refused drops that room's later changes under it.
    public func runWriter() async {
        await writes.run { room, fence, changes in await self.store(changes, to: room, fence: fence) }
    }

    /// Stores one room's changes. Retries while the store is away or the failure may
    /// pass; a change the store refuses for good is dropped (the others are stored), the
    /// room is re-read from the store so that memory matches it, and `.rejected` makes
    /// the request that made it fail. `.stale`: another node owns the room now, this
    /// one steps down.
    private func store(_ changes: [StoredRoomChange], to room: JID, fence: RoomFence) async -> RoomWriter.Outcome {
        switch await attempt(changes, to: room, fence: fence) {
        case .stored: return .stored
        case .stale: return .stale
        case .rejected(let error):
            guard changes.count > 1 else {
                rejected(changes, in: room, error: error)
                return .rejected
            }
            // Find the changes at fault: one transaction each, the others are kept.
            var outcome = RoomWriter.Outcome.stored
            for change in changes {
                switch await attempt([change], to: room, fence: fence) {
                case .stored: continue
                case .stale: return .stale
                case .rejected(let error):
                    rejected([change], in: room, error: error)
                    outcome = .rejected
                }
            }
            return outcome
        }
    }

    private enum Attempt {
        case stored, stale
        case rejected(PermanentStoreError)
    }

    private func attempt(_ changes: [StoredRoomChange], to room: JID, fence: RoomFence) async -> Attempt {
        var delay: Duration = .milliseconds(50)
        while true {
            await writeSlots.acquire()
            let outcome: Attempt?
            do {
                let store = self.store
                try await withDeadline(5) { try await store.apply(changes, to: room, fence: fence) }
                outcome = .stored
            } catch let error as StaleOwnerError {
                logger.warning("stale owner: write refused, no longer serving the room", metadata: ["room": "\(room)", "fence": "\(error.fence)"])
                counterState.withLock { $0.staleWrites += 1 }
                stepDown(room, fence: fence)
                outcome = .stale
            } catch let error as PermanentStoreError {
                outcome = .rejected(error)
            } catch {
                // PostgreSQL away (restarting), a timeout, a deadlock: keep the order, try
                // again (this room only: the others have lanes of their own).
                logger.error("storing a room change failed; retrying", metadata: ["room": "\(room)", "error": "\(String(reflecting: error))"])
                outcome = nil
            }
            writeSlots.release()
            if let outcome { return outcome }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(2))
        }
    }

    /// A change the store will never take: logged once, counted, dropped, and the room
    /// re-read so that what it holds matches the store.
    private func rejected(_ changes: [StoredRoomChange], in room: JID, error: PermanentStoreError) {
        logger.error(
            "the store refused a room change for good; dropped it",
            metadata: ["room": "\(room)", "change": "\(Self.summary(changes))", "error": "\(error.detail)"]
        )
        counterState.withLock { $0.rejectedWrites += 1 }
        Task { await self.reconcile(room) }
    }

    /// What a change was, for the log (not its content, which may be huge).
    static func summary(_ changes: [StoredRoomChange]) -> String {
        changes.map { change in
            switch change {
            case .configuration: "configuration"
            case .occupant(let occupant): "occupant \(occupant.position)"
            case .occupantLeft: "occupant left"
            case .subject: "subject"
            case .affiliation(let jid, let affiliation, _, _):
                "affiliation \(affiliation) (\(jid.description.utf8.count) bytes)"
            case .history: "history"
            case .deleted: "deleted"
            }
        }.joined(separator: ", ")
    }

    /// Stops accepting writes; `runWriter` returns after the queued ones.
    public func finishWrites() {
        writes.finish()
    }

    /// Returns once every change queued before the call is stored (or refused).
    public func flushWrites() async {
        await writes.flush()
    }

    /// Returns once every change of `room` queued before the call is stored (or refused).
    public func flushWrites(_ room: JID) async {
        await writes.flush(room)
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
                    slot.hold(input)
                    return nil
                }
                guard behindOthers else {
                    trace(input, "processed")
                    return .process(input, box)
                }
                trace(input, "queued behind others")
                slot.hold(input)
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
        trace(input, "activates the room")
        let box = RoomBox(roomJID)
        box.state.withLock { $0.hold(input) }
        rooms[roomJID] = box
        return .activate(box)
    }

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
    private func routeWaiting(_ take: (inout [JID: RoomBox]) -> [RoomInput]) {
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
                try? await Task.sleep(for: .milliseconds(250))
                self.handle(again)
            }
            return
        }
        answer(input, with: input.stanza.errorReply(serviceError(error, answering: input.stanza)), keeping: input.receipt)
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

    private func activate(_ box: RoomBox) async {
        let me = placement.nodeName
        let started = ContinuousClock.now
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
                if ContinuousClock.now - started > inputTimeout, box.state.withLock({ $0.pending.isEmpty }) { return retire(box) }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .milliseconds(250))
                continue
            }
            // Nothing waits for the room any more (what did was refused after
            // `inputTimeout`): stop trying; the next input starts again.
            if ContinuousClock.now - started > inputTimeout, box.state.withLock({ $0.pending.isEmpty }) {
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
                    if !askedHolder, ContinuousClock.now - started > .seconds(1), let holder, holder.live,
                        let node = holder.node, node != me
                    {
                        // Longer than a hand-over takes: the holder may hold the row
                        // without serving the room; it releases it if so.
                        askedHolder = true
                        try await store.askToRelease(box.jid, holder: node)
                        logger.info("asked a room's holder to release it", metadata: ["room": "\(box.jid)", "holder": "\(holder)"])
                    }
                    try? await Task.sleep(for: delay)
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
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(1))
            }
        }
    }

    // MARK: - Input that waits too long

    /// Refuses, every `inputTimeout / 4`, the input that has waited for its room longer
    /// than `inputTimeout`, until cancelled.
    public func runInputTimeouts() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: max(inputTimeout / 4, .milliseconds(50)))
            expireWaitingInput()
        }
    }

    /// Refuses the input that has waited longer than `inputTimeout` (the others keep
    /// their order), with an error that says why, and logs each room once.
    public func expireWaitingInput(now: ContinuousClock.Instant = .now) {
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
    private func creationRefusal(_ box: RoomBox) async throws -> StanzaError? {
        let limit = environment.limits.roomsPerUser
        let creator = box.state.withLock { slot in slot.pending.first { Self.isJoin($0.stanza) }?.real.bare }
        guard limit > 0, let creator, !environment.isServiceAdmin(creator) else { return nil }
        guard try await store.ownedRoomCount(creator) >= limit else { return nil }
        return StanzaError(.policyViolation, text: "you own \(limit) rooms already, the most one user may")
    }

    private func install(_ stored: StoredRoom?, fence: RoomFence, in box: RoomBox, creationRefusal: StanzaError? = nil) {
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
                // Their nodes know they are in the room (told by an earlier owner).
                slot.members = Set(room.occupants.map(\.realJID))
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
                    slot.members = []
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

    static func isJoin(_ stanza: XMLElement) -> Bool {
        guard stanza.stanzaKind == .presence, stanza.type == nil, let to = try? stanza.toJID(), to.resourcepart != nil else {
            return false
        }
        return stanza.child("x", namespace: Namespace.muc) != nil
    }

    private func process(_ input: RoomInput, in box: RoomBox) {
        var ended = false
        var requeue: [RoomInput] = []
        let canServe = placement.canServe
        box.state.withLock { slot in
            guard slot.phase == .active, var room = slot.room else {
                if slot.phase == .gone { requeue.append(input) } else { slot.hold(input) }
                return
            }
            guard canServe else {
                // The lease is not confirmed (PostgreSQL unreachable for a while): hold
                // the input, in order, until it is — or until the node knows it lost it.
                slot.hold(input)
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
    private func outgoing(
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
                if recipients.count == 1 || slot.homes.isEmpty {
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
        if occupantsChanged || room.occupants.count != slot.members.count {
            let present = Set(room.occupants.map(\.realJID))
            for real in slot.members.sorted(by: { $0.description < $1.description }) where !present.contains(real) {
                if let home = node(of: real) { outgoing.append(.membership(real: real, entered: false, node: home)) }
            }
            for occupant in room.occupants where !slot.members.contains(occupant.realJID) {
                if let home = node(of: occupant.realJID) { outgoing.append(.membership(real: occupant.realJID, entered: true, node: home)) }
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
                // Let go wherever a link acknowledged (under its locks): sent from elsewhere.
                Task { self.release(id, box: box) }
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

    private func send(_ item: RoomOutgoing, room: JID, keeping keep: (any AnyObject & Sendable)?) {
        switch item {
        case .copies(let copies, let node): output.deliver(copies, node: node, keeping: keep)
        case .membership(let real, let entered, let node): output.membership(room: room, real: real, entered: entered, node: node)
        case .left(let token, let node): output.left(token: token, room: room, node: node)
        }
    }

    /// The room ended: what it held goes now, in order per node (`HeldRoomOutput.takeAll`).
    private func sendAllHeld(_ slot: inout Slot, room: JID) {
        for entry in slot.held.takeAll() {
            send(entry.item, room: room, keeping: entry.keep)
        }
    }

    private func release(_ ticket: UInt64, box: RoomBox) {
        box.state.withLock { slot in
            for entry in slot.held.open(ticket) {
                send(entry.item, room: box.jid, keeping: entry.keep)
            }
        }
    }

    private func storeOccupancy(_ room: Room, slot: inout Slot, box: RoomBox, request: RoomInput?) {
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

    private func enqueue(_ change: StoredRoomChange, slot: Slot, box: RoomBox) {
        guard let fence = slot.fence else { return }
        switch change {
        case .configuration, .affiliation: box.queuedSettings.add(1, ordering: .relaxed)
        default: break
        }
        writes.push(.change(fence, change), for: box.jid)
    }

    private func stored(_ change: RoomChange, room: Room) -> StoredRoomChange {
        switch change {
        case .created(let configuration), .configured(let configuration):
            let json = (try? JSONEncoder().encode(configuration)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            return .configuration(json: json, persistent: configuration.persistent, locked: room.locked)
        case .affiliation(let jid, let entry):
            return .affiliation(jid, affiliation: entry.affiliation.rawValue, reason: entry.reason, nick: entry.nick)
        case .subject(let subject, let nick, let stamp):
            return .subject(subject, nick: nick, stamp: stamp)
        case .history(let entry):
            return .history(
                StoredHistoryEntry(
                    stanza: entry.message.serialized(parentNamespace: Namespace.client), stamp: entry.stamp,
                    nick: entry.senderNick
                ),
                // What the room keeps after it (bounded by count and bytes, `RoomLimits.historyBytes`).
                keep: room.history.count
            )
        case .destroyed:
            return .deleted
        }
    }

    static func room(from entry: StoredRoom, logger: Logger) -> Room {
        let configuration: RoomConfiguration
        if let decoded = try? JSONDecoder().decode(RoomConfiguration.self, from: Data(entry.configuration.utf8)) {
            configuration = decoded
        } else {
            logger.error("room with unreadable configuration", metadata: ["room": "\(entry.jid)"])
            configuration = RoomConfiguration()
        }
        var room = Room(
            jid: entry.jid, configuration: configuration, subject: entry.subject, subjectNick: entry.subjectNick,
            subjectStamp: entry.subjectStamp, locked: entry.locked
        )
        room.affiliations = affiliations(entry.affiliations)
        var reader = StoredStanzaReader()
        for item in entry.history {
            guard let message = reader.read(item.stanza) else {
                logger.error("a stored history message cannot be read; skipped", metadata: ["room": "\(entry.jid)"])
                continue
            }
            room.history.append(HistoryEntry(message: message, stamp: item.stamp, senderNick: item.nick))
        }
        return room
    }

    static func affiliations(_ stored: [StoredAffiliation]) -> [JID: AffiliationEntry] {
        var result: [JID: AffiliationEntry] = [:]
        for affiliation in stored {
            if let value = Affiliation(rawValue: affiliation.affiliation) {
                result[affiliation.jid] = AffiliationEntry(value, reason: affiliation.reason, nick: affiliation.nick)
            }
        }
        return result
    }
}
