public import Logging
public import Storage
import NIOCore
import Synchronization
public import XMPPCore
public import XMPPStream
public import MUCService
import MUC

/// Routes the stanzas of the sessions on this node (RFC 6121): presence reflected to
/// the user's own resources, messages and IQs to full and bare JIDs, the server's own
/// IQs, and errors where nobody can take a stanza.
public final class LocalRouter: C2SDelegate {
    struct Entry {
        var session: C2SSession
        var available = false
        var priority = 0
        var presence: XMLElement?
        /// Came online: its offline messages are to be sent before it reads on.
        var catchingUp = false
        /// Came online: its own presence reflected, sent once the directory knows it is
        /// available, so that a user it answers after seeing it finds it available from
        /// any node.
        var heldPresence: XMLElement?
        /// Users it sent directed available presence to (RFC 6121 §4.6): they get its
        /// unavailable presence when it goes offline. At most `directedLimit`.
        var directed: [JID] = []
    }

    struct Table {
        var sessions: [JID: Entry] = [:]
        var resources: [JID: [JID]] = [:]
    }

    public let domain: JID
    public let mucDomain: JID
    private let accounts: any AccountStore
    /// Messages kept for accounts without an available resource (XEP-0160).
    private let offline: (any OfflineStore)?
    /// Directed presence recipients remembered per session (further ones are not told
    /// when it goes offline).
    static let directedLimit = 256

    /// Offline messages kept per account, and their bytes (`limits.offline_*`).
    public let offlineLimits: (messages: Int, bytes: Int)
    private let serverIQ: ServerIQHandler
    private let logger: Logger
    private let clock: ServiceClock
    private let table = Mutex(Table())
    private let mucService = Mutex<MUCService?>(nil)
    private let remoteRouting = Mutex<(any RemoteRouting)?>(nil)
    private let pressuredReads = Atomic<Int>(0)
    /// This node's name: where room output for its sessions is sent.
    public let nodeName: String
    /// The rooms each local session is in, as their owners said (`membership`).
    private let joined = Mutex(Joined())

    struct Joined {
        var rooms: [JID: Set<JID>] = [:]
        /// Sessions whose leaves were sent: a room they enter now is left at once.
        var ending: Set<JID> = []
    }
    private let leaveWaiters = Mutex(LeaveWaiters())

    struct LeaveWaiters {
        var next: UInt64 = 1
        var waiting: [UInt64: CheckedContinuation<Void, Never>] = [:]
        /// Answers that came before anyone waited for them.
        var finished: Set<UInt64> = []
    }

    /// Connects the MUC service: stanzas to the MUC domain go there, and sessions
    /// that end leave its rooms.
    public func attach(_ muc: MUCService) {
        mucService.withLock { $0 = muc }
    }

    func attach(remote: any RemoteRouting) {
        remoteRouting.withLock { $0 = remote }
    }

    private var muc: MUCService? { mucService.withLock { $0 } }
    private var remote: (any RemoteRouting)? { remoteRouting.withLock { $0 } }

    public init(
        domain: JID, mucDomain: JID, nodeName: String = "node1", accounts: any AccountStore,
        offline: (any OfflineStore)? = nil, offlineLimits: (messages: Int, bytes: Int) = (100, 1024 * 1024),
        softwareVersion: String, clock: ServiceClock = .continuous, logger: Logger
    ) {
        self.clock = clock
        self.offlineLimits = offlineLimits
        self.nodeName = nodeName
        self.domain = domain
        self.mucDomain = mucDomain
        self.accounts = accounts
        self.offline = offline
        self.serverIQ = ServerIQHandler(domain: domain, mucDomain: mucDomain, softwareVersion: softwareVersion)
        self.logger = logger
    }

    // MARK: - C2SDelegate

    public func credentials(for account: JID) async throws -> StoredCredentials? {
        try await accounts.credentials(for: account)
    }

