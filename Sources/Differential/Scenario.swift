/// `Differential` compares what two XMPP servers send for the same scenario: random
/// but replayable sequences of client actions (joins, messages, configuration, …) run
/// against a reference (Prosody) and against Conclave. Generation, normalisation,
/// comparison, shrinking and the `.scs` reproduction are pure and live here; the
/// `conclave-diff` executable connects the clients.

public import XMPPCore

/// One thing a client does. `sends` carries the stanza as a scansion `sends` block
/// writes it: `${A's JID}` and `${A's full JID}` stand for the clients' addresses.
public struct ScenarioAction: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        case connects
        case disconnects
        case sends(String)
    }

    public var client: String
    public var kind: Kind
    /// A few words for reports ("joins as romeo", "sets membersonly=1").
    public var label: String
    /// Set when Conclave deliberately answers this input otherwise than Prosody 0.12
    /// (docs/muc.md lists the tags): a scenario that first differs here is counted as
    /// a known difference, not reported.
    public var known: String?

    public init(client: String, kind: Kind, label: String, known: String? = nil) {
        self.client = client
        self.kind = kind
        self.label = label
        self.known = known
    }

    public var description: String { "\(client) \(label)" }
}

/// A scenario: the clients (each logs in to its own account) and what they do, in order.
public struct Scenario: Sendable, Hashable {
    /// The seed it was generated from (a report names it).
    public var seed: UInt64
    /// The room the scenario is about (its bare JID).
    public var room: String
    /// Client names ("A", "B", …) and the account each logs in to.
    public var clients: [(name: String, account: String)]
    public var actions: [ScenarioAction]

    public init(seed: UInt64, room: String, clients: [(name: String, account: String)], actions: [ScenarioAction]) {
        self.seed = seed
        self.room = room
        self.clients = clients
        self.actions = actions
    }

    public static func == (lhs: Scenario, rhs: Scenario) -> Bool {
        lhs.seed == rhs.seed && lhs.room == rhs.room && lhs.clients.map(\.name) == rhs.clients.map(\.name)
            && lhs.clients.map(\.account) == rhs.clients.map(\.account) && lhs.actions == rhs.actions
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(seed)
        hasher.combine(room)
        hasher.combine(actions)
    }

    /// The same scenario with only the actions at `kept` (in order).
    public func keeping(_ kept: [Int]) -> Scenario {
        var copy = self
        copy.actions = kept.map { actions[$0] }
        return copy
    }
}

/// What each client received during one step (after the step's action, until the
/// server had answered the barrier that follows it), normalised.
public struct StepTranscript: Sendable, Hashable {
    public var received: [String: [XMLElement]]

    public init(received: [String: [XMLElement]] = [:]) { self.received = received }

    /// What `client` received, as canonical text.
    public func canonical(_ client: String) -> [String] { (received[client] ?? []).map { $0.serialized() } }
}

/// What a whole scenario produced on one server.
public struct Transcript: Sendable, Hashable {
    public var steps: [StepTranscript]
    /// Why the run stopped early, if it did (a connection refused, a timeout).
    public var failure: String?

    public init(steps: [StepTranscript] = [], failure: String? = nil) {
        self.steps = steps
        self.failure = failure
    }
}
