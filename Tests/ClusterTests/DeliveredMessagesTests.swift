import Cluster
import Testing
import XMPPCore

/// A room's message sent again (its owner died before it answered the sender) reaches
/// only the recipients this node did not deliver it to the first time.
struct DeliveredMessagesTests {
    @Test func aReplayReachesOnlyThoseThatMissedTheMessage() throws {
        let delivered = DeliveredMessages()
        var message = XMLElement("message", namespace: Namespace.client, ["from": "room@conference.localhost/Romeo", "type": "groupchat", "id": "m1"])
        message.append(XMLElement("body", namespace: Namespace.client, text: "hello"))
        let (juliet, nurse, tybalt) = (try JID("juliet@localhost/a"), try JID("nurse@localhost/b"), try JID("tybalt@localhost/c"))
        let key = StanzaCopies.MessageKey(room: "room@conference.localhost", id: "m1")
        let first = StanzaCopies(stanza: PreparedStanza(message), recipients: [juliet, nurse], message: key)
        #expect(delivered.toDeliver(first)?.recipients == [juliet, nurse], "the first copies all go")
        var replay = first
        replay.recipients = [juliet, nurse, tybalt]
        replay.replay = true
        #expect(delivered.toDeliver(replay)?.recipients == [tybalt])
        #expect(delivered.toDeliver(replay) == nil, "a second replay reaches nobody")
        let other = StanzaCopies(stanza: PreparedStanza(message), recipients: [juliet], message: key)
        #expect(delivered.toDeliver(other)?.recipients == [juliet], "an ordinary message is no replay")
    }
}
