extension ScansionScript {
    /// Reads a script. Errors name the line.
    public init(parsing text: String, path: String) throws(ScansionParseError) {
        self.path = path
        self.title = ""
        self.description = []
        self.tags = [:]
        self.clients = []
        self.actions = []
        self.warnings = []
        var parser = LineParser(lines: Self.splitLines(text), path: path)
        try parser.run(into: &self)
    }

    static func splitLines(_ text: String) -> [Substring] {
        // "\r\n" is one Character in Swift, so it has to be named to split on it.
        text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }.map { line in
            line.last == "\r" ? line.dropLast() : line
        }
    }
}

private struct LineParser {
    let lines: [Substring]
    let path: String
    var index = 0
    var seenSeparator = false
    var inHeader = true

    init(lines: [Substring], path: String) {
        self.lines = lines
        self.path = path
    }

    func error(_ message: String, line: Int? = nil) -> ScansionParseError {
        ScansionParseError(path: path, line: line ?? index + 1, message: message)
    }

    static func isIndented(_ line: Substring) -> Bool {
        line.first == "\t" || line.first == " "
    }

    static func isBlank(_ line: Substring) -> Bool {
        line.allSatisfy { $0 == " " || $0 == "\t" }
    }

    static func trimmed(_ text: Substring) -> Substring {
        var text = text
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }

    mutating func run(into script: inout ScansionScript) throws(ScansionParseError) {
        while index < lines.count {
            let line = lines[index]
            if Self.isBlank(line) {
                index += 1
                continue
            }
            if line.hasPrefix("##") {
                let tag = Self.trimmed(line.dropFirst(2))
                if let colon = tag.firstIndex(of: ":") {
                    script.tags[String(Self.trimmed(tag[..<colon]))] = String(Self.trimmed(tag[tag.index(after: colon)...]))
                } else if !tag.isEmpty {
                    script.tags[String(tag)] = .some(nil)
                }
                index += 1
                continue
            }
            if line.hasPrefix("#") {
                let comment = String(Self.trimmed(line.drop { $0 == "#" }))
                if inHeader {
                    if script.title.isEmpty { script.title = comment } else { script.description.append(comment) }
                }
                index += 1
                continue
            }
            if line.hasPrefix("//") {
                index += 1
                continue
            }
            if line.hasPrefix("--") {
                // A line of dashes separates clients from actions; `--` also starts a comment.
                if line.allSatisfy({ $0 == "-" }) { seenSeparator = true }
                index += 1
                continue
            }
            inHeader = false
            if Self.isIndented(line) {
                throw error("an indented line outside a [Client] block or an action's block")
            }
            if line.hasPrefix("[") {
                try parseClient(into: &script)
                continue
            }
            try parseAction(into: &script)
        }
        if script.title.isEmpty {
            script.title = String(path.split(separator: "/").last ?? Substring(path))
        }
    }

    mutating func parseClient(into script: inout ScansionScript) throws(ScansionParseError) {
        let line = lines[index]
        let startLine = index + 1
        guard let close = line.firstIndex(of: "]") else { throw error("'[' without ']'") }
        let kind = line[line.index(after: line.startIndex)..<close]
        guard kind == "Client" else { throw error("unknown block [\(kind)] (only [Client] is known)") }
        let name = String(Self.trimmed(line[line.index(after: close)...]))
        guard !name.isEmpty else { throw error("a [Client] needs a name") }
        guard script.client(named: name) == nil else { throw error("client '\(name)' is defined twice") }
        index += 1
        var properties: [String: (String, Int)] = [:]
        while index < lines.count, Self.isIndented(lines[index]) || Self.isBlank(lines[index]) {
            let text = Self.trimmed(lines[index])
            if !text.isEmpty, !text.hasPrefix("#"), !text.hasPrefix("//") {
                guard let colon = text.firstIndex(of: ":") else {
                    throw error("a client property looks like 'key: value'")
                }
                let key = String(Self.trimmed(text[..<colon]))
                properties[key] = (String(Self.trimmed(text[text.index(after: colon)...])), index + 1)
            }
            index += 1
        }
        guard let jid = properties["jid"]?.0, !jid.isEmpty else {
            throw error("client '\(name)' has no jid", line: startLine)
        }
        var client = ClientDefinition(name: name, line: startLine, jid: jid, password: properties["password"]?.0 ?? "")
        client.connectHost = properties["connect_host"]?.0
        if let (port, portLine) = properties["connect_port"] {
            guard let value = Int(port), (1...65535).contains(value) else {
                throw error("connect_port must be a port number", line: portLine)
            }
            client.connectPort = value
        }
        client.resource = properties["resource"]?.0
        script.clients.append(client)
    }

    mutating func parseAction(into script: inout ScansionScript) throws(ScansionParseError) {
        let line = lines[index]
        let actionLine = index + 1
        // The subject is the longest defined client name that starts the line.
        let subject = script.clients.map(\.name).filter { name in
            line.hasPrefix(name) && (line.count == name.count || line.dropFirst(name.count).first == " ")
        }.max { $0.count < $1.count }
        guard let subject else {
            let word = line.split(separator: " ").first.map(String.init) ?? String(line)
            throw error("'\(word)' is not a defined client (define it with [Client] \(word))")
        }
        var verb = Self.trimmed(line.dropFirst(subject.count))
        var rest: Substring = ""
        if let colon = verb.firstIndex(of: ":") {
            rest = Self.trimmed(verb[verb.index(after: colon)...])
            verb = Self.trimmed(verb[..<colon])
        } else if let space = verb.firstIndex(of: " ") {
            rest = Self.trimmed(verb[space...])
            verb = verb[..<space]
        }
        index += 1
        let blockStart = index
        var block: [Substring] = []
        while index < lines.count, Self.isIndented(lines[index]) || Self.isBlank(lines[index]) {
            block.append(lines[index])
            index += 1
        }
        while let last = block.last, Self.isBlank(last) { block.removeLast() }
        let text = block.joined(separator: "\n")
        let kind: Action.Kind
        switch verb {
        case "connects":
            kind = .connects
        case "disconnects":
            kind = .disconnects
        case "sends":
            guard !Self.isBlank(Substring(text)) else { throw error("'sends' needs an indented stanza", line: actionLine) }
            kind = .sends(text)
        case "receives":
            if rest == "nothing" {
                kind = .receivesNothing
            } else {
                guard rest.isEmpty else { throw error("unexpected '\(rest)' after 'receives'", line: actionLine) }
                guard !Self.isBlank(Substring(text)) else {
                    throw error("'receives' needs an indented stanza (or 'receives: nothing')", line: actionLine)
                }
                kind = .receives(text)
            }
        default:
            throw error("unknown action '\(verb)' (connects, sends, receives, disconnects)", line: actionLine)
        }
        let lastSession = script.actions.last { $0.client == subject && ($0.kind == .connects || $0.kind == .disconnects) }
        if case .sends = kind, lastSession?.kind == .disconnects {
            script.warnings.append((actionLine, "\(subject) sends after disconnecting"))
        }
        script.actions.append(Action(client: subject, kind: kind, line: actionLine, blockLine: blockStart + 1))
    }
}
