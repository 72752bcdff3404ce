import ArgumentParser
import Foundation
import Synchronization
import NIOCore
import XMPPCore
import XMPPDiscovery
import XMPPStream

/// Logging users in, a bounded number at a time.
struct Logins: Sendable {
    let connection: ConnectionOptions
    let options: XMPPClient.Options
    /// Users (by index from 0, as in `all`'s `firstUser + index`) whose socket gets this
    /// receive buffer (`--stall`: a client on a slow link).
    var receiveBufferBytes: [Int: Int] = [:]

    struct Server: Sendable {
        var host: String
        var port: Int
    }

    func servers() throws -> [Server] {
        try connection.servers.map { text in
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
                throw ValidationError("--server takes HOST:PORT, not '\(text)'")
            }
            return Server(host: String(text[..<colon]).trimmingCharacters(in: ["[", "]"]), port: port)
        }
    }

    /// Users firstUser+1 … firstUser+count, logged in and bound, in that order.
    func all(count: Int, firstUser: Int = 0, counters: LiveCounters) async throws -> [XMPPClient] {
        let servers = try servers()
        let dns = try connection.dnsServer.map { try DNSServerAddress(parsing: $0) }
        let finder = servers.isEmpty ? EndpointFinder(domain: connection.domain, server: dns, seed: nil) : nil
        let mechanisms = connection.mechanisms.split(separator: ",").map { String($0.trimmingCharacters(in: .whitespaces)) }
        var clients = [XMPPClient?](repeating: nil, count: count)
        try await withThrowingTaskGroup(of: (Int, XMPPClient).self) { group in
            var next = 0
            var done = 0
            let limit = max(1, connection.loginConcurrency)
            while next < count || !group.isEmpty {
                while next < count, next < limit + done {
                    let index = next
                    next += 1
                    group.addTask {
                        (index, try await login(firstUser + index, servers: servers, finder: finder, mechanisms: mechanisms))
                    }
                }
                guard let (index, client) = try await group.next() else { break }
                clients[index] = client
                done += 1
                counters.loggedIn.add(1, ordering: .relaxed)
            }
        }
        return clients.map { $0! }
    }

    private func login(_ index: Int, servers: [Server], finder: EndpointFinder?, mechanisms: [String]) async throws -> XMPPClient {
        var options = self.options
        if let size = receiveBufferBytes[index] { options.receiveBufferBytes = size }
        if !connection.sources.isEmpty { options.sourceAddress = connection.sources[index % connection.sources.count] }
        let user = "\(connection.userPrefix)\(index + 1)"
        let client: XMPPClient
        if !servers.isEmpty {
            let server = servers[index % servers.count]
            client = try await XMPPClient.connect(host: server.host, port: server.port, domain: connection.domain, options: options)
        } else if let finder {
            let base = options.tls
            (client, _) = try await finder.connect(to: connection.domain) { candidate in
                if candidate.endpoint.directTLS, base == .none { return nil }
                var attemptOptions = options
                attemptOptions.tls = candidate.endpoint.directTLS ? .direct : base
                return try await XMPPClient.connect(
                    host: candidate.address, port: candidate.endpoint.port, domain: connection.domain, options: attemptOptions
                )
            }
        } else {
            throw ValidationError("\(user): no server to connect to")
        }
        do {
            try await client.authenticate(username: user, password: connection.password, preferred: mechanisms)
            _ = try await client.bind(resource: "bench")
        } catch {
            await client.disconnect()
            throw ValidationError("\(user)@\(connection.domain): cannot log in: \(error)")
        }
        return client
    }

    static func closeAll(_ clients: [XMPPClient]) async {
        await withTaskGroup(of: Void.self) { group in
            for client in clients { group.addTask { await client.close(timeout: .seconds(2)) } }
        }
    }
}

/// Joining rooms and timing it.
enum Joins {
    enum Failure: Error, CustomStringConvertible {
        case refused(String)
        var description: String { if case .refused(let why) = self { why } else { "" } }
    }

