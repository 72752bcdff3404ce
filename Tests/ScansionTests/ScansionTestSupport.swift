import Foundation
import Scansion
import Testing
import XMPPCore

/// Helpers shared by the Scansion tests: expected elements are parsed the way the
/// runner parses a `receives:` block; received elements look like what a server sends.
enum Fixture {
    static let muc = "http://jabber.org/protocol/muc"
    static let mucUser = "http://jabber.org/protocol/muc#user"

    /// The single element of a block, parsed by `StanzaTemplate` (so `xmlns`
    /// declarations are kept as attributes and the `scansion:` prefix is declared).
    static func expected(_ xml: String) throws -> XMLElement {
        let elements = try StanzaTemplate.elements(xml)
        try #require(elements.count == 1, "expected one element in \(xml)")
        return elements[0]
    }

    /// The element as a server would deliver it: namespaces resolved, but no `xmlns`
    /// or `xmlns:*` attributes (a server's parser does not report declarations).
    static func received(_ xml: String) throws -> XMLElement {
        withoutDeclarations(try expected(xml))
    }

    static func withoutDeclarations(_ element: XMLElement) -> XMLElement {
        var copy = element
        copy.attributes.removeAll { $0.name == "xmlns" || $0.name.hasPrefix("xmlns:") }
        copy.children = element.children.map { node in
            if case .element(let child) = node { return .element(withoutDeclarations(child)) }
            return node
        }
        return copy
    }

    /// Matches with a fresh matcher; `nil` means the received element matched.
    static func mismatch(_ expected: String, _ received: String) throws -> StanzaMatcher.Mismatch? {
        var matcher = StanzaMatcher()
        return matcher.match(expected: try Self.expected(expected), received: try Self.received(received))
    }

    static func matches(_ expected: String, _ received: String) throws -> Bool {
        try mismatch(expected, received) == nil
    }

    static func script(_ text: String, path: String = "test.scs") throws -> ScansionScript {
        try ScansionScript(parsing: text, path: path)
    }

    /// The error a script fails with, or `nil` (recorded as an issue) if it parses.
    static func parseError(
        _ text: String, sourceLocation: SourceLocation = #_sourceLocation
    ) -> ScansionParseError? {
        do {
            _ = try ScansionScript(parsing: text, path: "bad.scs")
            Issue.record("the script parsed, an error was expected", sourceLocation: sourceLocation)
            return nil
        } catch {
            return error
        }
    }

    /// Addresses used for `${Name's JID}` / `${Name's full JID}` in the tests.
    static let addresses: [String: (bare: String, full: String)] = [
        "Romeo": ("user@localhost", "user@localhost/r"),
        "Juliet": ("user2@localhost", "user2@localhost/j"),
    ]

    static func substitute(_ text: String) throws -> String {
        try StanzaTemplate.substitute(text) { name, full in
            addresses[name].map { full ? $0.full : $0.bare }
        }
    }
}

/// The seed scenario from ../shared/seed (or the copy in spec/seed/ when the repository
/// is checked out without ../shared), read from disk so the tests follow the real file.
enum Seed {
    static let path: String = {
        // #filePath may go through a symlinked test directory; resolve it to the repository.
        var url = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        for _ in 0..<3 { url.deleteLastPathComponent() }
        let shared = url.path + "/../shared/seed/muc_members_only_change.scs"
        if FileManager.default.fileExists(atPath: shared) { return shared }
        return url.path + "/spec/seed/muc_members_only_change.scs"
    }()

    static func text() throws -> String {
        try String(contentsOfFile: path, encoding: .utf8)
    }

    static func script() throws -> ScansionScript {
        try ScansionScript(parsing: try text(), path: path)
    }

    /// The text of the one `receives` block of `client` that contains every fragment.
    static func receivesBlock(of client: String, containing fragments: [String]) throws -> String {
        let blocks = try script().actions.compactMap { action -> String? in
            guard action.client == client, case .receives(let text) = action.kind else { return nil }
            return fragments.allSatisfy { text.contains($0) } ? text : nil
        }
        try #require(blocks.count == 1, "\(blocks.count) \(client) receives blocks contain \(fragments)")
        return blocks[0]
    }
}
