import Cluster
import Foundation
import Logging
import MUCService
import NIOCore
import NIOPosix
import PostgresNIO
import Storage
import Synchronization
import XMPPCore
import XMPPStream

/// This node's part in the cluster: it wires the `Cluster` parts (node links, the lease's
/// renewer, the ring barrier, the session directory) to the rooms and the router, keeps
/// membership and the ring, and decides what a lost lease does. It tells the MUC service
/// where rooms belong and carries room input and output between nodes (docs/cluster.md).
final class ClusterCoordinator: RoomPlacement, RoomOutput, RemoteRouting, Sendable {
    struct Settings: Sendable {
        var leaseSeconds: Double
        var heartbeatSeconds: Double
    }

    let nodeName: String
    let settings: Settings
    let database: ClusterDatabase
    let logger: Logger
    /// The time of the lease, the heartbeat and the backoffs.
    let clock: ServiceClock
    private let state = Mutex(State())
    private let muc = Attached<MUCService>()
    private let router = Attached<LocalRouter>()
    let links: NodeLinks
    /// Users' sessions across the cluster, and stanzas for those on other nodes.
    let directory: SessionDirectory

    struct State {
        var ring = HashRing(nodes: [String]())
        var reachable: Set<String> = []
        /// The incarnation of each reachable node, as last read.
        var incarnations: [String: Int64] = [:]
        /// The ticket of the newest membership read applied (`refreshMembership`).
        var appliedMembershipRead: UInt64 = 0
        var incarnation: Int64 = 0
        /// On `clock`: the lease holds until then.
        var leaseValidUntil: Duration = .zero
        var draining = false
        /// The lease was lost and the node is joining again: no heartbeats meanwhile.
        var rejoining = false
        /// The node is leaving the cluster for good (a graceful stop): a heartbeat that
        /// finds its row gone is not a lost lease.
        var leaving = false
    }

    /// Groupchat messages other nodes' rooms delivered here, to be told apart when their
    /// input is routed again (see `DeliveredMessages`).
    let delivered = DeliveredMessages()
    /// Room input from peers parked while the rooms' writer is above its high-water mark.
    let parked = ParkedRoomInput()
    /// Tickets of membership reads, in the order they started.
    private let membershipReads = Atomic<UInt64>(0)

    /// Renews the lease apart from everything else.
    private let renewer: LeaseRenewer
    /// The ring barrier after a change of the ring.
    private let barrier: RingBarrier

