import Cluster
import NIOCore
import ServerRuntime
import Testing
import XMPPCore
import XMPPStream

/// RFC 6121 between sessions of one node, and the server's own IQs.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(2)))
struct RoutingTests {
    @Test func messageToAFullJID() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        let juliet = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let a = try await node.login(romeo, resource: "balcony")
            let b = try await node.login(juliet, resource: "garden")
            var message = XMLElement("message", namespace: Namespace.client, ["to": "\(juliet)/garden", "type": "chat", "id": "m1"])
            message.append(XMLElement("body", namespace: Namespace.client, text: "Wherefore art thou? <&>"))
            a.send(message)
            let received = try await b.receive { $0.name == "message" }
            #expect(received[attribute: "from"] == "\(romeo)/balcony")
            #expect(received.id == "m1")
            #expect(received.child("body")?.text == "Wherefore art thou? <&>")
            await a.close()
            await b.close()
        }
    }

    @Test func messageToABareJIDGoesToTheHighestPriority() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        let juliet = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let sender = try await node.login(romeo)
            let low = try await node.login(juliet, resource: "low")
            let high = try await node.login(juliet, resource: "high")
            low.send(presence(priority: 1))
            _ = try await low.receive { $0.name == "presence" && $0[attribute: "from"] == "\(juliet)/low" }
            high.send(presence(priority: 5))
            _ = try await high.receive { $0.name == "presence" && $0[attribute: "from"] == "\(juliet)/high" }
            // `low` sees `high` come online: both presences are in place.
            _ = try await low.receive { $0.name == "presence" && $0[attribute: "from"] == "\(juliet)/high" }
            sender.send(XMLElement("message", namespace: Namespace.client, ["to": juliet.description, "type": "chat", "id": "b1"]))
            let got = try await high.receive { $0.name == "message" }
            #expect(got.id == "b1")
            // A ping through `low` after the message: if the message had gone there too
            // it would have arrived before the pong.
            let pong = try await low.ping()
            #expect(pong.type == "result")
            #expect(!Self.drained(low, holds: "message"))
            for client in [sender, low, high] { await client.close() }
        }
    }

    @Test func messageToAnAccountThatDoesNotExistIsServiceUnavailable() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        let nobody = try JID("nobody\(UInt32.random(in: 0...UInt32.max))@localhost")
        try await withNode { node in
            let a = try await node.login(romeo)
            a.send(XMLElement("message", namespace: Namespace.client, ["to": nobody.description, "type": "chat", "id": "x1"]))
            let error = try await a.receive { $0.name == "message" }
            #expect(error.type == "error")
            #expect(error.stanzaError?.condition == .serviceUnavailable)
            #expect(error[attribute: "from"] == nobody.description)
            await a.close()
        }
    }

    /// XEP-0160: kept while she has no available resource, delivered with the server's
    /// delay stamp when one comes online (its presence first), and only once.
    @Test func messageToAnOfflineUserWaitsForHer() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        let juliet = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let a = try await node.login(romeo)
            var message = XMLElement("message", namespace: Namespace.client, ["to": juliet.description, "type": "chat", "id": "x1"])
            message.append(XMLElement("body", namespace: Namespace.client, text: "Parting is such sweet sorrow"))
            a.send(message)
            // Not bounced: the pong comes and no error before it.
            #expect(try await a.ping().type == "result")
            #expect(!Self.drained(a, holds: "message"))
            let b = try await node.login(juliet, resource: "balcony")
            b.send(presence(priority: 0))
            let kept = try await b.receive { $0.name == "message" }
            #expect(kept.id == "x1")
            #expect(kept[attribute: "from"]?.hasPrefix(romeo.description + "/") == true)
            #expect(kept.child("body")?.text == "Parting is such sweet sorrow")
            #expect(kept.child("delay", namespace: "urn:xmpp:delay")?[attribute: "from"] == "localhost")
            await b.close()
            let again = try await node.login(juliet, resource: "garden")
            again.send(presence(priority: 0))
            #expect(try await again.ping().type == "result")
            #expect(!Self.drained(again, holds: "message"))
            await again.close()
            await a.close()
        }
    }

    /// A flood to an offline user is bounded: past `limits.offline_messages` (or
    /// `limits.offline_bytes`), each message comes back to its sender as
    /// `service-unavailable`, and the user later gets what was kept, in order.
    @Test func offlineMessagesAreBoundedPerAccount() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        let juliet = try await TestDatabase.shared.makeAccount()
        try await withNode({ $0.limits.offlineMessages = 3; $0.limits.offlineBytes = 2000 }) { node in
            let a = try await node.login(romeo)
            // First, a message alone larger than the byte bound: not kept.
            var large = XMLElement("message", namespace: Namespace.client, ["to": juliet.description, "type": "chat", "id": "large"])
            large.append(XMLElement("body", namespace: Namespace.client, text: String(repeating: "x", count: 3000)))
            a.send(large)
            for index in 1...5 {
                var message = XMLElement("message", namespace: Namespace.client, ["to": juliet.description, "type": "chat", "id": "f\(index)"])
                message.append(XMLElement("body", namespace: Namespace.client, text: "flood \(index)"))
                a.send(message)
            }
            var bounced: [String] = []
            for _ in 1...3 {
                let error = try await a.receive { $0.name == "message" && $0.type == "error" }
                #expect(error.stanzaError?.condition == .serviceUnavailable)
                bounced.append(error.id ?? "-")
            }
            #expect(bounced.sorted() == ["f4", "f5", "large"])
            let b = try await node.login(juliet, resource: "balcony")
            b.send(presence(priority: 0))
            var kept: [String] = []
            for _ in 1...3 { kept.append(try await b.receive { $0.name == "message" }.id ?? "-") }
            #expect(kept == ["f1", "f2", "f3"])
            #expect(try await b.ping().type == "result")
            #expect(!Self.drained(b, holds: "message"))
            await b.close()
            await a.close()
        }
    }

    /// Directed presence (RFC 6121 §4.6): delivered as addressed; the sender going
    /// offline tells its recipients. What a session remembers for that is bounded: past
    /// 256 recipients, further ones are not told (hostile input cannot grow it).
    @Test func directedPresenceEndsWithTheSenderAndIsBounded() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        let juliet = try await TestDatabase.shared.makeAccount()
        let nurse = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let b = try await node.login(juliet, resource: "balcony")
            b.send(presence(priority: 0))
            _ = try await b.receive { $0.name == "presence" && $0[attribute: "from"] == "\(juliet)/balcony" }
            let c = try await node.login(nurse, resource: "kitchen")
            c.send(presence(priority: 0))
            _ = try await c.receive { $0.name == "presence" && $0[attribute: "from"] == "\(nurse)/kitchen" }
            let a = try await node.login(romeo, resource: "garden")
            a.send(presence(priority: 0))
            _ = try await a.receive { $0.name == "presence" && $0[attribute: "from"] == "\(romeo)/garden" }
            // Juliet first; then 255 addresses nobody holds, filling the bound; then the nurse.
            a.send(XMLElement("presence", namespace: Namespace.client, ["to": juliet.description]))
            let directed = try await b.receive { $0.name == "presence" && $0[attribute: "from"] == "\(romeo)/garden" }
            #expect(directed[attribute: "to"] == juliet.description)
            for index in 1...255 {
                a.send(XMLElement("presence", namespace: Namespace.client, ["to": "nobody\(index)@localhost"]))
            }
            a.send(XMLElement("presence", namespace: Namespace.client, ["to": nurse.description]))
            _ = try await c.receive { $0.name == "presence" && $0[attribute: "from"] == "\(romeo)/garden" }
            await a.close()
            let gone = try await b.receive { $0.name == "presence" && $0[attribute: "from"] == "\(romeo)/garden" }
            #expect(gone.type == "unavailable")
            // The nurse was the 257th: not told. (Her ping's answer comes first.)
            #expect(try await c.ping().type == "result")
            #expect(!Self.drained(c, holds: "presence"))
            await b.close()
            await c.close()
        }
    }

    @Test func presenceIsReflectedAndUnavailableOnDisconnect() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let phone = try await node.login(romeo, resource: "phone")
            let laptop = try await node.login(romeo, resource: "laptop")
            phone.send(presence(priority: 0))
            let own = try await phone.receive { $0.name == "presence" }
            #expect(own[attribute: "from"] == "\(romeo)/phone")
            laptop.send(presence(priority: 0))
            let fromPhone = try await laptop.receive { $0.name == "presence" && $0[attribute: "from"] == "\(romeo)/phone" }
            #expect(fromPhone.type == nil)
            _ = try await phone.receive { $0.name == "presence" && $0[attribute: "from"] == "\(romeo)/laptop" }
            await laptop.close()
            let gone = try await phone.receive { $0.name == "presence" && $0[attribute: "from"] == "\(romeo)/laptop" }
            #expect(gone.type == "unavailable")
            await phone.close()
        }
    }

    /// Once a resource sees its initial presence come back, every node can find it
    /// available in the session directory: a message another node routes to the bare JID
    /// then is delivered, not kept offline (the directory once learnt it after the
    /// reflection).
    @Test func theDirectoryKnowsAResourceIsAvailableBeforeItsPresenceComesBack() async throws {
        let juliet = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let garden = try await node.login(juliet, resource: "garden")
            let directory = ClusterDatabase(client: try await TestDatabase.shared.connected(), logger: TestEnvironment.logger)
            #expect(try await directory.sessions(ofBare: juliet.description).map(\.available) == [false], "bound, not yet available")
            garden.send(presence(priority: 1))
            _ = try await garden.receive { $0.name == "presence" && $0[attribute: "from"] == "\(juliet)/garden" }
            let rows = try await directory.sessions(ofBare: juliet.description)
            #expect(rows.map(\.available) == [true] && rows.map(\.priority) == [1], "\(rows)")
            await garden.close()
        }
    }

    @Test func iqBetweenSessions() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        let juliet = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let a = try await node.login(romeo, resource: "r")
            let b = try await node.login(juliet, resource: "j")
            a.send(XMLElement("iq", namespace: Namespace.client, ["to": "\(juliet)/j", "type": "get", "id": "v1"],
                              children: [XMLElement("query", namespace: Namespace.version)]))
            let request = try await b.receive { $0.name == "iq" }
            #expect(request[attribute: "from"] == "\(romeo)/r")
            b.send(request.iqResult())
            let result = try await a.receive { $0.name == "iq" && $0.id == "v1" }
            #expect(result.type == "result")
            #expect(result[attribute: "from"] == "\(juliet)/j")
            // A full JID nobody has bound.
            let missing = try await a.iq("get", to: "\(juliet)/elsewhere", XMLElement("query", namespace: Namespace.version))
            #expect(missing.stanzaError?.condition == .serviceUnavailable)
            await a.close()
            await b.close()
        }
    }

    @Test func serverIQs() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let client = try await node.login(romeo)
            let items = try await client.iq("get", to: "localhost", XMLElement("query", namespace: Namespace.discoItems))
            let jids = items.child("query", namespace: Namespace.discoItems)?.children("item").compactMap { $0[attribute: "jid"] }
            #expect(jids == ["conference.localhost"])
            let info = try await client.iq("get", to: "localhost", XMLElement("query", namespace: Namespace.discoInfo))
            let features = info.child("query")?.children("feature").compactMap { $0[attribute: "var"] } ?? []
            #expect(features.contains(Namespace.ping))
            #expect(info.child("query")?.child("identity")?[attribute: "category"] == "server")
            let version = try await client.iq("get", to: "localhost", XMLElement("query", namespace: Namespace.version))
            #expect(version.child("query")?.child("name")?.text == "Conclave")
            let roster = try await client.iq("get", XMLElement("query", namespace: Namespace.roster))
            #expect(roster.type == "result")
            #expect(roster.child("query", namespace: Namespace.roster)?.elements.isEmpty == true)
            let unknown = try await client.iq("get", to: "localhost", XMLElement("query", namespace: "jabber:iq:private"))
            #expect(unknown.stanzaError?.condition == .serviceUnavailable)
            let remote = try await client.ping("example.org")
            #expect(remote.stanzaError?.condition == .remoteServerNotFound)
            let empty = try await client.iqWithoutPayload()
            #expect(empty.stanzaError?.condition == .badRequest)
            await client.close()
        }
    }

    @Test func malformedAddressesAreJIDMalformed() async throws {
        let romeo = try await TestDatabase.shared.makeAccount()
        try await withNode { node in
            let client = try await node.login(romeo)
            client.send(XMLElement("message", namespace: Namespace.client, ["to": "a@b@c/", "id": "bad"]))
            let error = try await client.receive { $0.name == "message" }
            #expect(error.stanzaError?.condition == .jidMalformed)
            await client.close()
        }
    }

    /// Whether what `client` has received and not yet read holds an element named `name`
    /// (read after a ping's answer: whatever was sent before it has arrived).
    static func drained(_ client: XMPPClient, holds name: String) -> Bool {
        client.drain().contains { if case .element(let e) = $0 { return e.name == name } else { return false } }
    }

    private func presence(priority: Int) -> XMLElement {
        XMLElement("presence", namespace: Namespace.client,
                   children: [XMLElement("priority", namespace: Namespace.client, text: "\(priority)")])
    }
}

extension XMPPClient {
    func iqWithoutPayload() async throws -> XMLElement {
        send(XMLElement("iq", namespace: Namespace.client, ["type": "get", "id": "empty", "to": "localhost"]))
        return try await receive { $0.name == "iq" && $0.id == "empty" }
    }
}
