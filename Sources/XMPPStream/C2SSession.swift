public import NIOCore
import Synchronization
public import XMPPCore

/// A bound client session: a full JID on one connection. Thread-safe: stanzas can be
/// delivered to it from any event loop or task; they are written in the order of the
/// `deliver` calls, also when the calls come from different threads one after the
/// other (a room's output is produced under the room's lock, by whichever thread
/// handles the room's input).
public final class C2SSession: Sendable, Hashable, CustomStringConvertible {
    public let jid: JID
    public let streamID: String
    public let eventLoop: any EventLoop
    private let connection: NIOLoopBound<C2SConnection>
    /// Deliveries made from other threads and not written yet (each is a task queued on
    /// the session's event loop). While there are any, a delivery made on the loop
    /// itself queues behind them instead of being written at once.
    private let queuedElsewhere = Atomic<Int>(0)

    init(jid: JID, streamID: String, connection: C2SConnection, eventLoop: any EventLoop) {
        self.jid = jid
        self.streamID = streamID
        self.eventLoop = eventLoop
        self.connection = NIOLoopBound(connection, eventLoop: eventLoop)
    }

    /// Sends `stanza` to the client.
    public func deliver(_ stanza: XMLElement) {
        if eventLoop.inEventLoop, queuedElsewhere.load(ordering: .acquiring) == 0 {
            connection.value.send(stanza)
        } else {
            queuedElsewhere.add(1, ordering: .acquiringAndReleasing)
            eventLoop.execute {
                self.connection.value.send(stanza)
                self.queuedElsewhere.subtract(1, ordering: .acquiringAndReleasing)
            }
        }
    }

    /// Copies of a prepared stanza for sessions that may be on several event loops: one
    /// task per event loop writes that loop's copies.
    public static func deliver(_ stanza: PreparedStanza, to copies: [(session: C2SSession, recipient: JID)]) {
        guard let first = copies.first else { return }
        if copies.allSatisfy({ $0.session.eventLoop === first.session.eventLoop }) {
            deliver(stanza, to: copies, on: first.session.eventLoop)
            return
        }
        var byLoop: [ObjectIdentifier: [(session: C2SSession, recipient: JID)]] = [:]
        for copy in copies { byLoop[ObjectIdentifier(copy.session.eventLoop), default: []].append(copy) }
        for loopCopies in byLoop.values { deliver(stanza, to: loopCopies, on: loopCopies[0].session.eventLoop) }
    }

    private static func deliver(_ stanza: PreparedStanza, to copies: [(session: C2SSession, recipient: JID)], on loop: any EventLoop) {
        if loop.inEventLoop, !copies.contains(where: { $0.session.queuedElsewhere.load(ordering: .acquiring) > 0 }) {
            for copy in copies { copy.session.connection.value.send(stanza, to: copy.recipient) }
        } else {
            for copy in copies { copy.session.queuedElsewhere.add(1, ordering: .acquiringAndReleasing) }
            loop.execute {
                for copy in copies {
                    copy.session.connection.value.send(stanza, to: copy.recipient)
                    copy.session.queuedElsewhere.subtract(1, ordering: .acquiringAndReleasing)
                }
            }
        }
    }

    /// Ends the session with a stream error (for example `<conflict/>` when another
    /// session binds the same full JID).
    public func close(with error: StreamError) {
        let connection = self.connection
        eventLoop.execute { connection.value.fail(error) }
    }

    public static func == (lhs: C2SSession, rhs: C2SSession) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
    public var description: String { "session \(jid) (\(streamID))" }
}