    init(
        nodeName: String, secret: String, linkTLS: LinkTLS? = nil, linkOptions: NodeLinks.Options = NodeLinks.Options(),
        settings: Settings, database: ClusterDatabase, leaseConnection: PostgresConnection.Configuration,
        group: any EventLoopGroup, clock: ServiceClock = .continuous, logger: Logger
    ) {
        self.clock = clock
        renewer = LeaseRenewer(configuration: leaseConnection, clock: clock, logger: logger)
        self.nodeName = nodeName
        self.settings = settings
        self.database = database
        self.logger = logger
        let muc = self.muc
        let router = self.router
        let me = self.me
        let delivered = self.delivered
        let parked = self.parked
        let links = NodeLinks(
            name: nodeName, incarnation: 0, secret: secret, tls: linkTLS, options: linkOptions, group: group,
            clock: clock, logger: logger,
            handler: { frame, from, receipt in
                switch frame {
                case .barrier(let id, let ring):
                    me.withLock { $0 }?.barrier.received(id, ring: ring, from: from)
                case .barrierAck(let id):
                    me.withLock { $0 }?.barrier.acknowledged(id, from: from)
                case .room(let stanza, let real, let home, let hops):
                    var input = RoomInput(stanza: stanza, real: real, home: home, hops: hops)
                    input.receipt = receipt
                    if let service = muc.withLock({ $0 }) { parked.handle(input, in: service) }
                case .sessionEnded(let room, let real, let home, let hops, let token):
                    var input = RoomInput.sessionEnded(room: room, real: real, home: home, token: token, hops: hops)
                    input.receipt = receipt
                    if let service = muc.withLock({ $0 }) { parked.handle(input, in: service) }
                case .sessionLeft(let token):
                    router.withLock { $0 }?.sessionLeft(token: token)
                case .membership(let room, let real, let entered):
                    router.withLock { $0 }?.membership(room: room, real: real, entered: entered)
                case .deliver(let copies):
                    guard let copies = delivered.toDeliver(copies) else { return }
                    router.withLock { $0 }?.deliverLocal(copies)
                case .user(let stanza):
                    router.withLock { $0 }?.deliverFromRemote(stanza)
                case .addressed(let stanza):
                    router.withLock { $0 }?.deliverHere(stanza)
                }
            },
            bounce: { frame in
                switch frame {
                case .barrier, .barrierAck:
                    break  // the peer is gone: the barrier's timeout covers it
                case .room(let stanza, let real, let home, let hops):
                    // Its node went away: route it again (the ring has changed).
                    guard !delivered.reached(stanza, sender: real) else {
                        return logger.info("input the room had answered came back from a gone node; dropped", metadata: ["jid": "\(real)"])
                    }
                    muc.withLock { $0 }?.handle(RoomInput(stanza: stanza, real: real, home: home, hops: hops + 1))
                case .sessionEnded(let room, let real, let home, let hops, let token):
                    muc.withLock { $0 }?.handle(RoomInput.sessionEnded(room: room, real: real, home: home, token: token, hops: hops + 1))
                case .deliver, .addressed, .sessionLeft, .membership:
                    break  // the recipients' node is gone, and so are they
                case .user(let stanza):
                    guard stanza.type != "error", stanza.type != "result", stanza.name != "presence" else { return }
                    router.withLock { $0 }?.deliver(stanza.errorReply(StanzaError(.recipientUnavailable)))
                }
            }
        )
        self.links = links
        directory = SessionDirectory(
            nodeName: nodeName, database: database, links: links,
            isReachable: { node in me.withLock { $0 }?.isReachable(node) ?? false }, logger: logger)
        barrier = RingBarrier(
            clock: clock, logger: logger, currentRing: { me.withLock { $0 }?.ringID ?? "" },
            send: { frame, peer in links.send(frame, to: peer) }
        )
    }

    /// The ring as the barrier names it: its nodes, joined.
    private var ringID: String { ring.nodes.joined(separator: ",") }

    func attach(muc service: MUCService, router localRouter: LocalRouter) {
        muc.withLock { $0 = service }
        router.withLock { $0 = localRouter }
        me.withLock { $0 = self }
    }

    private let me = Attached<ClusterCoordinator>()

    // MARK: - Ring barrier

    /// Waits for the reachable peers to have this node's ring (see `RingBarrier`).
    func ringBarrier() async {
        await barrier.pass(peers: state.withLock { $0.reachable }.subtracting([nodeName]))
    }

    private var service: MUCService? { muc.withLock { $0 } }

    // MARK: - RoomPlacement

    func owner(of room: JID) -> String? {
        state.withLock { $0.ring.owner(of: room.description) }
    }

    func isReachable(_ node: String) -> Bool {
        state.withLock { $0.reachable.contains(node) }
    }

    var canServe: Bool {
        state.withLock { $0.incarnation > 0 && clock.now() < $0.leaseValidUntil }
    }

    var ring: HashRing { state.withLock { $0.ring } }
    var incarnation: Int64 { state.withLock { $0.incarnation } }
    /// Read for every stanza from a local session to a room: an atomic copy of
    /// `State.rejoining` rather than the state's lock.
    var isRejoining: Bool { rejoiningNow.load(ordering: .relaxed) }
    private let rejoiningNow = Atomic<Bool>(false)

    // MARK: - RoomOutput

