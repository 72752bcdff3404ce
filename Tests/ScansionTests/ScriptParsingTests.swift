import Scansion
import Testing
import XMPPCore

@Suite struct ScriptParsingTests {
    static let romeo = "[Client] Romeo\n\tjid: user@localhost\n\tpassword: password\n"

    @Test func headerGivesTitleDescriptionAndTags() throws {
        let script = try Fixture.script(
            """
            # MUC: a title
            # first description line
            #second description line
            ## slow
            ## requires: muc
            ##   spaced :  value with spaces \t

            \(Self.romeo)
            -----
            # not part of the description
            Romeo connects
            """)
        #expect(script.title == "MUC: a title")
        #expect(script.description == ["first description line", "second description line"])
        #expect(script.tags["slow"] == .some(nil))
        #expect(script.tags["requires"] == "muc")
        #expect(script.tags["spaced"] == "value with spaces")
        #expect(script.tags["missing"] == nil)
        #expect(script.tags.count == 3)
    }

    @Test func withoutATitleCommentTheFileNameIsTheTitle() throws {
        let script = try Fixture.script(Self.romeo + "Romeo connects\n", path: "spec/some/join.scs")
        #expect(script.title == "join.scs")
        #expect(script.description.isEmpty)
    }

    @Test(arguments: ["# a comment", "## tag", "// a comment", "-- a comment", "-----", "--", "---------------"])
    func commentLinesAreSkippedBetweenActions(comment: String) throws {
        let script = try Fixture.script(Self.romeo + "-----\nRomeo connects\n\(comment)\nRomeo disconnects\n")
        #expect(script.actions.map(\.kind) == [.connects, .disconnects])
        #expect(script.actions.map(\.line) == [5, 7])
    }

    @Test func commentAndSeparatorLinesAreNotActions() throws {
        let script = try Fixture.script(
            "# Title\n// note\n-- note\n" + Self.romeo + "--\n-----\n// note\nRomeo connects\n")
        #expect(script.actions.count == 1)
        #expect(script.title == "Title")
        #expect(script.description.isEmpty)
    }

    @Test(arguments: ["\t", "    ", "  ", " \t"])
    func clientPropertiesIndentedByTabsOrSpaces(indent: String) throws {
        let script = try Fixture.script(
            """
            [Client] Romeo
            \(indent)jid: user@localhost/balcony
            \(indent)password: s3cret:with:colons

            \(indent)connect_host: node2.example
            \(indent)connect_port: 5223
            \(indent)resource: phone
            -----
            Romeo connects
            """)
        let romeo = try #require(script.client(named: "Romeo"))
        #expect(romeo.line == 1)
        #expect(romeo.jid == "user@localhost/balcony")
        #expect(romeo.password == "s3cret:with:colons")
        #expect(romeo.connectHost == "node2.example")
        #expect(romeo.connectPort == 5223)
        #expect(romeo.resource == "phone")
    }

    @Test func optionalClientPropertiesDefaultToNil() throws {
        let romeo = try #require(try Fixture.script(Self.romeo).client(named: "Romeo"))
        #expect(romeo.connectHost == nil)
        #expect(romeo.connectPort == nil)
        #expect(romeo.resource == nil)
    }

    @Test(arguments: [
        ("Juliet's phone connects", "Juliet's phone"),
        ("Juliet connects", "Juliet"),
        ("Juliet phone connects", "Juliet phone"),
        ("Romeo Montague sends:", "Romeo Montague"),
        ("Romeo disconnects", "Romeo"),
    ])
    func subjectIsTheLongestDefinedName(line: String, client: String) throws {
        let names = ["Juliet", "Juliet's phone", "Juliet phone", "Romeo", "Romeo Montague"]
        for order in [names, names.reversed()] {
            let clients = order.map { "[Client] \($0)\n\tjid: \($0.count)@localhost\n" }.joined()
            let block = line.hasSuffix("sends:") ? "\t<presence/>\n" : ""
            let script = try Fixture.script(clients + "-----\n" + line + "\n" + block)
            #expect(script.clients.map(\.name) == order)
            #expect(script.actions.map(\.client) == [client])
        }
    }

