import Cluster
import Foundation
import MUC
import MUCService
import Storage
import StoragePostgres
import Synchronization
import Testing
import XMPPCore

/// A message routed to its room again after the room moved or its owner died (a link
/// frame not yet acknowledged is sent again) is not broadcast twice when the room has
/// it already; a client sending the same id again is a new message.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .serialized, .timeLimit(.minutes(1)))
struct RoomDuplicateInputTests {
    @Test func aMessageRoutedAgainAfterAMoveIsNotBroadcastTwice() async throws {
        let (node, muc, _, output, writer) = try await RoomInputTimeoutTests.service(prefix: "dup-")
        let romeo = try JID("romeo@localhost/desk")
        let room = try JID("\(node)@conference.localhost")
        var join = XMLElement("presence", namespace: Namespace.client, ["from": romeo.description, "to": "\(room)/Romeo"])
        join.append(XMLElement("x", namespace: Namespace.muc))
        muc.handle(RoomInput(stanza: join, real: romeo, home: node))
        func message(_ id: String) -> XMLElement {
            var message = XMLElement(
                "message", namespace: Namespace.client, ["from": romeo.description, "to": room.description, "type": "groupchat", "id": id]
            )
            message.append(XMLElement("body", namespace: Namespace.client, text: "hello"))
            return message
        }
        func echoes(_ id: String) -> Int {
            output.sent.withLock { $0.filter { $0.name == "message" && $0.id == id && $0.type == "groupchat" }.count }
        }
        muc.handle(RoomInput(stanza: message("m1"), real: romeo, home: node, hops: 1))
        try await eventually { echoes("m1") == 1 }
        // The same frame routed again (hops 2): the room has it in its history.
        muc.handle(RoomInput(stanza: message("m1"), real: romeo, home: node, hops: 2))
        // A client that sends the same id again sends a new message (hops 1).
        muc.handle(RoomInput(stanza: message("m1"), real: romeo, home: node, hops: 1))
        try await eventually { echoes("m1") == 2 }
        #expect(muc.counters.duplicatesDropped == 1)
        muc.finishWrites()
        await writer.value
    }

    func eventually(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TestFailure("timed out") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