    func deliver(_ copies: RoomCopies, node: String?, keeping keep: (any AnyObject & Sendable)?) {
        if node == nodeName {
            guard let local = delivered.toDeliver(copies.copies, noting: false) else { return }
            router.withLock { $0 }?.deliverLocal(local)
        } else if let node {
            sendOrWait(.deliver(copies.copies), to: node, keeping: keep)
        } else {
            // Not an occupant: every node gets a copy, on the links that carry the room's
            // other output, so that it arrives in the room's order (an invitation before
            // the answer to the invitee's next query). Looking the user up first, in the
            // session directory, let later output overtake it.
            let router = router.withLock { $0 }
            let peers = state.withLock { $0.reachable }.subtracting([nodeName]).sorted()
            for recipient in copies.recipients
            where recipient.domainpart == router?.domain.domainpart && (recipient.isFull || copies.stanza.stanzaKind == .message) {
                var copy = copies.stanza
                copy[attribute: "to"] = recipient.description
                let here = router?.deliverHere(copy) ?? false
                for peer in peers { sendOrWait(.addressed(copy), to: peer, keeping: keep) }
                if !here, LocalRouter.waitsOffline(copy, to: recipient), let router {
                    directory.unlessAvailableElsewhere(copy, to: recipient, otherwise: router.keepingOffline(for: recipient))
                }
            }
        }
    }

    func left(token: UInt64, room: JID, node: String) {
        if node == nodeName {
            router.withLock { $0 }?.sessionLeft(token: token)
        } else {
            sendOrWait(.sessionLeft(token: token), to: node)
        }
    }

    func membership(room: JID, real: JID, entered: Bool, node: String) {
        if node == nodeName {
            router.withLock { $0 }?.membership(room: room, real: real, entered: entered)
        } else {
            sendOrWait(.membership(room: room, real: real, entered: entered), to: node)
        }
    }

    /// Room output for a node this node has no link to: a node that joined a moment ago,
    /// whose sessions' input reached a room here before this node read the membership
    /// that names it. Kept, in order, until the next membership read, then sent (or
    /// dropped if the node is still unknown). Before, it was dropped at once, and a join
    /// through a node that had just started could go unanswered.
    private let unlinked = Mutex<[(node: String, frame: LinkFrame, keep: (any AnyObject & Sendable)?)]>([])

    private func sendOrWait(_ frame: LinkFrame, to node: String, keeping keep: (any AnyObject & Sendable)? = nil) {
        // Queued for the link, or behind what already waits for that node, under one lock
        // with the flush below: a frame never overtakes one that waits.
        let first = unlinked.withLock { waiting -> Bool in
            if !waiting.contains(where: { $0.node == node }), links.enqueue(frame, to: node, keeping: keep) { return false }
            waiting.append((node, frame, keep))
            return waiting.count == 1
        }
        guard first else { return }
        Task {
            try? await refreshMembership()
            let dropped = unlinked.withLock { waiting -> Int in
                defer { waiting = [] }
                return waiting.filter { !links.enqueue($0.frame, to: $0.node, keeping: $0.keep) }.count
            }
            if dropped > 0 {
                logger.warning("room output for a node that is not a member was dropped", metadata: ["frames": "\(dropped)"])
            }
        }
    }

    func forward(_ input: RoomInput, to node: String) -> Bool {
        if let token = input.sessionEnd {
            guard let room = (try? input.stanza.toJID())??.bare else { return true }
            return links.enqueue(
                .sessionEnded(room: room, real: input.real, home: input.home, hops: input.hops, token: token), to: node, keeping: input.receipt)
        }
        return links.enqueue(.room(input.stanza, real: input.real, home: input.home, hops: input.hops), to: node, keeping: input.receipt)
    }

    /// On the event loop it is called from (a link's, acknowledging), after what that
    /// loop is doing now; a task only where no event loop calls.
    func later(_ work: @escaping @Sendable () -> Void) {
        if let loop = MultiThreadedEventLoopGroup.currentEventLoop {
            loop.execute(work)
        } else {
            Task { work() }
        }
    }