    @Test(arguments: [
        ("Romeo connects", Action.Kind.connects),
        ("Romeo connects:", .connects),
        ("Romeo disconnects", .disconnects),
        ("Romeo disconnects:", .disconnects),
        ("Romeo receives: nothing", .receivesNothing),
        ("Romeo receives nothing", .receivesNothing),
        ("Romeo receives:nothing", .receivesNothing),
        ("Romeo receives:   nothing  ", .receivesNothing),
    ])
    func actionsWithAndWithoutTheColon(line: String, kind: Action.Kind) throws {
        let script = try Fixture.script(Self.romeo + "\n" + line + "\n")
        #expect(script.actions == [Action(client: "Romeo", kind: kind, line: 5, blockLine: 6)])
    }

    @Test(arguments: ["sends:", "sends", "receives:", "receives"])
    func stanzaActionsWithAndWithoutTheColon(verb: String) throws {
        let script = try Fixture.script(Self.romeo + "Romeo \(verb)\n\t<message to='a@b'/>\n")
        let action = try #require(script.actions.first)
        #expect(action.line == 4 && action.blockLine == 5)
        let expected: Action.Kind =
            verb.hasPrefix("sends") ? .sends("\t<message to='a@b'/>") : .receives("\t<message to='a@b'/>")
        #expect(action.kind == expected)
    }

    @Test func blockIsEveryFollowingIndentedOrBlankLine() throws {
        let script = try Fixture.script(
            Self.romeo + "Romeo sends:\n\t<message>\n\n  \t\n\t\t<body>hi</body>\n\t</message>\n\n\t\n"
                + "Romeo receives: nothing\n")
        #expect(script.actions.count == 2)
        // Inner blank lines stay, trailing blank lines go.
        #expect(script.actions[0].kind == .sends("\t<message>\n\n  \t\n\t\t<body>hi</body>\n\t</message>"))
        #expect(script.actions[0].blockLine == 5)
        #expect(script.actions[1].kind == .receivesNothing)
        #expect(script.actions[1].line == 12)
    }

    @Test func blockWithTwoElementsIsTolerated() throws {
        let script = try Fixture.script(Self.romeo + "Romeo sends:\n\t<presence/>\n\t<message to='a@b'/>\n")
        guard case .sends(let text) = try #require(script.actions.first).kind else {
            Issue.record("not a sends action")
            return
        }
        let elements = try StanzaTemplate.elements(text)
        #expect(elements.map(\.name) == ["presence", "message"])
    }

    @Test func sendsAfterDisconnectsIsAWarningNotAnError() throws {
        let script = try Fixture.script(
            Self.romeo + "Romeo connects\nRomeo disconnects\nRomeo sends:\n\t<presence/>\n")
        #expect(script.actions.map(\.verb) == ["connects", "disconnects", "sends"])
        #expect(script.warnings.count == 1)
        #expect(script.warnings.first?.line == 6)
        #expect(script.warnings.first?.message.contains("Romeo") == true)
    }

    @Test func sendsBeforeDisconnectsOrByAnotherClientGivesNoWarning() throws {
        let script = try Fixture.script(
            Self.romeo + "[Client] Juliet\n\tjid: j@localhost\n"
                + "Romeo connects\nJuliet connects\nRomeo sends:\n\t<presence/>\nRomeo disconnects\n"
                + "Juliet sends:\n\t<presence/>\nJuliet disconnects\n")
        #expect(script.actions.count == 6)
        #expect(script.warnings.isEmpty)
    }

    /// `splitLines` means to accept CRLF, but "\r\n" is one Character in Swift, so
    /// `split(separator: "\n")` never splits it and the whole file is one line.
    @Test func windowsLineEndingsAreAccepted() throws {
        let text = "# Title\r\n[Client] Romeo\r\n\tjid: user@localhost\r\n\r\nRomeo connects\r\n"
        let script = try Fixture.script(text)
        #expect(script.title == "Title")
        #expect(script.client(named: "Romeo")?.jid == "user@localhost")
        #expect(script.actions.map(\.line) == [5])
    }
}

@Suite struct ClientAccountTests {
    @Test(arguments: [("romeo@localhost", "romeo@localhost"), ("juliet@localhost/phone", "juliet@localhost"),
                      ("nurse@localhost/a/b", "nurse@localhost")])
    func theAccountIsTheJIDWithoutItsResource(jid: String, account: String) {
        #expect(ClientDefinition(name: "X", line: 1, jid: jid, password: "p").account == account)
    }
}