    /// Joins `room` as `nick`; the time to the self-presence (status 110), in ns. The
    /// creator of a new room (status 201) then unlocks it as an instant room.
    static func join(_ client: XMPPClient, room: String, nick: String, create: Bool) async -> Result<UInt64, any Error> {
        let started = monotonicNanoseconds()
        let full = "\(room)/\(nick)"
        client.send(
            XMLElement(
                "presence", namespace: Namespace.client, ["to": full],
                children: [XMLElement("x", namespace: Namespace.muc, children: [XMLElement("history", namespace: Namespace.muc, ["maxstanzas": "0"])])]
            )
        )
        do {
            while true {
                let element = try await client.nextElement(timeout: .seconds(30))
                guard element.name == "presence", element[attribute: "from"] == full else { continue }
                if element.type == "error" { return .failure(Failure.refused("\(element.serialized(parentNamespace: Namespace.client))")) }
                let statuses = element.child("x", namespace: Namespace.mucUser)?.children("status", namespace: Namespace.mucUser)
                    .compactMap { $0[attribute: "code"] } ?? []
                guard statuses.contains("110") else { continue }
                let took = monotonicNanoseconds() - started
                if create, statuses.contains("201") {
                    let id = "unlock-\(room)"
                    client.send(
                        XMLElement(
                            "iq", namespace: Namespace.client, ["type": "set", "to": room, "id": id],
                            children: [
                                XMLElement(
                                    "query", namespace: Namespace.mucOwner,
                                    children: [XMLElement("x", namespace: "jabber:x:data", ["type": "submit"])]
                                )
                            ]
                        )
                    )
                    while true {
                        let answer = try await client.nextElement(timeout: .seconds(30))
                        guard answer.name == "iq", answer.id == id else { continue }
                        guard answer.type == "result" else {
                            return .failure(Failure.refused("unlocking \(room): \(answer.serialized(parentNamespace: Namespace.client))"))
                        }
                        break
                    }
                }
                return .success(took)
            }
        } catch {
            return .failure(error)
        }
    }

    /// Leaves `room`; whether the server confirmed it (the unavailable self-presence).
    static func leave(_ client: XMPPClient, room: String, nick: String) async -> Bool {
        let full = "\(room)/\(nick)"
        client.send(XMLElement("presence", namespace: Namespace.client, ["to": full, "type": "unavailable"]))
        do {
            while true {
                let element = try await client.nextElement(timeout: .seconds(30))
                if element.name == "presence", element[attribute: "from"] == full, element.type == "unavailable" { return true }
            }
        } catch {
            return false
        }
    }

    /// Occupant `k` of room `r` is client `r * roomSize + k`, nick `o<k>`; a bounded
    /// number join at once.
    static func joinAll(
        _ pairs: [(room: Int, occupant: Int)], clients: [XMPPClient], rooms: [String], roomSize: Int, counters: LiveCounters,
        concurrency: Int = 32
    ) async -> (times: [UInt64], failures: Int) {
        var times: [UInt64] = []
        var failures = 0
        await withTaskGroup(of: Result<UInt64, any Error>.self) { group in
            var next = 0
            var running = 0
            while next < pairs.count || running > 0 {
                while next < pairs.count, running < concurrency {
                    let (room, occupant) = pairs[next]
                    next += 1
                    running += 1
                    group.addTask {
                        await join(clients[room * roomSize + occupant], room: rooms[room], nick: "o\(occupant)", create: false)
                    }
                }
                guard let result = await group.next() else { break }
                running -= 1
                counters.joined.add(1, ordering: .relaxed)
                switch result {
                case .success(let time): times.append(time)
                case .failure: failures += 1
                }
            }
        }
        return (times, failures)
    }
}

/// Reads one client's stream during the run: every room message from the bench is
/// timed; those sent inside the window are kept.
enum Receiver {
    /// The times to deliver, and whether the server ended the session meanwhile.
    static func read(_ client: XMPPClient, window: Window, until stop: UInt64, counters: LiveCounters) async -> (latencies: [UInt64], ended: Bool) {
        var latencies: [UInt64] = []
        while true {
            let now = monotonicNanoseconds()
            guard now < stop, let event = await client.next(timeout: .nanoseconds(Int64(stop - now))) else { break }
            if event == .streamClosed || event == .disconnected { return (latencies, true) }
            guard case .element(let element) = event, element.name == "message",
                let body = element.child("body")?.text, body.hasPrefix("bench|")
            else { continue }
            let arrived = monotonicNanoseconds()
            counters.received.add(1, ordering: .relaxed)
            let fields = body.split(separator: "|")
            guard fields.count == 4, let sent = UInt64(fields[3]), arrived >= sent else { continue }
            if window.contains(sent) { latencies.append(arrived - sent) }
        }
        return (latencies, false)
    }
}

/// Sends a room's messages on schedule: message k at `start + k / rate`, by the
/// senders in turn; returns how many were sent inside the window.
enum Sender {
    static func send(
        _ clients: [XMPPClient], room: String, index: Int, rate: Double, from start: UInt64, until end: UInt64,
        window: Window, counters: LiveCounters
    ) async -> Int {
        var measured = 0
        var sequence = 0
        let interval = 1e9 / rate
        while true {
            let due = start + UInt64(Double(sequence) * interval)
            guard due < end else { break }
            await sleep(until: due)
            let now = monotonicNanoseconds()
            clients[sequence % clients.count].send(
                XMLElement(
                    "message", namespace: Namespace.client, ["to": room, "type": "groupchat"],
                    children: [XMLElement("body", namespace: Namespace.client, text: "bench|\(index)|\(sequence)|\(now)")]
                )
            )
            if window.contains(now) { measured += 1 }
            counters.sent.add(1, ordering: .relaxed)
            sequence += 1
        }
        return measured
    }
}
