import Scansion
import Testing

/// Scripts that cannot be read fail with the line where reading stopped.
@Suite struct ScriptErrorTests {
    /// Lines 1-3.
    static let romeo = "[Client] Romeo\n\tjid: user@localhost\n\tpassword: password\n"

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var script: String
        var line: Int
        /// Something the message must mention.
        var mentions: String
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(
            name: "unknown client", script: romeo + "-----\nRomeo connects\nMercutio connects\n", line: 6,
            mentions: "Mercutio"),
        Case(
            name: "defined name not followed by a space", script: romeo + "Romeos connects\n", line: 4,
            mentions: "Romeos"),
        Case(name: "unknown verb", script: romeo + "-----\n\nRomeo dances\n", line: 6, mentions: "dances"),
        Case(name: "no verb", script: romeo + "Romeo\n", line: 4, mentions: "unknown action"),
        Case(
            name: "sends without a block", script: romeo + "Romeo sends:\nRomeo disconnects\n", line: 4,
            mentions: "sends"),
        Case(
            name: "sends with only blank lines",
            script: romeo + "Romeo connects\nRomeo sends:\n\n\t\n\nRomeo connects\n",
            line: 5, mentions: "sends"),
        Case(name: "sends at the end of the file", script: romeo + "Romeo sends", line: 4, mentions: "sends"),
        Case(name: "receives without a block", script: romeo + "Romeo receives:\n", line: 4, mentions: "receives"),
        Case(
            name: "receives something else than nothing", script: romeo + "Romeo receives: everything\n\t<a/>\n",
            line: 4, mentions: "everything"),
        Case(
            name: "client without jid", script: "# T\n\n[Client] Romeo\n\tpassword: password\n\nRomeo connects\n",
            line: 3, mentions: "jid"),
        Case(
            name: "client with an empty jid", script: "[Client] Romeo\n\tjid:\n\tpassword: p\n", line: 1,
            mentions: "jid"),
        Case(
            name: "indented line after the separator", script: romeo + "-----\n\t<presence/>\n", line: 5,
            mentions: "indented"),
        Case(name: "indented first line", script: "\tjid: user@localhost\n" + romeo, line: 1, mentions: "indented"),
        Case(
            name: "indented line after a comment", script: romeo + "Romeo connects\n# note\n  <presence/>\n",
            line: 6, mentions: "indented"),
        Case(
            name: "duplicate client", script: romeo + "\n[Client] Romeo\n\tjid: other@localhost\n", line: 5,
            mentions: "Romeo"),
        Case(name: "unknown block", script: romeo + "[Server] Verona\n\tjid: x\n", line: 4, mentions: "Server"),
        Case(name: "client without a name", script: "[Client]\n\tjid: user@localhost\n", line: 1, mentions: "name"),
        Case(
            name: "property without a colon", script: "[Client] Romeo\n\tjid user@localhost\n", line: 2,
            mentions: "key: value"),
    ]

    @Test(arguments: cases)
    func errorNamesTheLine(_ test: Case) throws {
        let error = try #require(Fixture.parseError(test.script))
        #expect(error.line == test.line, "\(error)")
        #expect(error.message.contains(test.mentions), "\(error)")
        #expect(error.path == "bad.scs")
        #expect(error.description == "bad.scs:\(test.line): \(error.message)")
    }

    @Test(arguments: ["abc", "0", "65536", "-1", "", "52 22", "5222x"])
    func badConnectPortNamesItsLine(port: String) throws {
        let script = "[Client] Romeo\n\tjid: user@localhost\n\n\tconnect_port: \(port)\n\tpassword: p\n"
        let error = try #require(Fixture.parseError(script))
        #expect(error.line == 4)
        #expect(error.message.contains("connect_port"))
    }

    @Test(arguments: ["1", "5222", "65535"])
    func goodConnectPortIsAccepted(port: String) throws {
        let script = try Fixture.script("[Client] Romeo\n\tjid: user@localhost\n\tconnect_port: \(port)\n")
        #expect(script.client(named: "Romeo")?.connectPort == Int(port))
    }

    @Test func clientsMustBeDefinedBeforeTheyAct() throws {
        let error = try #require(
            Fixture.parseError("Romeo connects\n[Client] Romeo\n\tjid: user@localhost\n"))
        #expect(error.line == 1)
    }

    @Test func aClientNamePrefixIsNotEnoughForASubject() throws {
        // "Juliet's phone" is defined, "Juliet" is not: "Juliet connects" names no client.
        let error = try #require(
            Fixture.parseError("[Client] Juliet's phone\n\tjid: j@localhost/phone\n-----\nJuliet connects\n"))
        #expect(error.line == 4)
    }
}
