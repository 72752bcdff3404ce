import Foundation
import NIOCore
import Synchronization
import XMPPCore
import XMPPStream

/// One client connection: its stream is read continuously into a log of timestamped
/// events, so that a check can wait for a stanza and also look at everything that
/// arrived (the delivery and roster checks replay the whole log).
final class Session: Sendable {
    let label: String
    let node: String
    let generation: Int
    let client: XMPPClient
    let jid: JID
    private let state = Mutex(State())
    private let reader = Mutex<Task<Void, Never>?>(nil)

    struct Event: Sendable {
        var at: ContinuousClock.Instant
        var event: XMPPClientEvent
    }

    struct State {
        var events: [Event] = []
        var ended = false
        /// Closed by the harness (not by the server or a dying node).
        var closedByUs = false
    }

    private init(label: String, node: String, generation: Int, client: XMPPClient, jid: JID) {
        self.label = label
        self.node = node
        self.generation = generation
        self.client = client
        self.jid = jid
    }

    /// Connects to `port` on loopback, logs in without TLS (the nodes allow plaintext on
    /// loopback), binds `resource` and starts reading.
    static func open(
        label: String, node: String, port: Int, generation: Int, account: JID, password: String, resource: String,
        timeout: Duration
    ) async throws -> Session {
        var options = XMPPClient.Options()
        options.tls = .none
        options.timeout = .milliseconds(Int64(timeout.seconds * 1000))
        let client = try await XMPPClient.connect(
            host: "127.0.0.1", port: port, domain: account.domainpart, options: options)
        do {
            try await client.authenticate(username: account.localpart ?? "", password: password)
            let bound = try await client.bind(resource: resource)
            let session = Session(label: label, node: node, generation: generation, client: client, jid: bound)
            session.startReading()
            return session
        } catch {
            await client.disconnect()
            throw error
        }
    }

    private func startReading() {
        let task = Task { [self] in
            while true {
                guard let event = await client.next(timeout: .seconds(1)) else {
                    if state.withLock({ $0.ended }) { return }
                    continue
                }
                let now = ContinuousClock.now
                let done = state.withLock { state -> Bool in
                    state.events.append(Event(at: now, event: event))
                    if event == .disconnected { state.ended = true }
                    return state.ended
                }
                if done { return }
            }
        }
        reader.withLock { $0 = task }
    }

    /// How many events arrived so far: a mark for `waitFor(after:)`.
    var count: Int { state.withLock { $0.events.count } }
    /// The connection is gone (closed by either side, or the node died).
    var ended: Bool { state.withLock { $0.ended } }
    var closedByUs: Bool { state.withLock { $0.closedByUs } }

    func events(from start: Int = 0) -> [Event] {
        state.withLock { Array($0.events.dropFirst(start)) }
    }

    /// The stream error or close that ended the stream, for messages.
    var endReason: String {
        let events = events()
        if let error = events.lazy.compactMap({ entry -> XMLElement? in
            if case .element(let element) = entry.event, element.name == "error", element.namespace == Namespace.stream
            {
                return element
            }
            return nil
        }).first {
            let condition = error.elements.first { $0.namespace == Namespace.streams && $0.name != "text" }?.name ?? "?"
            let text = error.child("text", namespace: Namespace.streams)?.text
            return "stream error <\(condition)/>" + (text.map { " (\($0))" } ?? "")
        }
        if events.contains(where: { $0.event == .streamClosed }) { return "the server closed the stream" }
        if events.contains(where: { $0.event == .disconnected }) { return "the connection dropped" }
        return "open"
    }

    func send(_ element: XMLElement) {
        guard !ended else { return }
        client.send(element)
    }

    /// The first element at index `start` or later that matches, waiting at most
    /// `timeout`; `nil` when none arrived in time or the stream ended first.
    func waitFor(
        after start: Int, timeout: Duration, where match: (XMLElement) -> Bool
    ) async -> (index: Int, element: XMLElement, at: ContinuousClock.Instant)? {
        let deadline = ContinuousClock.now + timeout
        var checked = start
        while true {
            let (found, total, ended) = state.withLock {
                state -> ((Int, XMLElement, ContinuousClock.Instant)?, Int, Bool) in
                var index = checked
                while index < state.events.count {
                    if case .element(let element) = state.events[index].event, match(element) {
                        return ((index, element, state.events[index].at), index, state.ended)
                    }
                    index += 1
                }
                return (nil, state.events.count, state.ended)
            }
            if let found { return found }
            checked = total
            if ended || ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// What arrived since `start`, for a failure message (the last `limit` events).
    func recent(from start: Int, limit: Int = 12) -> String {
        events(from: start).suffix(limit).map { entry -> String in
            if case .element(let element) = entry.event { return String(element.description.prefix(220)) }
            return "\(entry.event)"
        }.joined(separator: "\n      ")
    }

    /// Closes the stream (the server ends the session: its rooms see it leave) and waits
    /// at most `timeout` for the server's close.
    func close(timeout: Duration = .seconds(5)) async {
        state.withLock { $0.closedByUs = true }
        if !ended {
            client.sendRaw("</stream:stream>")
            let deadline = ContinuousClock.now + timeout
            while !ended, !events().contains(where: { $0.event == .streamClosed }), ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        await drop()
    }

    /// Drops the connection at once, without closing the stream.
    func drop() async {
        state.withLock { $0.closedByUs = true }
        await client.disconnect()
        state.withLock { $0.ended = true }
        await reader.withLock { $0 }?.value
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    var text: String { String(format: "%.1f s", seconds) }
}
