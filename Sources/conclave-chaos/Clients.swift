import Foundation
import Synchronization
import XMPPCore

/// A numbered groupchat message one client sent: body "<sender> #<n>", id "<sender>-<n>".
struct SentMessage: Sendable {
    let room: String
    let number: Int
    /// The session (by generation) that sent it.
    let generation: Int
    let at: ContinuousClock.Instant
    /// Settled: echoed, refused, or its session ended before either.
    var settled = false
    var echoed = false
}

/// One stay of a client in a room, from the self-presence that confirmed its join until
/// its leave, its removal, or the end of its stream.
struct Membership: Sendable {
    let id: Int
    let room: String
    var nick: String
    let session: Session
    /// `session.count` when the join was sent: the presences of those already in the
    /// room arrive after it, before the self-presence.
    let sentIndex: Int
    let joinedIndex: Int
    let joinedAt: ContinuousClock.Instant
    /// The room must remove it with this status code (an affiliation or configuration
    /// change the harness committed), and why.
    var expectedRemoval: (code: String, why: String)?
    /// A later change gave the occupant its place back before the room was seen to apply
    /// the removal: the room may have applied the two in either order (one made outside
    /// reaches it by NOTIFY), so the removal may or may not come.
    var removalOptional = false
    /// The harness sent its leave.
    var leaving = false
}

/// One of the chaos accounts (chaos1@localhost …), connected to a live node at a time.
/// Sendable: the background load sends through it while the main task works.
final class ChaosClient: Sendable {
    let label: String
    let account: JID
    let password: String
    let runTag: String
    private let state = Mutex(State())

    struct State {
        var session: Session?
        var sessions: [Session] = []
        var open: [Membership] = []
        var nextNick = 0
        var nextNumber = 1
        var sent: [SentMessage] = []
        /// Index in `sent` before which every message is settled.
        var settledUpTo = 0
        /// The rooms it should be in (it rejoins them after a reconnection).
        var wants: Set<String> = []
    }

    init(label: String, account: JID, password: String, runTag: String) {
        self.label = label
        self.account = account
        self.password = password
        self.runTag = runTag
    }

    var bare: String { account.description }
    var session: Session? { state.withLock { $0.session } }
    var connected: Bool { state.withLock { $0.session.map { !$0.ended } ?? false } }
    var sessions: [Session] { state.withLock { $0.sessions } }
    var open: [Membership] { state.withLock { $0.open } }
    var wants: Set<String> {
        get { state.withLock { $0.wants } }
        set { state.withLock { $0.wants = newValue } }
    }
    var sent: [SentMessage] { state.withLock { $0.sent } }

    func membership(in room: String) -> Membership? { state.withLock { $0.open.first { $0.room == room } } }

    /// A nick nobody used before in this run: "c3-k2x-7".
    func newNick() -> String {
        state.withLock { state in
            state.nextNick += 1
            return "\(label)-\(runTag)-\(state.nextNick)"
        }
    }

    var nextGeneration: Int { state.withLock { $0.sessions.count + 1 } }

    func attach(_ session: Session) {
        state.withLock {
            $0.session = session
            $0.sessions.append(session)
        }
    }

    func add(_ membership: Membership) { state.withLock { $0.open.append(membership) } }

    func update(_ id: Int, _ change: (inout Membership) -> Void) {
        state.withLock { state in
            if let index = state.open.firstIndex(where: { $0.id == id }) { change(&state.open[index]) }
        }
    }

    func close(_ id: Int) { state.withLock { $0.open.removeAll { $0.id == id } } }

    /// Sends the next numbered message to `room` (where it has an open membership) and
    /// records it. Numbering and sending happen under one lock, so the numbers leave in
    /// order even when the load and the main task send at once.
    @discardableResult
    func say(_ room: String) -> Bool {
        state.withLock { state in
            guard let session = state.session, !session.ended, state.open.contains(where: { $0.room == room }) else {
                return false
            }
            let number = state.nextNumber
            state.nextNumber += 1
            state.sent.append(SentMessage(room: room, number: number, generation: session.generation, at: .now))
            session.send(
                XMLElement(
                    "message", namespace: Namespace.client,
                    ["to": room, "type": "groupchat", "id": "\(label)-\(number)"],
                    children: [XMLElement("body", namespace: Namespace.client, text: "\(label) #\(number)")]
                )
            )
            return true
        }
    }

    /// The messages not settled yet (index in `sent`, message).
    var unsettled: [(Int, SentMessage)] {
        state.withLock { state in
            (state.settledUpTo..<state.sent.count).compactMap { state.sent[$0].settled ? nil : ($0, state.sent[$0]) }
        }
    }

    func settle(_ index: Int, echoed: Bool) {
        state.withLock { state in
            state.sent[index].settled = true
            state.sent[index].echoed = echoed
            while state.settledUpTo < state.sent.count && state.sent[state.settledUpTo].settled {
                state.settledUpTo += 1
            }
        }
    }
}

// MARK: - Reading MUC stanzas

enum MUC {
    static func statusCodes(_ stanza: XMLElement) -> [String] {
        stanza.child("x", namespace: Namespace.mucUser)?.children("status").compactMap { $0[attribute: "code"] } ?? []
    }

    /// The room's answer to a presence sent to `room/nick` (a join or a nick change): the
    /// self-presence (status 110) or an error presence.
    static func answersPresence(_ stanza: XMLElement, to room: String, as nick: String) -> Bool {
        stanza.name == "presence" && stanza[attribute: "from"] == "\(room)/\(nick)"
            && (stanza.type == "error" || statusCodes(stanza).contains("110"))
    }

    /// (room, nick) of a stanza from an occupant JID.
    static func occupant(_ stanza: XMLElement) -> (room: String, nick: String)? {
        guard let from = stanza[attribute: "from"], let slash = from.firstIndex(of: "/") else { return nil }
        return (String(from[..<slash]), String(from[from.index(after: slash)...]))
    }

    static func bareFrom(_ stanza: XMLElement) -> String? {
        guard let from = stanza[attribute: "from"] else { return nil }
        return String(from.prefix { $0 != "/" })
    }

    /// A numbered message: body "<sender> #<n>".
    static func numbered(_ stanza: XMLElement) -> (sender: String, number: Int)? {
        guard stanza.name == "message", stanza.type == "groupchat", let body = stanza.child("body")?.text else {
            return nil
        }
        let parts = body.split(separator: " #")
        guard parts.count == 2, let number = Int(parts[1]) else { return nil }
        return (String(parts[0]), number)
    }

    /// The condition of an error stanza ("registration-required"), and its text.
    static func error(_ stanza: XMLElement) -> (condition: String, type: String, text: String?)? {
        guard stanza.type == "error", let error = stanza.child("error") else { return nil }
        let condition = error.elements.first { $0.namespace == Namespace.stanzas && $0.name != "text" }?.name ?? "?"
        return (condition, error[attribute: "type"] ?? "?", error.child("text", namespace: Namespace.stanzas)?.text)
    }

    /// An error that says "not now" (the room is moving, its node restarting, activation
    /// took too long): the harness tries again, until its recovery bound.
    static func isTransient(_ error: (condition: String, type: String, text: String?)) -> Bool {
        error.type == "wait"
            || ["service-unavailable", "resource-constraint", "remote-server-timeout", "recipient-unavailable"]
                .contains(error.condition)
    }

    static func describe(_ error: (condition: String, type: String, text: String?)) -> String {
        "<\(error.condition)/> (type \(error.type))" + (error.text.map { " \"\($0)\"" } ?? "")
    }
}
