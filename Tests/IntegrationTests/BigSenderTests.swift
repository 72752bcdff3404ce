import NIOCore
import ServerRuntime
import Testing
import XMPPCore
import XMPPStream

/// A client that writes into a room as fast as TCP lets it: the node reads it at its
/// shaper's rate (burst, then stanzas a second) instead of taking everything at once; the
/// client is not ended, none of its messages is lost or reordered, and an occupant of
/// another room is served while it is held back.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(3)))
struct BigSenderTests {
    let busy = "bigsender\(UInt32.random(in: 0...UInt32.max))@conference.localhost"
    let quiet = "bigsender\(UInt32.random(in: 0...UInt32.max))@conference.localhost"

    @Test func aClientWritingAsFastAsTCPLetsItIsReadAtItsShapersRate() async throws {
        let (a, b, c) = (
            try await TestDatabase.shared.makeAccount(), try await TestDatabase.shared.makeAccount(), try await TestDatabase.shared.makeAccount()
        )
        let rate = 200
        let burst = 200
        let count = 1400
        try await withNode({
            $0.limits.sessionStanzasPerSecond = rate
            $0.limits.sessionBurstStanzas = burst
        }) { node in
            let sender = try await node.login(a)
            try await sender.enter(busy, nick: "sender", create: true)
            let reader = try await node.login(b)
            try await reader.enter(busy, nick: "reader")
            let neighbour = try await node.login(c)
            try await neighbour.enter(quiet, nick: "neighbour", create: true)

            // Everything at once: what the node does not read waits in the sockets' buffers.
            let start = ContinuousClock.now
            for index in 0..<count {
                sender.send(
                    XMLElement(
                        "message", namespace: Namespace.client, ["to": busy, "type": "groupchat", "id": "m\(index)"],
                        children: [XMLElement("body", namespace: Namespace.client, text: "message \(index)")]))
            }
            var received: [String] = []
            func read(until done: () -> Bool) async throws {
                while !done() {
                    let element = try await reader.receive(timeout: .seconds(30)) { $0.name == "message" && $0.type == "groupchat" }
                    if let id = element.id { received.append(id) }
                }
            }
            try await read { !received.isEmpty }

            // Another room's occupant is answered while the sender is held back.
            neighbour.send(
                XMLElement(
                    "message", namespace: Namespace.client, ["to": quiet, "type": "groupchat", "id": "hello"],
                    children: [XMLElement("body", namespace: Namespace.client, text: "anyone?")]))
            _ = try await neighbour.receive { $0.name == "message" && $0.id == "hello" && $0.type == "groupchat" }
            // … while the sender's messages were still coming through.
            for event in reader.drain() {
                if case .element(let element) = event, element.name == "message", element.type == "groupchat", let id = element.id {
                    received.append(id)
                }
            }
            #expect(received.count < count, "the neighbour was answered only after all \(count) messages had come through")

            try await read { received.count == count }
            let took = ContinuousClock.now - start
            // The shaper's bucket holds at most the burst when the flood starts (it is full
            // from the login on, and capped), then gains `rate` a second: the last message
            // cannot be handled sooner than (count - burst) / rate seconds after the first
            // was written. A bound below: a slower machine only takes longer.
            let least = Double(count - burst) / Double(rate)
            #expect(
                took >= .milliseconds(Int64(least * 1000)),
                "\(count) messages came through in \(took): faster than \(rate) a second after a burst of \(burst)")
            #expect(received == (0..<count).map { "m\($0)" }, "the reader missed or reordered messages")

            // The sender was slowed, not ended: it is answered, and the node counted it.
            #expect(try await sender.ping().type == "result")
            let text = try await AdminHTTPTests.get("/metrics", port: try #require(node.ports.http)).body
            #expect((AdminHTTPTests.sample("conclave_session_shaping_delays_total", in: text) ?? 0) >= 1)
            #expect((AdminHTTPTests.sample("conclave_shaped_sessions_ended_total", in: text) ?? 0) == 0)
            await sender.close()
            await reader.close()
            await neighbour.close()
        }
    }
}
