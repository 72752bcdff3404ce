import Synchronization

/// What a node's client connections have done, for `/metrics`: connections, stanzas in
/// and out by kind, error stanzas sent, stream errors by condition. Counted with
/// atomics on the connections' event loops; read at any time.
public final class C2SMetrics: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        case message, presence, iq
    }

    private let opened = Atomic<Int>(0)
    private let closed = Atomic<Int>(0)
    private let messagesIn = Atomic<Int>(0)
    private let presencesIn = Atomic<Int>(0)
    private let iqsIn = Atomic<Int>(0)
    private let messagesOut = Atomic<Int>(0)
    private let presencesOut = Atomic<Int>(0)
    private let iqsOut = Atomic<Int>(0)
    private let errorsOut = Atomic<Int>(0)
    private let streamErrorCounts = Mutex<[String: Int]>([:])
    private let refused = Atomic<Int>(0)
    private let paused = Atomic<Int>(0)
    private let slowConsumers = Atomic<Int>(0)
    private let delayedAuth = Atomic<Int>(0)
    private let released = Atomic<Int>(0)
    private let shaped = Atomic<Int>(0)
    private let backedUp = Atomic<Int>(0)
    private let yields = Atomic<Int>(0)
    private let shapedEnded = Atomic<Int>(0)

    public init() {}

    func connectionOpened() { opened.add(1, ordering: .relaxed) }
    func connectionClosed() { closed.add(1, ordering: .relaxed) }

    func received(_ name: String) {
        switch name {
        case "message": messagesIn.add(1, ordering: .relaxed)
        case "presence": presencesIn.add(1, ordering: .relaxed)
        case "iq": iqsIn.add(1, ordering: .relaxed)
        default: break
        }
    }

    func sent(_ name: String, isError: Bool) {
        switch name {
        case "message": messagesOut.add(1, ordering: .relaxed)
        case "presence": presencesOut.add(1, ordering: .relaxed)
        case "iq": iqsOut.add(1, ordering: .relaxed)
        default: return
        }
        if isError { errorsOut.add(1, ordering: .relaxed) }
    }

    func refusedConnection() { refused.add(1, ordering: .relaxed) }
    func readingPaused() { paused.add(1, ordering: .relaxed) }
    func slowConsumerEnded() { slowConsumers.add(1, ordering: .relaxed) }
    func authenticationDelayed() { delayedAuth.add(1, ordering: .relaxed) }
    func idleSessionReleased() { released.add(1, ordering: .relaxed) }
    func sessionShaped() { shaped.add(1, ordering: .relaxed) }
    func yielded() { yields.add(1, ordering: .relaxed) }
    /// Times a session that read a lot paused its reading because its event loop ran late.
    public var loadYields: Int { yields.load(ordering: .relaxed) }
    func outputBackedUp(_ now: Bool) { backedUp.add(now ? 1 : -1, ordering: .relaxed) }
    /// Connections whose output is above the channel's high-water mark now (the client
    /// reads slower than it is sent to; its reading is paused).
    public var connectionsBackedUp: Int { backedUp.load(ordering: .relaxed) }
    func shapedSessionEnded() { shapedEnded.add(1, ordering: .relaxed) }
    /// Times a session's shaper delayed its reading or held its stanzas.
    public var shapingDelays: Int { shaped.load(ordering: .relaxed) }
    /// Streams ended because they held more stanzas back than the shaper allows.
    public var shapedSessionsEnded: Int { shapedEnded.load(ordering: .relaxed) }

    /// Connections refused at once: too many not yet authenticated, in all or per address.
    public var connectionsRefused: Int { refused.load(ordering: .relaxed) }
    /// Times reading from a client was paused (its output backed up, or a step pending).
    public var readPauses: Int { paused.load(ordering: .relaxed) }
    /// Streams ended because the client left too much output unread.
    public var slowConsumersEnded: Int { slowConsumers.load(ordering: .relaxed) }
    /// Authentication attempts made to wait by the throttle.
    public var authenticationsDelayed: Int { delayedAuth.load(ordering: .relaxed) }
    /// Times an idle session released its parser's state (`C2SConfiguration.Options.idleRelease`).
    public var idleSessionsReleased: Int { released.load(ordering: .relaxed) }

    func streamError(_ condition: String) {
        streamErrorCounts.withLock { $0[condition, default: 0] += 1 }
    }

    /// Connections accepted so far.
    public var connectionsOpened: Int { opened.load(ordering: .relaxed) }
    /// Connections open now.
    public var connectionsOpen: Int { opened.load(ordering: .relaxed) - closed.load(ordering: .relaxed) }

    public func stanzasIn(_ kind: Kind) -> Int {
        switch kind {
        case .message: messagesIn.load(ordering: .relaxed)
        case .presence: presencesIn.load(ordering: .relaxed)
        case .iq: iqsIn.load(ordering: .relaxed)
        }
    }

    public func stanzasOut(_ kind: Kind) -> Int {
        switch kind {
        case .message: messagesOut.load(ordering: .relaxed)
        case .presence: presencesOut.load(ordering: .relaxed)
        case .iq: iqsOut.load(ordering: .relaxed)
        }
    }

    /// Stanzas of type "error" sent to clients.
    public var errorStanzasOut: Int { errorsOut.load(ordering: .relaxed) }

    /// Stream errors sent, by condition.
    public var streamErrors: [String: Int] { streamErrorCounts.withLock { $0 } }
}

/// The TLS certificate client connections use, replaceable while the node runs (a
/// reload): connections accepted afterwards use the new one; open ones keep theirs.
public final class C2STLSSource: Sendable {
    private let current: Mutex<C2STLS?>

    public init(_ tls: C2STLS?) { current = Mutex(tls) }

    public var tls: C2STLS? { current.withLock { $0 } }

    public func replace(with tls: C2STLS) { current.withLock { $0 = tls } }
}
