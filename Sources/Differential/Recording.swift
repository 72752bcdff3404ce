public import Foundation
public import XMPPCore
import Scansion

/// The reference's transcripts of a fixed set of scenarios, kept in a file: `make test`
/// compares Conclave with them without running Prosody. The room's address (different
/// on every run) is kept as `{room}` (and its local part as `{room-local}`), and each
/// scenario's actions are kept too, so that a generator that has changed since the
/// recording is noticed instead of compared.
public struct Recording: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public var seed: UInt64
        /// Each action as `client label: stanza`, with the room's address replaced.
        public var actions: [String]
        public var failure: String?
        /// Per step, what each client received (canonical, normalised, room replaced).
        public var steps: [[String: [String]]]

        public init(scenario: Scenario, transcript: Transcript) {
            seed = scenario.seed
            actions = Self.labels(of: scenario)
            failure = transcript.failure.map { Self.placeholders($0, room: scenario.room) }
            let names = scenario.clients.map(\.name)
            steps = transcript.steps.map { step in
                var received: [String: [String]] = [:]
                for name in names {
                    let stanzas = step.canonical(name)
                    if !stanzas.isEmpty { received[name] = stanzas.map { Self.placeholders($0, room: scenario.room) } }
                }
                return received
            }
        }

        /// The scenario's actions as they are compared with a recording.
        public static func labels(of scenario: Scenario) -> [String] {
            scenario.actions.map { action in
                var text = "\(action.client) \(action.label)"
                if case .sends(let xml) = action.kind { text += ": " + xml }
                return placeholders(text, room: scenario.room)
            }
        }

        /// The recorded transcript for a run whose room is `room`.
        public func transcript(room: String) -> Transcript {
            let local = String(room.prefix { $0 != "@" })
            func restore(_ text: String) -> String {
                text.replacingOccurrences(of: "{room}", with: room).replacingOccurrences(of: "{room-local}", with: local)
            }
            let recordedSteps = steps.map { step in
                StepTranscript(
                    received: step.mapValues { stanzas in
                        stanzas.compactMap { (try? StanzaTemplate.elements(restore($0)))?.first.map(Self.withoutDeclarations) }
                    })
            }
            return Transcript(steps: recordedSteps, failure: failure.map(restore))
        }

        /// The element without the namespace declarations the template parser reports
        /// as attributes (a recorded stanza is compared as it was first serialized).
        static func withoutDeclarations(_ element: XMLElement) -> XMLElement {
            var copy = element
            copy.attributes.removeAll { $0.name == "xmlns" || $0.name.hasPrefix("xmlns:") }
            copy.children = element.children.map { node in
                guard case .element(let inner) = node else { return node }
                return .element(withoutDeclarations(inner))
            }
            return copy
        }

        static func placeholders(_ text: String, room: String) -> String {
            let local = String(room.prefix { $0 != "@" })
            return text.replacingOccurrences(of: room, with: "{room}").replacingOccurrences(of: local, with: "{room-local}")
        }
    }

    /// Which server the transcripts came from (its address when they were recorded).
    public var reference: String
    public var scenarios: [Entry]

    public init(reference: String, scenarios: [Entry]) {
        self.reference = reference
        self.scenarios = scenarios
    }

    public static func load(_ path: String) throws -> Recording {
        try JSONDecoder().decode(Recording.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    public func save(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

extension Scenario {
    /// The same scenario about another room (its stanzas readdressed).
    public func moved(to room: String) -> Scenario {
        var copy = self
        copy.room = room
        copy.actions = actions.map { action in
            var moved = action
            // The room's local part: in its address, and alone in c2s ids.
            let local = String(self.room.prefix { $0 != "@" })
            let newLocal = String(room.prefix { $0 != "@" })
            if case .sends(let xml) = action.kind {
                // Once: the local part covers the address too (and a name that is a prefix
                // of the new one must not be replaced again).
                moved.kind = .sends(xml.replacingOccurrences(of: local, with: newLocal))
            }
            return moved
        }
        return copy
    }
}
