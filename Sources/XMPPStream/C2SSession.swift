public import NIOCore
public import XMPPCore

/// A bound client session: a full JID on one connection. Thread-safe: stanzas can be
/// delivered to it from any event loop or task; they are written in the order
/// `deliver` is called from one thread.
public final class C2SSession: Sendable, Hashable, CustomStringConvertible {
    public let jid: JID
    public let streamID: String
    public let eventLoop: any EventLoop
    private let connection: NIOLoopBound<C2SConnection>

    init(jid: JID, streamID: String, connection: C2SConnection, eventLoop: any EventLoop) {
        self.jid = jid
        self.streamID = streamID
        self.eventLoop = eventLoop
        self.connection = NIOLoopBound(connection, eventLoop: eventLoop)
    }

    /// Sends `stanza` to the client.
    public func deliver(_ stanza: XMLElement) {
        if eventLoop.inEventLoop {
            connection.value.send(stanza)
        } else {
            let connection = self.connection
            eventLoop.execute { connection.value.send(stanza) }
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
