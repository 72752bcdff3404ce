import Foundation
import MUCService
import Synchronization
import Testing
import XMPPCore

/// The room's owner tells a session's node when the session enters or leaves the room;
/// an occupant that joins again from another node (its client reconnected there before
/// the first node was declared gone) has left the first node and entered the second.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(2)))
struct RoomMembershipNoticeTests {
    @Test func aJoinFromAnotherNodeMovesTheMembership() async throws {
        let (node, muc, _, output, writer) = try await RoomInputTimeoutTests.service(prefix: "notice-")
        let room = try JID("notice\(UInt32.random(in: 0...UInt32.max))@conference.localhost")
        let romeo = try JID("romeo@localhost/phone")
        func join(from home: String) {
            let presence = XMLElement(
                "presence", namespace: Namespace.client, ["from": romeo.description, "to": "\(room)/Romeo"],
                children: [XMLElement("x", namespace: Namespace.muc)])
            muc.handle(RoomInput(stanza: presence, real: romeo, home: home))
        }
        func told() -> [String] { output.memberships.withLock { $0 } }
        func eventually(_ what: String, _ condition: () -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(10)
            while !condition() {
                guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting for \(what): \(told())") }
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        join(from: node)
        try await eventually("the first join") { told() == ["+\(node) \(romeo)"] }
        join(from: "elsewhere")
        try await eventually("the join from elsewhere") { told().count == 3 }
        #expect(told() == ["+\(node) \(romeo)", "-\(node) \(romeo)", "+elsewhere \(romeo)"])
        // Leaving tells the node it is on now.
        muc.handle(
            RoomInput(
                stanza: XMLElement("presence", namespace: Namespace.client, ["from": romeo.description, "to": "\(room)/Romeo", "type": "unavailable"]),
                real: romeo, home: "elsewhere"))
        try await eventually("the leave") { told().count == 4 }
        #expect(told().last == "-elsewhere \(romeo)")
        muc.finishWrites()
        await writer.value
    }
}
