import NIOCore
import ServerRuntime
import Testing
import XMPPCore
import XMPPStream

/// An occupant that stops reading while its room carries a flood: its session is ended
/// once its unread output passes the bound, the room leaves it (the others see it go), and
/// the occupants who read get every message, in order — the room never waits for it.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(3)))
struct SlowConsumerTests {
    let room = "slow\(UInt32.random(in: 0...UInt32.max))@conference.localhost"

    @Test func anOccupantThatDoesNotReadIsEndedAndTheOthersGetEverything() async throws {
        let (a, b, c) = (
            try await TestDatabase.shared.makeAccount(), try await TestDatabase.shared.makeAccount(), try await TestDatabase.shared.makeAccount()
        )
        try await withNode({
            $0.limits.maxUnsentBytes = 256 * 1024
            // The sender pushes many MiB (the kernel's buffers fill first): not shaped.
            $0.limits.sessionBytesPerSecond = 0
        }) { node in
            let sender = try await node.login(a)
            try await sender.enter(room, nick: "sender", create: true)
            let reader = try await node.login(b)
            try await reader.enter(room, nick: "reader")
            let stalled = try await node.login(c)
            try await stalled.enter(room, nick: "stalled")
            _ = try await reader.receive { $0.name == "presence" && $0[attribute: "from"] == "\(room)/stalled" }
            try await stalled.setReading(false)

            let body = String(repeating: "x", count: 8 * 1024)
            var sent = 0
            var gone = false
            var received: [String] = []
            // At most 64 MiB to each occupant: far more than the kernel's buffers and the bound.
            while sent < 8192, !gone {
                for _ in 0..<64 {
                    sender.send(
                        XMLElement(
                            "message", namespace: Namespace.client, ["to": room, "type": "groupchat", "id": "m\(sent)"],
                            children: [XMLElement("body", namespace: Namespace.client, text: body)]))
                    sent += 1
                }
                // A round trip keeps the sender from running far ahead; the reader reads on.
                _ = try await sender.ping()
                for event in reader.drain() {
                    guard case .element(let element) = event else { continue }
                    if element.name == "message", element.type == "groupchat", let id = element.id { received.append(id) }
                    if element.name == "presence", element[attribute: "from"] == "\(room)/stalled", element.type == "unavailable" { gone = true }
                }
                _ = sender.drain()
            }
            #expect(gone, "the occupant that does not read was never ended (\(sent) messages sent)")
            // The reader gets every message, in order, the last one included.
            let last = "m\(sent - 1)"
            while received.last != last {
                let element = try await reader.receive(timeout: .seconds(30)) { $0.name == "message" && $0.type == "groupchat" }
                if let id = element.id { received.append(id) }
            }
            #expect(received == (0..<sent).map { "m\($0)" }, "the reader missed or reordered messages")
            let text = try await AdminHTTPTests.get("/metrics", port: try #require(node.ports.http)).body
            #expect((AdminHTTPTests.sample("conclave_slow_consumers_ended_total", in: text) ?? 0) >= 1)
            // The stalled client, reading again, finds its stream ended with a stream error.
            try await stalled.setReading(true)
            try await stalled.expectEnd(timeout: .seconds(30))
            await sender.close()
            await reader.close()
        }
    }
}
