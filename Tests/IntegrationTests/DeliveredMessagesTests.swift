import MUCService
@testable import ServerRuntime
import Testing
import XMPPCore

/// A room's message sent again (its owner died before it answered the sender) reaches
/// only the recipients this node did not deliver it to the first time.
struct DeliveredMessagesTests {
    @Test func aReplayReachesOnlyThoseThatMissedTheMessage() throws {
        let delivered = DeliveredMessages()
        var message = XMLElement(
            "message", namespace: Namespace.client, ["from": "room@conference.localhost/Romeo", "type": "groupchat", "id": "m1"])
        message.append(XMLElement("body", namespace: Namespace.client, text: "hello"))
        let (juliet, nurse, tybalt) = (try JID("juliet@localhost/a"), try JID("nurse@localhost/b"), try JID("tybalt@localhost/c"))
        delivered.note(message, to: [juliet, nurse])
        let replay = try #require(MUCInternal.unreplayed(MUCInternal.replayed(message)))
        #expect(replay == message, "the marker comes off")
        #expect(delivered.missed(replay, among: [juliet, nurse, tybalt]) == [tybalt])
        #expect(delivered.missed(replay, among: [juliet, nurse, tybalt]) == [], "a second replay reaches nobody")
        #expect(MUCInternal.unreplayed(message) == nil, "an ordinary message is no replay")
    }
}
