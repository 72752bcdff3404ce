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
/// frame not yet acknowledged is sent again) is not handled twice when the room has it
/// already: the stored message goes out again, marked as a replay (the recipients' nodes
/// deliver it only to those that missed it), with the stanza-id it had. A client sending
/// the same id again sends a new message.
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
        func copies(_ id: String, replayed: Bool) -> [XMLElement] {
            let all = replayed ? output.replays.withLock { $0 } : output.sent.withLock { $0 }
            return all.filter { $0.name == "message" && $0.id == id && $0.type == "groupchat" }
        }
        func stanzaID(_ message: XMLElement) -> String? { message.child("stanza-id", namespace: Namespace.stanzaID)?[attribute: "id"] }
        muc.handle(RoomInput(stanza: message("m1"), real: romeo, home: node, hops: 1))
        try await eventually { copies("m1", replayed: false).count == 1 }
        // The same frame routed again (hops 2): the room has it in its history.
        muc.handle(RoomInput(stanza: message("m1"), real: romeo, home: node, hops: 2))
        // A client that sends the same id again sends a new message (hops 1).
        muc.handle(RoomInput(stanza: message("m1"), real: romeo, home: node, hops: 1))
        try await eventually { copies("m1", replayed: false).count == 2 }
        let replays = copies("m1", replayed: true)
        #expect(replays.count == 1, "sent again, marked, not handled again")
        #expect(replays.first.flatMap(stanzaID) == stanzaID(copies("m1", replayed: false)[0]), "with the stanza-id it had")
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
