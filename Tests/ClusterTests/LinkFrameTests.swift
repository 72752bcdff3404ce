@testable import Cluster
import Testing
import XMPPCore

/// What an authenticated peer sends is still checked where the receiving node relies on
/// it: a frame that is not what its kind says is not taken (the link skips it and goes on,
/// `NodeLinkHardeningTests`), and never crashes the node.
@Suite struct LinkFrameTests {
    static func frame(_ name: String, _ attributes: [String: String], _ children: [XMLElement] = []) -> XMLElement {
        var element = XMLElement(name, namespace: Namespace.client, children: children)
        element[attribute: "seq"] = "7"
        for (key, value) in attributes.sorted(by: { $0.key < $1.key }) { element[attribute: key] = value }
        return element
    }

    static func payload(_ text: String) -> XMLElement { XMLElement("b", namespace: Namespace.client, text: text) }

    @Test func deliverFramesWhosePayloadIsNotAStanzaAreRefused() {
        let recipient = XMLElement("r", namespace: Namespace.client, ["j": "romeo@localhost/a"])
        for text in ["not base64 !!", "", Base64.encode("<x/>"), Base64.encode("<message"), Base64.encode(String(repeating: "A", count: 4096))] {
            #expect(LinkFrame.parse(Self.frame("deliver", [:], [recipient, Self.payload(text)])) == nil, "\(text.prefix(20))")
        }
        #expect(LinkFrame.parse(Self.frame("deliver", [:], [recipient])) == nil, "no payload")
        #expect(LinkFrame.parse(Self.frame("deliver", ["seq": "x"], [recipient, Self.payload(Base64.encode("<message/>"))])) == nil)
    }

    @Test func aDeliverFrameWithoutRecipientsOrWithEmptyOnesDeliversToNobody() throws {
        let empty = XMLElement("r", namespace: Namespace.client, ["j": ""])
        let parsed = try #require(LinkFrame.parse(Self.frame("deliver", [:], [empty, Self.payload(Base64.encode("<message/>"))])))
        guard case .deliver(let copies) = parsed.frame else {
            Issue.record("not a deliver frame")
            return
        }
        #expect(copies.recipients.isEmpty)
    }

    @Test func typedFramesMissingWhatTheyNeedAreRefused() {
        let room = "room@conference.localhost", real = "romeo@localhost/a"
        let incomplete: [XMLElement] = [
            Self.frame("session-ended", ["room": room, "real": real, "home": "node1"]),  // no token
            Self.frame("session-ended", ["room": room, "real": real, "token": "3"]),  // no home
            Self.frame("session-ended", ["room": "@", "real": real, "home": "node1", "token": "3"]),
            Self.frame("session-ended", ["room": room, "real": real, "home": "node1", "token": "-1"]),
            Self.frame("session-left", [:]),
            Self.frame("session-left", ["token": "many"]),
            Self.frame("membership", ["room": room]),
            Self.frame("membership", ["room": room, "real": "a@b@c/"]),
        ]
        for element in incomplete {
            #expect(LinkFrame.parse(element) == nil, "\(element)")
        }
    }
}
