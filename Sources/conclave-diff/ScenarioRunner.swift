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
        // Full JIDs clients had before they reconnected: a message kept offline for one
        // is delivered with it (normalised as the client's full JID, as the current one).
        var earlier: [(name: String, full: JID)] = []
        let sentIDs = Set(scenario.actions.compactMap { action -> String? in
            guard case .sends(let xml) = action.kind, let start = xml.range(of: " id=\"") else { return nil }
            return String(xml[start.upperBound...].prefix { $0 != "\"" })
        })
        defer {
            let open = Array(clients.values)
            Task { for client in open { await client.client.disconnect() } }
        }
        var failure: String?
        var pinged: (client: String, id: String)?
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
                    earlier += bound.filter { $0.name == action.client }
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
                    // To another user, not through the room: a ping behind it, on the same
                    // path, marks where it has arrived (`barrier`).
                    // The other client answers it when its turn comes; if it is offline, the
                    // server's error answers it, after any error for the stanza itself, and
                    // the actor waits for that instead.
                    if let target = Self.addressedClient(xml), target != action.client,
                        let full = clients[target]?.full ?? bound.first(where: { $0.name == target })?.full
                    {
                        pinged = (clients[target] != nil ? target : action.client, "c2s-barrier-\(index + 1)")
                        client.client.send(
                            XMLElement(
                                "iq", namespace: Namespace.client, ["type": "get", "to": full.description, "id": "c2s-barrier-\(index + 1)"],
                                children: [XMLElement("ping", namespace: "urn:xmpp:ping")]))
                    }
                }
                // The barrier: the actor first, then the others in order.
                let normalizer = Normalizer(clients: bound + earlier, sentIDs: sentIDs)
                let barrierOrder = [action.client].filter { clients[$0] != nil } + order.filter { $0 != action.client }
                for name in barrierOrder {
                    guard let client = clients[name] else { continue }
                    let ping = pinged?.client == name ? pinged?.id : nil
                    let stanzas = try await barrier(
                        client, room: scenario.room, step: index, awaiting: ping, sentIDs: sentIDs,
                        sessions: Set((bound + earlier).map(\.full)))
                    received[name] = stanzas.map(normalizer.normalize)
                }
                pinged = nil
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

    /// The client a stanza template addresses by its variable (`${B's JID}`,
    /// `${B's full JID}` in `to`), if any.
    static func addressedClient(_ xml: String) -> String? {
        guard let start = xml.range(of: "to=\"${") else { return nil }
        let rest = xml[start.upperBound...]
        guard let end = rest.range(of: "'s ") else { return nil }
        return String(rest[..<end.lowerBound])
    }

    /// Returns what arrived before the answer to the barrier (disco#info to the room).
    /// With `awaiting`, the ping another client sent this one behind a stanza for it comes
    /// first: answered, and the room's barrier sent after it.
    func barrier(
        _ client: Client, room: String, step: Int, awaiting ping: String? = nil, sentIDs: Set<String> = [], sessions: Set<JID> = []
    ) async throws -> [XMLElement] {
        let id = "barrier-\(step + 1)"
        func sendBarrier() {
            client.client.send(
                XMLElement(
                    "iq", namespace: Namespace.client, ["type": "get", "to": room, "id": id],
                    children: [XMLElement("query", namespace: "http://jabber.org/protocol/disco#info")]))
        }
        if ping == nil { sendBarrier() }
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
                if element.name == "iq", let pingID = element[attribute: "id"], pingID.hasPrefix("c2s-barrier-") {
                    // The ping marking where a stanza from another client has arrived: answered,
                    // then the room's barrier; or the error answering this client's own ping
                    // to an offline client. (Other answers to its pings: dropped.)
                    if element[attribute: "type"] == "get" {
                        client.client.send(
                            XMLElement(
                                "iq", namespace: Namespace.client,
                                ["type": "result", "to": element[attribute: "from"] ?? "", "id": pingID]))
                    }
                    if pingID == ping { sendBarrier() }
                    continue
                }
                // Presence from a session that is not this scenario's: one an earlier
                // scenario ended, whose unavailable presence (to the account's other
                // resources, to whom it sent directed presence) may reach this scenario's
                // sessions on another node after they came online.
                if element.name == "presence", let from = try? JID(element[attribute: "from"] ?? ""), from.isFull,
                    let roomJID = try? JID(room), from.domainpart != roomJID.domainpart, !sessions.contains(from)
                {
                    continue
                }
                // An offline message an earlier scenario (or an earlier run, on a reused
                // database) left for this account: not part of this scenario.
                if element.name == "message", element.type != "groupchat", element.child("delay", namespace: "urn:xmpp:delay") != nil,
                    !sentIDs.contains(element[attribute: "id"] ?? "")
                {
                    continue
                }
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