    // MARK: - RemoteRouting (users on other nodes)

    func route(_ stanza: XMLElement, to: JID, bounce: (@Sendable (XMLElement) -> Void)?) {
        directory.route(stanza, to: to, bounce: bounce)
    }

    func routeToAvailable(_ stanza: XMLElement, to: JID, otherwise: (@Sendable (XMLElement) -> Void)?) {
        directory.routeToAvailable(stanza, to: to, otherwise: otherwise)
    }

    func sessionAvailability(_ jid: JID, available: Bool, priority: Int) async {
        await directory.availability(jid, available: available, priority: priority)
    }

    func sessionBound(_ jid: JID) async { await directory.bound(jid) }

    func sessionEnded(_ jid: JID) async { await directory.ended(jid) }

    func pressure(toward node: String) -> PressureGauge? { links.pressure(to: node) }

    // MARK: - Lifecycle

    /// Registers the node, takes the first membership, and starts the links.
    /// `rejoining`: this process lost its lease and starts over.
    func start(linkAddress: String, rejoining: Bool = false) async throws {
        // The sessions of an earlier run of this node (crashed and started again within
        // its lease, or this process after losing its lease) are gone, but the other
        // nodes learn that only by seeing the node unreachable: end that run's lease and
        // give every node a membership read (one heartbeat) to notice, so that its
        // occupants leave their rooms before this run's sessions can join them again.
        let recent = settings.heartbeatSeconds * 3 + 1
        if try await database.endLeaseIfAlive(name: nodeName, recent: recent) || rejoining {
            logger.notice("an earlier run of this node held a lease: waiting until the other nodes have seen it end")
            try await clock.sleep(.seconds(settings.heartbeatSeconds * 2) + .milliseconds(200))
        }
        let started = clock.now()
        let incarnation = try await database.register(name: nodeName, linkAddress: linkAddress, leaseSeconds: settings.leaseSeconds)
        links.setIncarnation(incarnation)
        state.withLock {
            $0.incarnation = incarnation
            $0.leaseValidUntil = started + .seconds(settings.leaseSeconds) - .milliseconds(200)
        }
        self.linkAddress = linkAddress
        try await refreshMembership()
        logger.info("joined the cluster", metadata: ["incarnation": "\(incarnation)", "link": "\(linkAddress)"])
        // After a lost lease as after a process start: this run's sessions could not join
        // a room yet (input from them is refused while rejoining).
        try await leaveRoomsOfEarlierRuns()
    }

    /// Occupants recorded with their session on this node are what an earlier run (or
    /// incarnation) left — this one has no occupant yet: each leaves its room, as a
    /// session that ends does,
    /// so that the room tells the others and never sends to a ghost. Rooms whose owner
    /// had noticed the earlier run die have removed them already; these catch the rest
    /// (rooms nobody served since, a restart quicker than the lease).
    private func leaveRoomsOfEarlierRuns() async throws {
        guard let service else { return }
        let stale = try await database.occupants(homedAt: nodeName)
        guard !stale.isEmpty else { return }
        logger.notice("occupants an earlier run of this node left in rooms: they leave", metadata: ["occupants": "\(stale.count)"])
        for (room, real) in stale {
            guard let room = try? JID(room), let real = try? JID(real) else { continue }
            service.handle(RoomInput.sessionEnded(room: room, real: real, home: nodeName, token: 0))
        }
    }

    private let linkAddressState = Mutex("")
    private var linkAddress: String {
        get { linkAddressState.withLock { $0 } }
        set { linkAddressState.withLock { $0 = newValue } }
    }

    /// Heartbeats, membership, remote routing and directory writes, until cancelled.
    func run() async {
        startRenewer()
        await withDiscardingTaskGroup { group in
            group.addTask { await self.directory.run() }
            group.addTask { await self.heartbeatLoop() }
        }
        await renewer.stop()
    }

