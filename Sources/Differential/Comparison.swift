public import XMPPCore
import Scansion

/// Where two transcripts of one scenario first part.
public struct Difference: Sendable, Hashable, CustomStringConvertible {
    /// The index of the action after which the clients' receptions differ.
    public var step: Int
    public var client: String
    public var reference: [String]
    public var target: [String]
    /// A stopped run (connection refused, no answer within the timeout) on either side.
    public var failure: String?

    public init(step: Int, client: String, reference: [String], target: [String], failure: String? = nil) {
        self.step = step
        self.client = client
        self.reference = reference
        self.target = target
        self.failure = failure
    }

    /// What kind of difference this is, without the details that change when the
    /// scenario around it does (texts, addresses, ids): two scenarios with the same
    /// signature show the same difference, and shrinking keeps it.
    public var signature: String {
        if let failure { return "failure: " + failure.prefix { $0 != ":" } }
        let referenceShapes = Set(reference.compactMap(Self.shape))
        let targetShapes = Set(target.compactMap(Self.shape))
        let onlyReference = referenceShapes.subtracting(targetShapes).sorted()
        let onlyTarget = targetShapes.subtracting(referenceShapes).sorted()
        if onlyReference.isEmpty, onlyTarget.isEmpty {
            // Same kinds of stanza: their contents or their order differ.
            let changed = zip(reference, target).first { $0 != $1 }.flatMap { Self.shape($0.0) } ?? "count"
            return "content of " + changed
        }
        return "reference only: " + onlyReference.joined(separator: " ") + " | target only: " + onlyTarget.joined(separator: " ")
    }

    /// An element's name, namespace, `type`, error condition and children's shapes: no
    /// attribute values but `type`, no text.
    static func shape(_ canonical: String) -> String? {
        guard let element = (try? StanzaTemplate.elements(canonical))?.first else { return nil }
        return shape(element)
    }

    static func shape(_ element: XMLElement) -> String {
        var out = element.name
        if let type = element[attribute: "type"] { out += "[\(type)]" }
        if let affiliation = element[attribute: "affiliation"] { out += "[a=\(affiliation)]" }
        if let role = element[attribute: "role"] { out += "[r=\(role)]" }
        if let code = element[attribute: "code"] { out += "[\(code)]" }
        let children = element.elements.map(shape)
        if !children.isEmpty { out += "(" + children.joined(separator: ",") + ")" }
        return out
    }

    public var description: String {
        if let failure { return "after step \(step + 1): \(failure)" }
        var out = "after step \(step + 1), \(client) received:\n  reference:"
        out += reference.isEmpty ? " nothing\n" : "\n" + reference.map { "    " + $0 }.joined(separator: "\n") + "\n"
        out += "  target:"
        out += target.isEmpty ? " nothing" : "\n" + target.map { "    " + $0 }.joined(separator: "\n")
        return out
    }
}

public enum Comparison {
    /// A client's stanzas of one step with each run of others' available presences
    /// sorted (tolerance `occupant-order`): the presences of those already in the room
    /// that a joiner gets come in Prosody's table order, which changes from run to run;
    /// one step has one action, so such a run is always one occupant list.
    public static func occupantListsSorted(_ stanzas: [String]) -> [String] {
        func listed(_ text: String) -> Bool {
            guard text.hasPrefix("<presence"), let element = (try? StanzaTemplate.elements(text))?.first,
                element[attribute: "type"] == nil
            else { return false }
            let codes = element.child("x", namespace: "http://jabber.org/protocol/muc#user")?.children("status").compactMap { $0[attribute: "code"] } ?? []
            return !codes.contains("110")
        }
        var result: [String] = []
        var run: [String] = []
        for stanza in stanzas {
            if listed(stanza) {
                run.append(stanza)
            } else {
                result += run.sorted()
                run = []
                result.append(stanza)
            }
        }
        return result + run.sorted()
    }

    /// A client's stanzas of one step with those from other users (their messages,
    /// presence and IQs, sent to it directly) after the rest, each group in its order
    /// (tolerance `sender-order`): they come from other senders than the rooms' output
    /// and on other paths, and RFC 6120 §10.1 orders stanzas per sender. Prosody's order
    /// between the two follows its tables (the recipients of a user's directed presence,
    /// rooms among them, in hash order).
    public static func userStanzasLast(_ stanzas: [String]) -> [String] {
        func fromUser(_ text: String) -> Bool {
            guard let element = (try? StanzaTemplate.elements(text))?.first else { return false }
            return element[attribute: "from"]?.hasPrefix("${") == true
        }
        let users = stanzas.filter(fromUser)
        return stanzas.filter { !fromUser($0) } + users
    }

    /// The first step (and client, in the scenario's order) whose receptions differ.
    public static func firstDifference(reference: Transcript, target: Transcript, clients: [String]) -> Difference? {
        let steps = min(reference.steps.count, target.steps.count)
        for step in 0..<steps {
            for client in clients {
                let expected = userStanzasLast(occupantListsSorted(reference.steps[step].canonical(client)))
                let got = userStanzasLast(occupantListsSorted(target.steps[step].canonical(client)))
                if expected != got {
                    return Difference(step: step, client: client, reference: expected, target: got)
                }
            }
        }
        if reference.failure != target.failure {
            let failure = "reference: \(reference.failure ?? "ran to the end"); target: \(target.failure ?? "ran to the end")"
            return Difference(step: steps, client: "", reference: [], target: [], failure: failure)
        }
        return nil
    }
}