    public func sessionBound(_ session: C2SSession) async {
        let replaced = table.withLock { table -> C2SSession? in
            let previous = table.sessions[session.jid]?.session
            table.sessions[session.jid] = Entry(session: session)
            if previous == nil { table.resources[session.jid.bare, default: []].append(session.jid) }
            return previous
        }
        joined.withLock { _ = $0.ending.remove(session.jid) }
        if let replaced {
            logger.info("session replaced", metadata: ["jid": "\(session.jid)"])
            replaced.close(with: StreamError(.conflict, text: "replaced by a new session"))
        }
        await remote?.sessionBound(session.jid)
    }

    public func sessionEnded(_ session: C2SSession) async {
        // Leave the rooms first, wherever they are served: the stream closes only after
        // their owners have removed the session (ARCHITECTURE invariant 6).
        let isCurrent = table.withLock { $0.sessions[session.jid]?.session === session }
        if isCurrent {
            await awaitLeaves(sendLeaves(session.jid, ending: true))
            await remote?.sessionEnded(session.jid)
        }
        let (wasAvailable, directed) = table.withLock { table -> (Bool, [JID]) in
            guard let entry = table.sessions[session.jid], entry.session === session else { return (false, []) }
            table.sessions[session.jid] = nil
            table.resources[session.jid.bare]?.removeAll { $0 == session.jid }
            if table.resources[session.jid.bare]?.isEmpty == true { table.resources[session.jid.bare] = nil }
            return (entry.available, entry.directed)
        }
        // Gone from the table: a room it enters from now on is left at once all the same.
        joined.withLock { _ = $0.ending.remove(session.jid) }
        if wasAvailable {
            let unavailable = XMLElement(
                "presence",
                namespace: Namespace.client,
                ["from": session.jid.description, "type": "unavailable"]
            )
            endDirected(directed, with: unavailable)
            for other in sessions(of: session.jid.bare, availableOnly: true) {
                var copy = unavailable
                copy[attribute: "to"] = other.jid.description
                other.deliver(copy)
            }
            var copy = unavailable
            copy[attribute: "to"] = session.jid.bare.description
            remote?.route(copy, to: session.jid.bare, bounce: nil)
        }
    }

    public func route(_ stanza: XMLElement, from session: C2SSession) {
        // An error stanza must say what the error is (RFC 6120 §8.3.1): one without any
        // child element is dropped, wherever it goes (as Prosody does).
        if stanza.type == "error", stanza.elements.isEmpty { return }
        let to: JID?
        do {
            to = try stanza.toJID()
        } catch {
            return bounce(stanza, StanzaError(.jidMalformed), to: session)
        }
        if let to, to.domainpart == mucDomain.domainpart, let muc {
            return muc.handle(RoomInput(stanza: stanza, real: session.jid, home: nodeName))
        }
        switch stanza.stanzaKind {
        case .presence: routePresence(stanza, to: to, from: session)
        case .message: routeMessage(stanza, to: to ?? session.jid.bare, from: session)
        case .iq: routeIQ(stanza, to: to, from: session)
        case nil: break
        }
    }

    // MARK: - Presence

    private func routePresence(_ presence: XMLElement, to: JID?, from session: C2SSession) {
        guard let to else { return broadcastPresence(presence, from: session) }
        if to.domainpart == domain.domainpart, to.localpart != nil {
            // Directed presence to a local user; subscriptions are not kept (no roster).
            guard presence.type == nil || presence.type == "unavailable" else { return }
            table.withLock { table in
                guard var entry = table.sessions[session.jid], entry.session === session else { return }
                entry.directed.removeAll { $0 == to }
                if presence.type == nil, entry.directed.count < Self.directedLimit { entry.directed.append(to) }
                table.sessions[session.jid] = entry
            }
            deliverDirected(presence, to: to)
        } else if to == domain {
            return
        } else {
            bounce(presence, StanzaError(to.domainpart == mucDomain.domainpart ? .serviceUnavailable : .remoteServerNotFound), to: session)
        }
    }

    /// Directed presence to a local user, on this node and the others.
    private func deliverDirected(_ presence: XMLElement, to: JID) {
        let local = recipients(of: to, availableOnly: true, highestPriorityOnly: false)
        for target in local { target.deliver(presence) }
        if !to.isFull || local.isEmpty { remote?.route(presence, to: to, bounce: nil) }
    }