    /// The lease renewed on its own thread and connection (`LeaseRenewer`).
    private func startRenewer() {
        let (nodeName, leaseSeconds) = (self.nodeName, settings.leaseSeconds)
        // A beat answered later than the lease would not save it anyway.
        let timeout = Duration.seconds(settings.leaseSeconds)
        renewer.start(every: .seconds(settings.heartbeatSeconds), timeout: timeout) { [self] in
            let (incarnation, paused) = state.withLock { ($0.incarnation, $0.rejoining || $0.leaving) }
            guard incarnation > 0, !paused else { return nil }
            return ClusterDatabase.heartbeatStatement(name: nodeName, incarnation: incarnation, leaseSeconds: leaseSeconds)
        } done: { [self] result, sent in
            renewed(result, sent: sent)
        }
    }

    private func renewed(_ result: Result<Bool, any Error>, sent: Duration) {
        switch result {
        case .success(true):
            let wasServing = canServe
            state.withLock { $0.leaseValidUntil = sent + .seconds(settings.leaseSeconds) - .milliseconds(200) }
            if !wasServing, let service { resume(service) }
        case .success(false):
            let leaving = state.withLock { state -> Bool in
                if !state.leaving { state.rejoining = true }
                return state.leaving
            }
            if leaving { return }
            rejoiningNow.store(true, ordering: .relaxed)
            Task {
                await leaseLost()
                state.withLock { $0.rejoining = false }
                rejoiningNow.store(false, ordering: .relaxed)
            }
        case .failure(let error):
            logger.warning("heartbeat failed", metadata: ["error": "\(error)"])
        }
    }

    /// Whether rooms' held input is being resumed, and whether the lease came back again
    /// meanwhile (then it is resumed once more when the run ends).
    private let resuming = Mutex((running: false, again: false))

    /// Resumes the rooms' held input on the cooperative pool, never on the renewer's
    /// thread (the next beat must not wait behind room work), one run at a time: two runs
    /// draining the same room at once could swap its inputs.
    private func resume(_ service: MUCService) {
        let start = resuming.withLock { state -> Bool in
            if state.running {
                state.again = true
                return false
            }
            state.running = true
            return true
        }
        guard start else { return }
        Task {
            repeat {
                service.resumeHeld()
            } while resuming.withLock { state -> Bool in
                if state.again {
                    state.again = false
                    return true
                }
                state.running = false
                return false
            }
        }
    }

    func stopBackground() {
        directory.finish()
    }

