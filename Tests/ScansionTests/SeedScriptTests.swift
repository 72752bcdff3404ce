import Scansion
import Testing
import XMPPCore

/// The seed scenario, ../shared/seed/muc_members_only_change.scs, read by the parser.
@Suite struct SeedScriptTests {
    @Test func headerAndClients() throws {
        let script = try Seed.script()
        #expect(script.title == "MUC: Members-only rooms kick members who lose affiliation")
        #expect(script.description.isEmpty)
        #expect(script.tags.isEmpty)
        #expect(script.warnings.isEmpty)
        #expect(
            script.clients == [
                ClientDefinition(name: "Romeo", line: 3, jid: "user@localhost", password: "password"),
                ClientDefinition(name: "Juliet", line: 7, jid: "user2@localhost", password: "password"),
            ])
    }

    @Test func sequenceOfActions() throws {
        let actions = try Seed.script().actions
        #expect(actions.count == 20)
        let steps = actions.map { "\($0.client) \($0.verb)" }
        #expect(
            steps == [
                "Romeo connects", "Romeo sends", "Romeo receives", "Romeo receives",
                "Romeo sends", "Romeo receives",
                "Romeo sends", "Romeo receives", "Romeo receives",
                "Juliet connects", "Juliet sends", "Juliet receives", "Juliet receives", "Juliet receives",
                "Romeo receives",
                "Romeo sends", "Romeo receives", "Romeo receives",
                "Romeo disconnects", "Juliet disconnects",
            ])
        #expect(
            actions.map(\.line) == [13, 15, 20, 29, 33, 47, 52, 59, 66, 70, 72, 77, 80, 83, 86, 91, 99, 109, 112, 114])
    }

    @Test(arguments: [(0, 13, 14), (2, 20, 21), (16, 99, 100), (18, 112, 113)])
    func linesOfSomeActions(index: Int, line: Int, blockLine: Int) throws {
        let action = try Seed.script().actions[index]
        #expect(action.line == line)
        #expect(action.blockLine == blockLine)
    }

    @Test func kickExpectationBlockIsKeptVerbatim() throws {
        let action = try Seed.script().actions[16]
        guard case .receives(let text) = action.kind else {
            Issue.record("action 17 is \(action.verb)")
            return
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 8)
        #expect(lines.first == "\t<presence type='unavailable' from='room@conference.localhost/Juliet'>")
        #expect(lines.last == "\t</presence>")
        #expect(text.contains("<status code='321'/>"))
    }

    /// Every block of the seed substitutes and parses into exactly one element.
    @Test func everyBlockParses() throws {
        var names: [String] = []
        for action in try Seed.script().actions {
            let text: String
            switch action.kind {
            case .sends(let block), .receives(let block): text = block
            default: continue
            }
            let elements = try StanzaTemplate.elements(try Fixture.substitute(text))
            #expect(elements.count == 1, "line \(action.line)")
            names += elements.map(\.name)
        }
        #expect(names.count == 16)
        #expect(names.filter { $0 == "presence" }.count == 7)
        #expect(names.filter { $0 == "iq" }.count == 6)
        #expect(names.filter { $0 == "message" }.count == 3)
    }

    @Test func joinExpectationDeclaresMucUserAndSubstitutesRomeosFullJID() throws {
        let block = try Seed.receivesBlock(of: "Romeo", containing: ["code='201'"])
        let presence = try Fixture.expected(try Fixture.substitute(block))
        let x = try #require(presence.child("x", namespace: Fixture.mucUser))
        #expect(x[attribute: "xmlns"] == Fixture.mucUser)
        #expect(x.elements.map(\.name) == ["status", "item", "status"])
        #expect(x.elements.allSatisfy { $0.namespace == Fixture.mucUser && $0[attribute: "xmlns"] == nil })
        #expect(x.elements[1][attribute: "jid"] == "user@localhost/r")
    }
}
