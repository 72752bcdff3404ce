import NIOCore
import ServerRuntime
import Testing
import XMPPCore
import XMPPStream

@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(2)))
struct LoginTests {
    static let mechanisms = ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "PLAIN"]

    @Test(arguments: mechanisms, [XMPPClient.TLSMode.starttls(required: true), .direct])
    func logInBindAndPing(mechanism: String, tls: XMPPClient.TLSMode) async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let client = try await node.login(account, resource: "phone", mechanism: mechanism, tls: tls)
            #expect(client.isTLSActive)
            #expect(client.boundJID == (try account.with(resource: "phone")))
            let pong = try await client.ping()
            #expect(pong.type == "result")
            #expect(pong[attribute: "from"] == "localhost")
            await client.close()
        }
    }

    @Test func featuresRequireTLSFirst() async throws {
        try await withNode { node in
            var options = XMPPClient.Options()
            options.tls = .none
            let client = try await XMPPClient.connect(
                host: "127.0.0.1", port: node.ports.starttls, domain: "localhost", options: options
            )
            let starttls = try #require(client.features?.child("starttls", namespace: Namespace.tls))
            #expect(starttls.child("required", namespace: Namespace.tls) != nil)
            #expect(client.mechanisms.isEmpty)
            // Trying anyway is refused.
            client.send(XMLElement("auth", namespace: Namespace.sasl, ["mechanism": "PLAIN"], text: "AGEAYg=="))
            let failure = try await client.receive()
            #expect(failure.name == "failure")
            #expect(failure.child("encryption-required", namespace: Namespace.sasl) != nil)
            await client.close()
        }
    }

    @Test func plaintextOnLoopbackWhenAllowed() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode({ $0.c2s.allowPlaintextOnLoopback = true }) { node in
            var options = XMPPClient.Options()
            options.tls = .none
            let client = try await XMPPClient.connect(
                host: "127.0.0.1", port: node.ports.starttls, domain: "localhost", options: options
            )
            #expect(client.mechanisms.contains("SCRAM-SHA-1"))
            #expect(!client.mechanisms.contains("SCRAM-SHA-1-PLUS"))
            try await client.authenticate(username: account.localpart!, password: "secret", preferred: ["SCRAM-SHA-1"])
            try await client.bind()
            #expect(try await client.ping().type == "result")
            await client.close()
        }
    }

    @Test(arguments: ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"])
    func wrongPasswordIsNotAuthorized(mechanism: String) async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let client = try await node.client()
            do {
                try await client.authenticate(username: account.localpart!, password: "wrong", preferred: [mechanism])
                Issue.record("a wrong password was accepted")
            } catch XMPPClientError.authenticationFailed(let condition) {
                #expect(condition == "not-authorized")
            }
            // The connection stays usable for another attempt.
            try await client.authenticate(username: account.localpart!, password: "secret", preferred: [mechanism])
            try await client.bind()
            #expect(try await client.ping().type == "result")
            await client.close()
        }
    }

    @Test func unknownAccountLooksLikeWrongPassword() async throws {
        try await withNode { node in
            let client = try await node.client()
            do {
                try await client.authenticate(username: "nobody-here", password: "x", preferred: ["SCRAM-SHA-256"])
                Issue.record("authentication of an unknown account succeeded")
            } catch XMPPClientError.authenticationFailed(let condition) {
                #expect(condition == "not-authorized")
            }
            await client.close()
        }
    }

    @Test func repeatedFailuresCloseTheConnection() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode({ $0.auth.maxFailuresPerConnection = 2 }) { node in
            let client = try await node.client()
            for _ in 0..<2 {
                do {
                    try await client.authenticate(username: account.localpart!, password: "bad", preferred: ["PLAIN"])
                } catch XMPPClientError.authenticationFailed(let condition) {
                    #expect(condition == "not-authorized")
                }
            }
            let error = try await client.receiveStreamError()
            #expect(error.condition == .policyViolation)
            // The right password still works on a new connection.
            let other = try await node.login(account)
            #expect(try await other.ping().type == "result")
            await other.close()
        }
    }

    @Test func bindingTheSameResourceReplacesTheOldSession() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let first = try await node.login(account, resource: "desk")
            let second = try await node.login(account, resource: "desk")
            let error = try await first.receiveStreamError()
            #expect(error.condition == .conflict)
            #expect(second.boundJID == (try account.with(resource: "desk")))
            #expect(try await second.ping().type == "result")
            await second.close()
        }
    }

    @Test func serverGeneratesAResourceAndAcceptsLegacySession() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let client = try await node.client()
            try await client.authenticate(username: account.localpart!, password: "secret")
            #expect(client.features?.child("bind", namespace: Namespace.bind) != nil)
            let jid = try await client.bind()
            #expect(jid.bare == account)
            #expect(jid.resourcepart?.isEmpty == false)
            let session = try await client.iq("set", XMLElement("session", namespace: Namespace.session))
            #expect(session.type == "result")
            await client.close()
        }
    }

    @Test func stanzasBeforeBindingAreRefused() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let client = try await node.client()
            try await client.authenticate(username: account.localpart!, password: "secret")
            client.send(XMLElement("message", namespace: Namespace.client, ["to": "localhost"]))
            #expect(try await client.receiveStreamError().condition == .notAuthorized)
        }
    }
}