    /// Who `session` sent directed presence to is told it is unavailable: `presence`
    /// (its broadcast unavailable presence) addressed to each (RFC 6121 §4.6.3).
    private func endDirected(_ directed: [JID], with presence: XMLElement) {
        for jid in directed {
            var copy = presence
            copy[attribute: "to"] = jid.description
            deliverDirected(copy, to: jid)
        }
    }

    /// An available or unavailable presence without `to`: reflected to every available
    /// resource of the user, the sender included (as Prosody does).
    private func broadcastPresence(_ presence: XMLElement, from session: C2SSession) {
        let type = presence.type
        guard type == nil || type == "unavailable" else { return }
        let available = type == nil
        if !available {
            // Directed presence ends with the broadcast unavailable (RFC 6121 §4.6.3).
            _ = sendLeaves(session.jid, ending: false)
        }
        let priority = Int(presence.child("priority")?.text.trimmingWhitespace() ?? "0") ?? 0
        let priorityNow = max(-128, min(127, priority))
        let (targets, change, directed) = table.withLock {
            table -> ([C2SSession], (was: Bool, priority: Int)?, [JID]) in
            guard var entry = table.sessions[session.jid], entry.session === session else { return ([], nil, []) }
            let wasAvailable = entry.available
            let directed = available ? [] : entry.directed
            if !available { entry.directed = [] }
            let change = (wasAvailable, entry.priority)
            entry.available = available
            entry.priority = max(-128, min(127, priority))
            entry.presence = available ? presence : nil
            table.sessions[session.jid] = entry
            let bare = session.jid.bare
            var targets: [C2SSession] = []
            for jid in table.resources[bare] ?? [] {
                guard let other = table.sessions[jid] else { continue }
                if other.available || other.session === session { targets.append(other.session) }
            }
            return (targets, change, directed)
        }
        // Coming online with a non-negative priority: the directory learns it, then the
        // session gets its own presence back, its other resources' and what was kept for
        // the account meanwhile (XEP-0160), before it reads on
        // (`completion(ofRouting:from:)`).
        let comingOnline = change.map { available && !$0.was && priorityNow >= 0 } ?? false
        var held: XMLElement?
        for target in targets {
            var copy = presence
            // The sender's own copy as it sent it (no `to`), as Prosody reflects it.
            copy[attribute: "to"] = target === session ? nil : target.jid.description
            if comingOnline, target === session { held = copy } else { target.deliver(copy) }
        }
        // The user's resources on other nodes.
        var copy = presence
        copy[attribute: "to"] = session.jid.bare.description
        remote?.route(copy, to: session.jid.bare, bounce: nil)
        endDirected(directed, with: presence)
        // A resource coming online learns about the user's other online resources (with a
        // non-negative priority: after its own reflection, in `completion`).
        if available, change?.was == false, !comingOnline {
            for other in othersPresence(of: session) { session.deliver(other) }
        }
        guard let change, change.was != available || (available && change.priority != priorityNow) else { return }
        if comingOnline {
            table.withLock { table in
                guard table.sessions[session.jid]?.session === session else { return }
                table.sessions[session.jid]?.catchingUp = true
                table.sessions[session.jid]?.heldPresence = held
            }
            return
        }
        // The directory learns other availability changes.
        Task { [weak self, weak session] in
            guard let self, let session else { return }
            await self.remote?.sessionAvailability(session.jid, available: available, priority: priorityNow)
        }
    }

