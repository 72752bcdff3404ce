import NIOCore
import ServerRuntime
import Testing
import XMPPCore
import XMPPStream

/// Bad input gets its RFC 6120 stream error, closes only that connection, and
/// leaves everyone else working (ARCHITECTURE.md invariant 7).
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(2)))
struct StreamErrorTests {
    static let cases: [(String, StreamError.Condition)] = [
        ("<<<>>>", .notWellFormed),
        ("</message>", .notWellFormed),
        ("<message><body>unclosed</message>", .notWellFormed),
        ("<message><body>&undefined;</body></message>", .notWellFormed),
        ("<message a='1' a='2'/>", .notWellFormed),
        // Inside the stream a DOCTYPE is not even well-formed XML; before the stream
        // header it is restricted XML (doctypeBeforeTheStreamHeader).
        ("<!DOCTYPE foo [<!ENTITY x 'y'>]><message/>", .notWellFormed),
        ("<!-- a comment --><message/>", .restrictedXML),
        ("<?php echo 1; ?>", .restrictedXML),
    ]

    @Test(arguments: cases)
    func badInputAfterLoginGetsItsStreamError(input: String, condition: StreamError.Condition) async throws {
        let account = try await TestDatabase.shared.makeAccount()
        let bystander = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let other = try await node.login(bystander)
            let client = try await node.login(account)
            client.sendRaw(input)
            #expect(try await client.receiveStreamError().condition == condition)
            try await client.expectEnd()
            #expect(try await other.ping().type == "result")
            await other.close()
        }
    }

    @Test func garbageInsteadOfAStreamHeader() async throws {
        try await withNode { node in
            let raw = try await RawConnection.connect(port: node.ports.starttls)
            let answer = try await raw.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(answer.contains("<stream:error><not-well-formed xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\""))
            #expect(answer.hasSuffix("</stream:stream>"))
        }
    }

    @Test func doctypeBeforeTheStreamHeader() async throws {
        try await withNode { node in
            let raw = try await RawConnection.connect(port: node.ports.starttls)
            let answer = try await raw.exchange(
                "<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY lol 'lol'>]><stream:stream xmlns='jabber:client' "
                    + "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
            )
            #expect(answer.contains("<restricted-xml xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\""))
        }
    }

    @Test func aTenMegabyteStanzaIsAPolicyViolation() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        let bystander = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let other = try await node.login(bystander)
            let client = try await node.login(account)
            let body = String(repeating: "a", count: 10 * 1024 * 1024)
            client.sendRaw("<message to='\(bystander)'><body>\(body)</body></message>")
            #expect(try await client.receiveStreamError().condition == .policyViolation)
            #expect(try await other.ping().type == "result")
            await other.close()
        }
    }

    @Test func nestingDeeperThanTheLimit() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode({ $0.limits.maxDepth = 16 }) { node in
            let client = try await node.login(account)
            client.sendRaw("<message>" + String(repeating: "<x>", count: 20))
            #expect(try await client.receiveStreamError().condition == .policyViolation)
        }
    }

    @Test func aStanzaBeforeAuthentication() async throws {
        try await withNode { node in
            let client = try await node.client()
            client.send(XMLElement("message", namespace: Namespace.client, ["to": "someone@localhost"]))
            #expect(try await client.receiveStreamError().condition == .notAuthorized)
        }
    }

    @Test func anUnknownDomain() async throws {
        try await withNode { node in
            await #expect {
                _ = try await node.client(domain: "example.org")
            } throws: { error in
                guard case XMPPClientError.streamError(let streamError) = error else { return false }
                return streamError.condition == .hostUnknown
            }
        }
    }

    @Test func aWrongStreamNamespace() async throws {
        try await withNode { node in
            let raw = try await RawConnection.connect(port: node.ports.starttls)
            let answer = try await raw.exchange(
                "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
            )
            #expect(answer.contains("<invalid-namespace"))
        }
    }

    @Test func aSpoofedFromAddress() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let client = try await node.login(account)
            client.send(XMLElement("message", namespace: Namespace.client, ["from": "admin@localhost/x", "to": "localhost"]))
            #expect(try await client.receiveStreamError().condition == .invalidFrom)
        }
    }

    @Test func anUnknownTopLevelElement() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let client = try await node.login(account)
            client.sendRaw("<enable xmlns='urn:xmpp:sm:3'/>")
            #expect(try await client.receiveStreamError().condition == .unsupportedStanzaType)
        }
    }

    @Test func gracefulShutdownSaysSystemShutdown() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        let node = try await TestNode.start()
        let client = try await node.login(account)
        #expect(try await client.ping().type == "result")
        async let stopped: Void = node.stop()
        #expect(try await client.receiveStreamError().condition == .systemShutdown)
        await stopped
    }

    /// Text between stanzas is ignored, as Prosody ignores it: whitespace is the
    /// RFC 6120 keep-alive, and other text carries no stanza.
    @Test func whitespaceKeepAlivesAreIgnored() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let client = try await node.login(account)
            client.sendRaw(" \n ")
            client.sendRaw("\t")
            client.sendRaw("stray text")
            #expect(try await client.ping().type == "result")
            await client.close()
        }
    }

    @Test func idleConnectionsTimeOut() async throws {
        try await withNode({ $0.c2s.idleTimeoutSeconds = 1 }) { node in
            let client = try await node.client()
            #expect(try await client.receiveStreamError().condition == .connectionTimeout)
        }
    }
}
