import Differential
import Foundation
import NIOCore
import Scansion
import Synchronization
import XMPPCore
import XMPPStream

/// A server the scenarios run against: one address, or several (a cluster) over which
/// the clients are spread round robin.
struct Server: Sendable {
    var name: String
    var addresses: [(host: String, port: Int)]
}

/// Runs one scenario against one server and records what every client received after
/// each action. After an action, the acting client and then every other connected
/// client send a barrier (disco#info to the room) and wait for its answer: a room
/// handles its input in order and sends its output to each client ahead of that
/// client's barrier answer, so what arrived before the answer is the step's whole
/// output, without sleeping.
struct ScenarioRunner: Sendable {
    var server: Server
    var password: String
    var timeout: Duration

    final class Client: Sendable {
        let name: String
        let client: XMPPClient
        let full: JID
        init(name: String, client: XMPPClient, full: JID) {
            self.name = name
            self.client = client
            self.full = full
        }
    }

    struct RunError: Error, CustomStringConvertible {
        var description: String
    }

    func run(_ scenario: Scenario) async -> Transcript {
        var clients: [String: Client] = [:]
        var order: [String] = []  // connected clients, in order of connection
        var steps: [StepTranscript] = []
        var bound: [(name: String, full: JID)] = []
        let sentIDs = Set(scenario.actions.compactMap { action -> String? in
            guard case .sends(let xml) = action.kind, let start = xml.range(of: " id=\"") else { return nil }
            return String(xml[start.upperBound...].prefix { $0 != "\"" })
        })
        defer {
            let open = Array(clients.values)
            Task { for client in open { await client.client.disconnect() } }
        }
        var failure: String?
        for (index, action) in scenario.actions.enumerated() {
            var received: [String: [XMLElement]] = [:]
            do {
                switch action.kind {
                case .connects:
                    if clients[action.client] != nil { throw RunError(description: "\(action.client) is already connected") }
                    let account = scenario.clients.first { $0.name == action.client }?.account ?? ""
                    let address = server.addresses[(scenario.clients.firstIndex { $0.name == action.client } ?? 0) % server.addresses.count]
                    let client = try await connect(account: account, host: address.host, port: address.port)
                    clients[action.client] = client
                    order.append(action.client)
                    bound.removeAll { $0.name == action.client }
                    bound.append((action.client, client.full))
                case .disconnects:
                    guard let client = clients.removeValue(forKey: action.client) else { break }
                    order.removeAll { $0 == action.client }
                    await client.client.close(timeout: .milliseconds(Int64(timeout.components.seconds * 1000)))
                case .sends(let xml):
                    guard let client = clients[action.client] else {
                        throw RunError(description: "\(action.client) sends while not connected")
                    }
                    let text = try StanzaTemplate.substitute(xml) { name, full in
                        guard let other = bound.first(where: { $0.name == name })?.full else { return nil }
                        return full ? other.description : other.bare.description
                    }
                    guard let stanza = try StanzaTemplate.elements(text).first else { throw RunError(description: "no stanza") }
                    client.client.send(StanzaTemplate.plain(stanza))
                }
                // The barrier: the actor first, then the others in order.
                let normalizer = Normalizer(clients: bound, sentIDs: sentIDs)
                let barrierOrder = [action.client].filter { clients[$0] != nil } + order.filter { $0 != action.client }
                for name in barrierOrder {
                    guard let client = clients[name] else { continue }
                    let stanzas = try await barrier(client, room: scenario.room, step: index)
                    received[name] = stanzas.map(normalizer.normalize)
                }
            } catch {
                failure = "step \(index + 1) (\(action)): \(error)"
                steps.append(StepTranscript(received: received))
                break
            }
            steps.append(StepTranscript(received: received))
        }
        return Transcript(steps: steps, failure: failure)
    }

    func connect(account: String, host: String, port: Int) async throws -> Client {
        let jid = try JID(account)
        var options = XMPPClient.Options()
        options.tls = .starttls(required: false)
        options.trust = .noVerification
        options.timeout = .milliseconds(Int64(timeout.components.seconds * 1000))
        let client = try await XMPPClient.connect(host: host, port: port, domain: jid.domainpart, options: options)
        do {
            try await client.authenticate(username: jid.localpart ?? "", password: password)
            let full = try await client.bind()
            return Client(name: account, client: client, full: full)
        } catch {
            await client.disconnect()
            throw error
        }
    }

    /// Sends the barrier and returns what arrived before its answer.
    func barrier(_ client: Client, room: String, step: Int) async throws -> [XMLElement] {
        let id = "barrier-\(step + 1)"
        client.client.send(
            XMLElement(
                "iq", namespace: Namespace.client, ["type": "get", "to": room, "id": id],
                children: [XMLElement("query", namespace: "http://jabber.org/protocol/disco#info")]))
        var stanzas: [XMLElement] = []
        let deadline = ContinuousClock.now + timeout
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw RunError(description: "\(client.full) got no answer to its barrier within \(timeout)") }
            guard let event = await client.client.next(timeout: .milliseconds(Int64(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))
            else { continue }
            switch event {
            case .element(let element):
                if element.name == "iq", element[attribute: "id"] == id { return stanzas }
                // What another scenario's room sent while this account was offline (an
                // invitation kept for it, XEP-0160) arrives when it comes online: not part
                // of this scenario, and it depends on which job ran which scenario before.
                if let from = try? JID(element[attribute: "from"] ?? ""), let roomJID = try? JID(room),
                    from.domainpart == roomJID.domainpart, from.bare != roomJID.bare
                {
                    continue
                }
                stanzas.append(element)
            case .disconnected, .streamClosed:
                throw RunError(description: "\(client.full)'s stream ended")
            case .parseError(let detail):
                throw RunError(description: "\(client.full) received bad XML: \(detail)")
            case .streamOpened:
                break
            }
        }
    }
}