    public func completion(ofRouting stanza: XMLElement, from session: C2SSession) -> (@Sendable () async -> Void)? {
        if let pressure = roomPressure(of: stanza) {
            // Backpressure: the queue this stanza went into (the rooms' writer here, or the
            // link to the room's node) is above its high-water mark. The session is not
            // read until it falls to its low mark, or for a second at most, so that a
            // session is never stalled for good; what comes then is refused by the full
            // queue with an error its sender sees.
            pressuredReads.add(1, ordering: .relaxed)
            let loop = session.eventLoop
            return {
                await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                    let once = Atomic<Bool>(false)
                    let resume: @Sendable () -> Void = {
                        if !once.exchange(true, ordering: .relaxed) { continuation.resume() }
                    }
                    let token = Mutex<UInt64?>(nil)
                    let timer = loop.scheduleTask(in: Self.longestPressureWait) {
                        // Gave up waiting: the waiter goes, so none pile up while a queue stays high.
                        if let token = token.withLock({ $0 }) { pressure.cancel(token) }
                        resume()
                    }
                    let waiting = pressure.whenRelieved {
                        timer.cancel()
                        resume()
                    }
                    token.withLock { $0 = waiting }
                }
            }
        }
        return presenceCompletion(ofRouting: stanza, from: session)
    }

    /// Longest a session's reading waits on one full queue.
    static let longestPressureWait: TimeAmount = .seconds(1)

    /// The queue a stanza to a room goes into, when it is high: the rooms' writer if this
    /// node owns the room, the link to its owner otherwise.
    private func roomPressure(of stanza: XMLElement) -> PressureGauge? {
        // Nearly always nothing is high: no address parsed, no owner looked up.
        guard PressureGauge.anyHigh, let muc, let to = try? stanza.toJID(), to.domainpart == mucDomain.domainpart else { return nil }
        let gauge: PressureGauge?
        if let owner = muc.owner(of: to.bare), owner != muc.nodeName {
            gauge = remote?.pressure(toward: owner)
        } else {
            gauge = muc.writerPressure(for: to.bare)
        }
        guard let gauge, gauge.isHigh else { return nil }
        return gauge
    }

    /// Times a session's reading waited on a full room queue (a metric).
    public var pressuredReadCount: Int { pressuredReads.load(ordering: .relaxed) }

    private func presenceCompletion(ofRouting stanza: XMLElement, from session: C2SSession) -> (@Sendable () async -> Void)? {
        guard stanza.name == "presence",
            let (priority, held) = table.withLock({ table -> (Int, XMLElement?)? in
                guard let entry = table.sessions[session.jid], entry.session === session, entry.catchingUp else { return nil }
                table.sessions[session.jid]?.catchingUp = false
                table.sessions[session.jid]?.heldPresence = nil
                return (entry.priority, entry.heldPresence)
            })
        else { return nil }
        return { [weak self, weak session] in
            guard let self, let session else { return }
            await self.remote?.sessionAvailability(session.jid, available: true, priority: priority)
            if let held { session.deliver(held) }
            // The other resources' presence as it is now, not as it was before the wait.
            for other in self.othersPresence(of: session) { session.deliver(other) }
            await self.deliverOffline(to: session)
        }
    }

    /// The current presence of `session`'s user's other available resources, addressed
    /// to `session`.
    private func othersPresence(of session: C2SSession) -> [XMLElement] {
        table.withLock { table in
            (table.resources[session.jid.bare] ?? []).compactMap { jid -> XMLElement? in
                guard let other = table.sessions[jid], other.session !== session, other.available, var copy = other.presence else { return nil }
                copy[attribute: "to"] = session.jid.description
                return copy
            }
        }
    }

    /// Keeps `message` for `account` while it has no available resource, or bounces it to
    /// the sender (`service-unavailable`, as for an account that does not exist) when it
    /// cannot be kept: no such account, its limits reached (`limits.offline_messages`,
    /// `limits.offline_bytes`), a `no-store` hint (XEP-0334).
    private func keepOffline(_ message: XMLElement, for account: JID, bouncingTo session: C2SSession?) {
        let bounce: @Sendable () -> Void = { [weak session] in
            guard let session, message.type != "error" else { return }
            session.deliver(message.errorReply(StanzaError(.serviceUnavailable)))
        }
        let hinted =
            message.child("no-store", namespace: "urn:xmpp:hints") != nil
            || message.child("no-permanent-store", namespace: "urn:xmpp:hints") != nil
        guard let offline, !hinted else { return bounce() }
        let text = message.serialized(parentNamespace: Namespace.client)
        let logger = logger
        let limits = offlineLimits
        let account = account.bare
        // One after the other per account, in the order they were routed: kept in that
        // order, and the ones past a limit are the last ones. At most a limit's worth
        // wait; more are bounced at once (a flood costs no query each).
        let queued = keeping.withLock { state -> Bool in
            let pending = state.accounts[account]
            guard (pending?.waiting ?? 0) < max(1, limits.messages) else { return false }
            state.next += 1
            let token = state.next
            let previous = pending?.last
            let task = Task { [weak self] in
                await previous?.value
                do {
                    if try await offline.keep(text, for: account, limit: limits.messages, bytes: limits.bytes) {
                        self?.kept(account, token: token)
                        return
                    }
                } catch {
                    logger.warning("offline message not kept", metadata: ["account": "\(account)", "error": "\(error)"])
                }
                bounce()
                self?.kept(account, token: token)
            }
            state.accounts[account] = Keeping(last: task, token: token, waiting: (pending?.waiting ?? 0) + 1)
            return true
        }
        if !queued { bounce() }
    }

    private struct Keeping {
        var last: Task<Void, Never>
        var token: UInt64
        var waiting: Int
    }
    private let keeping = Mutex<(next: UInt64, accounts: [JID: Keeping])>((0, [:]))

    private func kept(_ account: JID, token: UInt64) {
        keeping.withLock { state in
            state.accounts[account]?.waiting -= 1
            if state.accounts[account]?.token == token { state.accounts[account] = nil }
        }
    }

    /// Sends `session` what was kept for its account, oldest first, each with a delay
    /// stamp from the server (XEP-0203), and forgets it.
    private func deliverOffline(to session: C2SSession) async {
        guard let offline else { return }
        // What is being kept for the account right now is taken with the rest.
        await keeping.withLock { $0.accounts[session.jid.bare]?.last }?.value
        let kept: [OfflineMessage]
        do {
            kept = try await offline.take(for: session.jid.bare)
        } catch {
            logger.warning("offline messages not read", metadata: ["account": "\(session.jid.bare)", "error": "\(error)"])
            return
        }
        var reader = StoredStanzaReader()
        for message in kept {
            guard var stanza = reader.read(message.stanza) else { continue }
            stanza.append(
                XMLElement("delay", namespace: Namespace.delay, ["from": domain.description, "stamp": MUC.Timestamp.format(message.stamp.rounded(.down))]))
            session.deliver(stanza)
        }
    }

    // MARK: - Messages

    private func routeMessage(_ message: XMLElement, to: JID, from session: C2SSession) {
        let type = message.type ?? "normal"
        guard to.domainpart == domain.domainpart else {
            let condition: StanzaError.Condition = to.domainpart == mucDomain.domainpart ? .serviceUnavailable : .remoteServerNotFound
            return bounce(message, StanzaError(condition), to: session)
        }
        guard to.localpart != nil else {
            return bounce(message, StanzaError(.serviceUnavailable), to: session)
        }
        if to.isFull, let target = table.withLock({ $0.sessions[to]?.session }) {
            return target.deliver(message)
        }
        let bounceTo: @Sendable (XMLElement) -> Void = { [weak session] stanza in
            guard let session, stanza.type != "error", stanza.type != "headline" else { return }
            session.deliver(stanza.errorReply(StanzaError(.serviceUnavailable)))
        }
        switch type {
        case "groupchat":
            if to.isFull, let remote { return remote.route(message, to: to, bounce: bounceTo) }
            return bounce(message, StanzaError(.serviceUnavailable), to: session)
        case "error":
            if to.isFull { remote?.route(message, to: to, bounce: nil) }
            return
        case "headline":
            for target in recipients(of: to.bare, availableOnly: true, highestPriorityOnly: false) {
                target.deliver(message)
            }
            remote?.route(message, to: to.bare, bounce: nil)
        default:
            let targets = recipients(of: to.bare, availableOnly: true, highestPriorityOnly: true)
            for target in targets { target.deliver(message) }
            guard let remote else {
                if targets.isEmpty { keepOffline(message, for: to.bare, bouncingTo: session) }
                return
            }
            // Available resources on other nodes; kept offline when there is none anywhere.
            let keep: @Sendable (XMLElement) -> Void = { [weak self, weak session] stanza in
                self?.keepOffline(stanza, for: to.bare, bouncingTo: session)
            }
            if to.isFull && targets.isEmpty {
                // That resource on another node, else the account's available ones (RFC 6121 §8.5.3.2.1).
                remote.route(message, to: to) { stanza in
                    remote.routeToAvailable(stanza, to: to.bare, otherwise: keep)
                }
            } else {
                remote.routeToAvailable(message, to: to.bare, otherwise: targets.isEmpty ? keep : nil)
            }
        }
    }

    // MARK: - IQ

    private func routeIQ(_ iq: XMLElement, to: JID?, from session: C2SSession) {
        let type = iq.type ?? ""
        let isRequest = type == "get" || type == "set"
        guard isRequest || type == "result" || type == "error" else {
            return bounce(iq, StanzaError(.badRequest, text: "an IQ needs type get, set, result or error"), to: session)
        }
        if isRequest, iq.elements.count != 1 {
            return bounce(iq, StanzaError(.badRequest, text: "an IQ request carries exactly one payload"), to: session)
        }
        guard let to, to != session.jid.bare, to != domain else {
            if isRequest { session.deliver(serverIQ.handle(iq, to: to, from: session.jid)) }
            return
        }
        if to.domainpart == domain.domainpart, to.localpart != nil {
            if to.isFull, let target = table.withLock({ $0.sessions[to]?.session }) {
                return target.deliver(iq)
            }
            // The server answers for another user's bare JID (RFC 6121 §8.5.2.1.3): a ping
            // (XEP-0199) gets a result from that JID; anything else service-unavailable.
            if !to.isFull, type == "get", iq.elements.first.map({ $0.name == "ping" && $0.namespace == Namespace.ping }) == true {
                var result = XMLElement("iq", namespace: Namespace.client, ["type": "result", "from": to.description, "to": session.jid.description])
                if let id = iq.id { result[attribute: "id"] = id }
                return session.deliver(result)
            }
            if to.isFull, let remote {
                let bounceTo: @Sendable (XMLElement) -> Void = { [weak session] stanza in
                    guard let session, isRequest else { return }
                    session.deliver(stanza.errorReply(StanzaError(.serviceUnavailable)))
                }
                return remote.route(iq, to: to, bounce: bounceTo)
            }
            if isRequest { bounce(iq, StanzaError(.serviceUnavailable), to: session) }
            return
        }
        if isRequest {
            let condition: StanzaError.Condition =
                to.domainpart == mucDomain.domainpart || to.domainpart == domain.domainpart
                ? .serviceUnavailable : .remoteServerNotFound
            bounce(iq, StanzaError(condition), to: session)
        }
    }

    // MARK: - Delivery from services

    /// Delivers a stanza a service (the MUC) addressed to a user: to the full JID's
    /// session, or for a bare JID as a message to the user's resources — here, then on
    /// the other nodes through the session directory.
    public func deliver(_ stanza: XMLElement) {
        guard let to = try? stanza.toJID(), to.domainpart == domain.domainpart else { return }
        let here = deliverHere(stanza)
        guard let remote else {
            if !here, Self.waitsOffline(stanza, to: to) { keepOffline(stanza, for: to, bouncingTo: nil) }
            return
        }
        if to.isFull {
            if !here { remote.route(stanza, to: to, bounce: nil) }
            return
        }
        guard stanza.stanzaKind == .message else { return }
        guard Self.waitsOffline(stanza, to: to) else {
            remote.route(stanza, to: to, bounce: nil)
            return
        }
        remote.routeToAvailable(stanza, to: to, otherwise: here ? nil : keepingOffline(for: to))
    }

    /// Service output to a user, delivered to this node's sessions only: the full JID's
    /// session, or for a bare JID (messages only) the available resources — the ones of
    /// highest priority unless it is a headline. Whether a session took it.
    @discardableResult
    func deliverHere(_ stanza: XMLElement) -> Bool {
        guard let to = try? stanza.toJID(), to.domainpart == domain.domainpart else { return false }
        if to.isFull {
            guard let session = table.withLock({ $0.sessions[to]?.session }) else { return false }
            session.deliver(stanza)
            return true
        }
        guard stanza.stanzaKind == .message else { return false }
        let targets = recipients(of: to, availableOnly: true, highestPriorityOnly: stanza.type != "headline")
        for target in targets { target.deliver(stanza) }
        return !targets.isEmpty
    }

    /// An invitation (or another message from a room) to a user who is offline
    /// everywhere waits for the user, as any message does (XEP-0160; as Prosody).
    static func waitsOffline(_ stanza: XMLElement, to: JID) -> Bool {
        !to.isFull && stanza.stanzaKind == .message && ["normal", "chat"].contains(stanza.type ?? "normal")
    }

    /// What keeps `stanza` for `to` when no node has an available resource of the user.
    func keepingOffline(for to: JID) -> @Sendable (XMLElement) -> Void {
        { [weak self] stanza in self?.keepOffline(stanza, for: to, bouncingTo: nil) }
    }

    /// A room's copies for local sessions (from this node's rooms or another's): each
    /// written from the stanza's bytes into its session's output.
    func deliverLocal(_ copies: StanzaCopies) {
        let sessions = table.withLock { table in copies.recipients.map { table.sessions[$0]?.session } }
        var targets: [(session: C2SSession, recipient: JID)] = []
        targets.reserveCapacity(copies.recipients.count)
        for (recipient, session) in zip(copies.recipients, sessions) {
            guard let session else { continue }
            targets.append((session, recipient))
        }
        C2SSession.deliver(copies.stanza, to: targets)
    }

    /// A stanza from a session on another node, for sessions here: no further routing.
    func deliverFromRemote(_ stanza: XMLElement) {
        guard let to = try? stanza.toJID() else { return }
        if to.isFull {
            table.withLock { $0.sessions[to]?.session }?.deliver(stanza)
            return
        }
        let presence = stanza.stanzaKind == .presence
        let highest = stanza.stanzaKind == .message && stanza.type != "headline"
        let targets = recipients(of: to, availableOnly: true, highestPriorityOnly: highest && !presence)
        // A message for an available resource that went offline on the way: kept.
        if targets.isEmpty, highest, !["groupchat", "error"].contains(stanza.type ?? "normal") {
            keepOffline(stanza, for: to, bouncingTo: nil)
        }
        // A presence broadcast among a user's resources names each one; directed presence
        // from someone else keeps the address it was sent to.
        let ownBroadcast = presence && (try? stanza.fromJID())?.bare == to.bare
        for target in targets {
            if ownBroadcast {
                var copy = stanza
                copy[attribute: "to"] = target.jid.description
                target.deliver(copy)
            } else {
                target.deliver(stanza)
            }
        }
    }

    /// A room's owner says a local session entered or left it. A session that has gone,
    /// or is ending (its leaves sent), leaves a room it entered now at once.
    func membership(room: JID, real: JID, entered: Bool) {
        let leaveNow = joined.withLock { joined -> Bool in
            guard entered else {
                joined.rooms[real]?.remove(room)
                if joined.rooms[real]?.isEmpty == true { joined.rooms[real] = nil }
                return false
            }
            // Read under `joined`'s lock: a session ending meanwhile is either still in
            // the table and not yet ending (its leaves will include this room) or not.
            guard table.withLock({ $0.sessions[real] != nil }), !joined.ending.contains(real) else { return true }
            joined.rooms[real, default: []].insert(room)
            return false
        }
        // Said under the room's lock (its owner here): the leave is routed after it, not
        // from inside it.
        if leaveNow, let muc {
            let input = RoomInput.sessionEnded(room: room, real: real, home: nodeName, token: 0)
            Task { muc.handle(input) }
        }
    }

    /// A room handled a session's end (`sendLeaves`).
    func sessionLeft(token: UInt64) {
        guard token != 0 else { return }
        resumeLeave(token)
    }

    /// Tells the owner of every room `jid` is in that the session is leaving; returns
    /// the tokens their owners send back once done.
    /// `ending`: the session ends (not just unavailable): a room it enters from now on is
    /// left at once.
    private func sendLeaves(_ jid: JID, ending: Bool) -> [UInt64] {
        guard let muc else { return [] }
        let rooms = joined.withLock { joined in
            if ending { joined.ending.insert(jid) }
            return joined.rooms.removeValue(forKey: jid) ?? []
        }
        var tokens: [UInt64] = []
        for room in rooms.sorted() {
            let token = leaveWaiters.withLock { state -> UInt64 in
                defer { state.next += 1 }
                return state.next
            }
            tokens.append(token)
            muc.handle(RoomInput.sessionEnded(room: room, real: jid, home: nodeName, token: token))
        }
        return tokens
    }

    /// Waits until the rooms have handled the leaves (at most 5 s of the router's clock:
    /// an owner may die).
    private func awaitLeaves(_ tokens: [UInt64]) async {
        guard !tokens.isEmpty else { return }
        let clock = self.clock
        let deadline = Task { [weak self] in
            guard (try? await clock.sleep(.seconds(5))) != nil else { return }  // cancelled: all answered
            for token in tokens { self?.resumeLeave(token) }
        }
        defer { deadline.cancel() }
        for token in tokens {
            await withCheckedContinuation { continuation in
                let done = leaveWaiters.withLock { state -> Bool in
                    if state.finished.remove(token) != nil { return true }
                    state.waiting[token] = continuation
                    return false
                }
                if done { return continuation.resume() }
            }
        }
    }

    private func resumeLeave(_ token: UInt64) {
        let waiter = leaveWaiters.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiting.removeValue(forKey: token) { return waiter }
            state.finished.insert(token)
            if state.finished.count > 10_000 { state.finished.removeAll() }
            return nil
        }
        waiter?.resume()
    }

    /// Closes every session (this node lost its place in the cluster).
    func closeAll(with error: StreamError) {
        let sessions = table.withLock { $0.sessions.values.map(\.session) }
        joined.withLock { $0 = Joined() }
        for session in sessions { session.close(with: error) }
    }

    // MARK: - Helpers

    private func bounce(_ stanza: XMLElement, _ error: StanzaError, to session: C2SSession) {
        guard stanza.type != "error" else { return }
        if stanza.name == "iq", stanza.type == "result" { return }
        session.deliver(stanza.errorReply(error))
    }

    private func sessions(of bare: JID, availableOnly: Bool) -> [C2SSession] {
        table.withLock { table in
            (table.resources[bare] ?? []).compactMap { jid in
                guard let entry = table.sessions[jid], !availableOnly || entry.available else { return nil }
                return entry.session
            }
        }
    }

    /// The sessions of `jid` that take a stanza to the bare JID (RFC 6121 §8.5.2):
    /// available, non-negative priority, and with `highestPriorityOnly` only those with
    /// the highest priority. A full `jid` names just that session.
    private func recipients(of jid: JID, availableOnly: Bool, highestPriorityOnly: Bool) -> [C2SSession] {
        table.withLock { table in
            if jid.isFull {
                guard let entry = table.sessions[jid], !availableOnly || entry.available else { return [] }
                return [entry.session]
            }
            let entries = (table.resources[jid] ?? []).compactMap { table.sessions[$0] }
                .filter { (!availableOnly || $0.available) && $0.priority >= 0 }
            guard highestPriorityOnly, let top = entries.map(\.priority).max() else { return entries.map(\.session) }
            return entries.filter { $0.priority == top }.map(\.session)
        }
    }

    /// The number of bound sessions (for tests and metrics).
    public var sessionCount: Int { table.withLock { $0.sessions.count } }
}
