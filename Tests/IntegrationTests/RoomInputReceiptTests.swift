import Foundation
import MUC
import MUCService
import Synchronization
import Testing
import XMPPCore

/// Room input that came over a node link carries a receipt; the link acknowledges the
/// frame to its sender only once the receipt is released. A room lets it go when it has
/// handled the input and the node its answer goes to has that answer — not while it holds
/// the input back — so that input a node took but never handled, or whose answer never
/// left (it was paused or killed first), is still its sender's to route again.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .serialized, .timeLimit(.minutes(1)))
struct RoomInputReceiptTests {
    final class Released: Sendable {
        let value = Atomic<Bool>(false)
        var isSet: Bool { value.load(ordering: .acquiring) }
    }

    final class Receipt: Sendable {
        let released: Released
        init(_ released: Released) { self.released = released }
        deinit { released.value.store(true, ordering: .releasing) }
    }

    static func input(_ stanza: XMLElement, from real: JID, home: String, released: Released) -> RoomInput {
        var input = RoomInput(stanza: stanza, real: real, home: home, hops: 1)
        input.receipt = Receipt(released)
        return input
    }

    @Test func aRoomReleasesTheReceiptOnlyOnceItHandledTheInput() async throws {
        let (node, muc, placement, output, writer) = try await RoomInputTimeoutTests.service(prefix: "receipt-")
        let romeo = try JID("romeo@localhost/desk")
        let room = try JID("\(node)@conference.localhost")
        var join = XMLElement("presence", namespace: Namespace.client, ["from": romeo.description, "to": "\(room)/Romeo"])
        join.append(XMLElement("x", namespace: Namespace.muc))
        let joined = Released()
        // Romeo's session is on another node ("node-b"): the answer travels over a link.
        muc.handle(Self.input(join, from: romeo, home: "node-b", released: joined))
        try await RoomInputTimeoutTests().eventually("Romeo in the room") {
            output.sent.withLock { $0.contains { $0.name == "presence" && $0.type == nil } } ? true : nil
        }
        #expect(!joined.isSet, "handled, but its answer has not reached node-b yet")
        output.acknowledgeAll()
        #expect(joined.isSet, "the join was handled and answered: its receipt is released")

        // The lease cannot be confirmed: the room holds the message back, and its
        // receipt with it.
        placement.serving.withLock { $0 = false }
        var message = XMLElement(
            "message", namespace: Namespace.client, ["from": romeo.description, "to": room.description, "type": "groupchat", "id": "m1"]
        )
        message.append(XMLElement("body", namespace: Namespace.client, text: "hello"))
        let said = Released()
        muc.handle(Self.input(message, from: romeo, home: "node-b", released: said))
        #expect(!said.isSet, "held, not handled: the sender keeps the frame")
        #expect(!output.sent.withLock { $0.contains { $0.name == "message" && $0.id == "m1" } })

        // The lease is confirmed again: the room handles it, and only then lets it go.
        placement.serving.withLock { $0 = true }
        muc.resumeHeld()
        #expect(output.sent.withLock { $0.contains { $0.name == "message" && $0.id == "m1" && $0.type == "groupchat" } })
        #expect(!said.isSet, "its echo has not reached node-b yet")
        output.acknowledgeAll()
        #expect(said.isSet)
        muc.finishWrites()
        await writer.value
    }
}
