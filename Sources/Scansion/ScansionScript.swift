/// `Scansion` reads scansion spec scripts (`.scs`, see SCANSION.md) and matches
/// received stanzas against their expectations. Parsing and matching are pure; only
/// `ScansionFiles` reads from disk. The `conclave-spec` executable runs the scripts.

/// A parsed script.
public struct ScansionScript: Sendable, Hashable {
    public var path: String
    /// The first comment line.
    public var title: String
    /// Further leading comment lines.
    public var description: [String]
    /// `## tag` (value `nil`) and `## key: value` lines.
    public var tags: [String: String?]
    public var clients: [ClientDefinition]
    public var actions: [Action]
    /// Oddities the parser tolerated (line, message).
    public var warnings: [(line: Int, message: String)]

    public static func == (lhs: ScansionScript, rhs: ScansionScript) -> Bool {
        lhs.path == rhs.path && lhs.title == rhs.title && lhs.clients == rhs.clients && lhs.actions == rhs.actions
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(path)
        hasher.combine(actions)
    }

    public func client(named name: String) -> ClientDefinition? {
        clients.first { $0.name == name }
    }
}

/// A `[Client] Name` block.
public struct ClientDefinition: Sendable, Hashable {
    public var name: String
    public var line: Int
    /// As written: a bare JID, or a full one whose resource is requested at bind.
    public var jid: String
    public var password: String
    public var connectHost: String?
    public var connectPort: Int?
    public var resource: String?

    /// The account the client logs in to: `jid` without a resource.
    public var account: String {
        jid.split(separator: "/", maxSplits: 1).first.map(String.init) ?? jid
    }

    public init(
        name: String, line: Int, jid: String, password: String, connectHost: String? = nil, connectPort: Int? = nil,
        resource: String? = nil
    ) {
        self.name = name
        self.line = line
        self.jid = jid
        self.password = password
        self.connectHost = connectHost
        self.connectPort = connectPort
        self.resource = resource
    }
}

/// One step of a script.
public struct Action: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case connects
        case sends(String)
        case receives(String)
        case receivesNothing
        case disconnects
    }

    public var client: String
    public var kind: Kind
    /// Line of the action in the script (1-based).
    public var line: Int
    /// Line of the first line of the block (for errors inside the XML).
    public var blockLine: Int

    public init(client: String, kind: Kind, line: Int, blockLine: Int) {
        self.client = client
        self.kind = kind
        self.line = line
        self.blockLine = blockLine
    }

    public var verb: String {
        switch kind {
        case .connects: "connects"
        case .sends: "sends"
        case .receives: "receives"
        case .receivesNothing: "receives nothing"
        case .disconnects: "disconnects"
        }
    }
}

/// A script that cannot be read, with the line where reading stopped.
public struct ScansionParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var line: Int
    public var message: String

    public init(path: String, line: Int, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    public var description: String { "\(path):\(line): \(message)" }
}
