public import XMPPCore

/// Writes a scenario as a scansion script that expects what the reference sent: run
/// against the reference it passes, against a server that differs it fails at the
/// step where they part.
public enum ScriptWriter {
    public static func script(
        _ scenario: Scenario, reference: Transcript, difference: Difference?, password: String, title: String,
        notes: [String] = []
    ) -> String {
        var out = "# \(title)\n"
        for note in notes { out += "# \(note)\n" }
        out += "## differential\n\n"
        let used = Set(scenario.actions.map(\.client))
        for client in scenario.clients where used.contains(client.name) {
            out += "[Client] \(client.name)\n\tjid: \(client.account)\n\tpassword: \(password)\n\n"
        }
        out += "-----\n\n"
        let last = difference.map { min($0.step, scenario.actions.count - 1) } ?? scenario.actions.count - 1
        for (index, action) in scenario.actions.enumerated() where index <= last {
            out += "# \(index + 1): \(action.label)\n"
            switch action.kind {
            case .connects: out += "\(action.client) connects\n"
            case .disconnects: out += "\(action.client) disconnects\n"
            case .sends(let xml): out += "\(action.client) sends:\n\t\(xml)\n"
            }
            guard index < reference.steps.count else { continue }
            let step = reference.steps[index]
            for client in scenario.clients.map(\.name) {
                for stanza in step.received[client] ?? [] {
                    out += "\(client) receives:\n" + indent(stanza) + "\n"
                }
                // Where the other server sent something the reference did not.
                if let difference, difference.step == index, difference.client == client,
                    (step.received[client] ?? []).isEmpty, !difference.target.isEmpty
                {
                    out += "\(client) receives: nothing\n"
                }
            }
            out += "\n"
        }
        return out
    }

    /// A stanza on one indented line per element, as scripts are written by hand.
    static func indent(_ stanza: XMLElement) -> String {
        var lines: [String] = []
        func walk(_ element: XMLElement, depth: Int, parentNamespace: String) {
            let tabs = String(repeating: "\t", count: depth + 1)
            var open = "<" + element.name
            if element.namespace != parentNamespace { open += " xmlns=\"\(XMLEscaping.escapeAttribute(element.namespace))\"" }
            for attribute in element.attributes {
                // A scansion variable stays as written (its apostrophe unescaped).
                let variable = attribute.value.hasPrefix("${") && attribute.value.hasSuffix("}")
                open += " \(attribute.name)=\"\(variable ? attribute.value : XMLEscaping.escapeAttribute(attribute.value))\""
            }
            let elements = element.elements
            let text = element.children.compactMap { child -> String? in
                if case .text(let text) = child { return text }
                return nil
            }.joined()
            if elements.isEmpty {
                lines.append(text.isEmpty ? tabs + open + "/>" : tabs + open + ">" + XMLEscaping.escapeText(text) + "</\(element.name)>")
                return
            }
            lines.append(tabs + open + ">")
            for child in elements { walk(child, depth: depth + 1, parentNamespace: element.namespace) }
            lines.append(tabs + "</\(element.name)>")
        }
        walk(stanza, depth: 0, parentNamespace: Namespace.client)
        return lines.joined(separator: "\n")
    }
}