    private func heartbeatLoop() async {
        var beats = 0
        while !Task.isCancelled {
            try? await clock.sleep(.seconds(settings.heartbeatSeconds))
            if Task.isCancelled { return }
            // While the renewer's lost lease is being taken again, start() reads the membership.
            if state.withLock({ $0.rejoining || $0.leaving }) { continue }
            do {
                try await refreshMembership()
                beats += 1
                if beats % 600 == 0 { try? await database.pruneEvents() }
                // Owner rows of rooms this node does not serve (normally released when
                // the room ends or moves; this catches what a failure left).
                if beats % 10 == 0, canServe, let service { Task { await service.releaseUnserved() } }
            } catch {
                logger.warning("heartbeat failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Others may have declared this node dead (it was paused, or cut off from
    /// PostgreSQL past its lease): its rooms may have new owners and its sessions have
    /// left them. Stop serving rooms, close the sessions, and join again as a new
    /// incarnation.
    private func leaseLost() async {
        logger.error("lease lost: this node was declared dead; rejoining as a new incarnation")
        state.withLock { $0.leaseValidUntil = .zero }  // over: the clock is never before its start
        service?.discardHeldOutput()
        links.stopAcknowledging()
        // Output still waiting for a link is the gone run's too.
        let waiting = unlinked.withLock { waiting -> Int in
            defer { waiting = [] }
            return waiting.count
        }
        let dropped = links.dropAllLinks() + waiting
        if dropped > 0 {
            logger.warning("lease lost: frames the node links still held were dropped", metadata: ["frames": "\(dropped)"])
        }
        parked.discardAll()
        service?.dropAll()
        router.withLock { $0 }?.closeAll(with: StreamError(.reset, text: "this node rejoined the cluster; reconnect"))
        do {
            try await start(linkAddress: linkAddress, rejoining: true)
        } catch {
            logger.error("rejoining failed", metadata: ["error": "\(error)"])
        }
    }

    /// Reads the membership and applies changes: the ring, links, dead nodes' sessions.
    func refreshMembership() async throws {
        // Reads run concurrently (heartbeat, bus events, output waiting for a link): one
        // that started earlier but finished later must not undo a newer one's view (a run
        // of a peer seen gone, then its next run, applied in the wrong order).
        let ticket = membershipReads.add(1, ordering: .relaxed).newValue
        let members = try await database.members()
        let draining = state.withLock { $0.draining }
        let ringNodes = members.filter { $0.inRing && !(draining && $0.name == nodeName) }.map(\.name)
        let reachable = Set(members.filter(\.reachable).map(\.name))
        let ring = HashRing(nodes: ringNodes)
        let peers = members.filter { $0.reachable && $0.name != nodeName }.map { ($0.name, $0.linkAddress, $0.incarnation) }
        var ringChanged = false
        var restarted = false
        var lost: Set<String> = []
        let incarnations = Dictionary(members.filter(\.reachable).map { ($0.name, $0.incarnation) }, uniquingKeysWith: max)
        var others: [(peer: String, frame: LinkFrame)] = []
        // The new ring, the links, the barriers it settles, and the room input that was
        // queued for nodes gone from the links all change at once for the rooms' routing:
        // that input is routed again before any input routed by the new ring.
        var outdated = false
        let change = { [self] () -> [RoomInput] in
            outdated = state.withLock { state in
                guard ticket > state.appliedMembershipRead else { return true }
                state.appliedMembershipRead = ticket
                return false
            }
            if outdated { return [] }
            (ringChanged, lost) = state.withLock { state -> (Bool, Set<String>) in
                let changed = state.ring != ring
                let lost = state.reachable.subtracting(reachable)
                restarted = incarnations.contains { name, incarnation in
                    state.incarnations[name].map { $0 != incarnation } ?? false
                }
                state.ring = ring
                state.reachable = reachable
                state.incarnations = incarnations
                return (changed, lost)
            }
            var inputs: [RoomInput] = []
            for (peer, frame, keep) in links.replaceKeeping(peers: peers) {
                if case .room(let stanza, let real, let home, let hops) = frame {
                    if delivered.reached(stanza, sender: real) {
                        logger.info("input the room had answered came back from a gone node; dropped", metadata: ["jid": "\(real)"])
                        continue
                    }
                    var input = RoomInput(stanza: stanza, real: real, home: home, hops: hops + 1)
                    input.receipt = keep  // forwarded input that came over a link: still unacknowledged there
                    inputs.append(input)
                } else if case .sessionEnded(let room, let real, let home, let hops, let token) = frame {
                    var input = RoomInput.sessionEnded(room: room, real: real, home: home, token: token, hops: hops + 1)
                    input.receipt = keep
                    inputs.append(input)
                } else {
                    others.append((peer, frame))
                }
            }
            barrier.settle()
            return inputs
        }
        if let service {
            service.changeRoutes(change)
        } else {
            _ = change()  // no rooms here: their queued input has nowhere to go (as a bounce)
        }
        if outdated { return }
        for (peer, frame) in others {
            // Room output for a node that restarted under its name: its recipients may be
            // sessions of the new run (their input reached the room before this node read
            // the membership naming that run, so the output took the old run's link). The
            // new run delivers to those it holds and skips the others.
            switch frame {
            case .deliver, .addressed, .membership:
                // (A membership for a session the new run does not hold makes it leave.)
                if incarnations[peer] != nil, links.enqueue(frame, to: peer) { continue }
            default: break
            }
            links.bounce(frame)
        }
        if !lost.isEmpty {
            logger.info("nodes gone", metadata: ["nodes": "\(lost.sorted())"])
            service?.removeOccupantsOfUnreachableNodes()
            for node in lost where node != nodeName {
                try? await database.removeSessions(ofNode: node)
            }
        }
        if ringChanged {
            logger.info("ring changed", metadata: ["nodes": "\(ring.nodes)"])
            if let service {
                Task { await service.rebalance() }
            }
        }
        if !lost.isEmpty || ringChanged || restarted {
            // Rooms whose owner is gone (or is an earlier run of a node that restarted):
            // the new owner takes them at once.
            for room in (try? await database.roomsOwnedByUnreachableNodes()) ?? [] {
                if let jid = try? JID(room), owner(of: jid) == nodeName { service?.activate(room: jid) }
            }
        }
    }

    /// A control-bus event.
    func handle(_ event: ClusterEvent) async {
        switch event.kind {
        case "nodes":
            try? await refreshMembership()
        case "affiliation", "configuration", "destroyed":
            guard let room = event.room.flatMap({ try? JID($0) }), let service else { return }
            // Off the bus: the owner first waits for its own writes, which must not hold
            // up the events of other rooms.
            Task { await service.roomChanged(room, origin: event.origin) }
        case "released":
            guard let room = event.room.flatMap({ try? JID($0) }) else { return }
            service?.activate(room: room)
        case "release-wanted":
            // Another node could not claim a room this node holds: released unless
            // this node serves it.
            guard event.node == nodeName, let room = event.room.flatMap({ try? JID($0) }), let service else { return }
            Task { await service.releaseUnserved(only: room) }
        default:
            break
        }
    }

    /// Graceful stop, first half: leave the ring, hand every room over, and wait.
    /// Returns `false` when no other node can take the rooms (this is the last one).
    func drain() async -> Bool {
        _ = try? await database.setState(name: nodeName, "draining")
        state.withLock { $0.draining = true }
        try? await refreshMembership()
        guard !state.withLock({ $0.ring.isEmpty }) else { return false }
        await service?.rebalance()
        return true
    }

    /// Graceful stop, second half: leave the cluster for good.
    func leave() async {
        state.withLock { $0.leaving = true }
        try? await database.leave(name: nodeName, incarnation: incarnation)
        await links.shutdown()
    }
}

/// A reference set once after construction.
final class Attached<Value: Sendable>: Sendable {
    private let value = Mutex<Value?>(nil)
    func withLock<R>(_ body: (inout Value?) -> R) -> R { value.withLock { body(&$0) } }
}

/// Routing to users whose sessions are on other nodes.
protocol RemoteRouting: Sendable {
    /// Sends `stanza` to the node(s) holding `to` (full: that session; bare: every node
    /// with a resource of the user); `bounce` is called when there is none.
    func route(_ stanza: XMLElement, to: JID, bounce: (@Sendable (XMLElement) -> Void)?)
    /// Sends `stanza` to the nodes holding an available resource of `to` (bare) with a
    /// non-negative priority; `otherwise` is called when there is none.
    func routeToAvailable(_ stanza: XMLElement, to: JID, otherwise: (@Sendable (XMLElement) -> Void)?)
    /// Records whether `jid` (a session of this node) is available, and its priority.
    func sessionAvailability(_ jid: JID, available: Bool, priority: Int) async
    func sessionBound(_ jid: JID) async
    func sessionEnded(_ jid: JID) async
    /// The queue of what this node sends `node`, with its marks (`nil`: no link to it).
    func pressure(toward node: String) -> PressureGauge?
}
