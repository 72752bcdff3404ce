import NIOCore
import Testing
import XMPPCore

@testable import XMPPStream

/// A room's message is serialized once and each copy gets its recipient's address: what
/// a client reads must be the same stanza as if it had been serialized for it alone.
@Suite struct PreparedStanzaTests {
    static let message = XMLElement(
        "message", namespace: Namespace.client, ["from": "room@conference.localhost/nick", "type": "groupchat", "to": "someone@localhost/x"],
        children: [XMLElement("body", namespace: Namespace.client, text: "a < b & 'c'")]
    )

    /// The serialization of `message` with `to` as its first attribute.
    static func expected(_ message: XMLElement, to recipient: String) -> String {
        var element = message
        element[attribute: "to"] = nil
        let rest = element.serialized(parentNamespace: Namespace.client).dropFirst("<\(message.name)".count)
        return "<\(message.name) to='\(XMLEscaping.escapeAttribute(recipient))'" + rest
    }

    @Test func eachCopyIsTheStanzaAddressedToItsRecipient() throws {
        let prepared = PreparedStanza(Self.message)
        for text in ["romeo@localhost/balcony", "localhost", "juliet@localhost", "nurse@localhost/it's <\"me\"> & you"] {
            let recipient = try JID(text)
            let buffer = prepared.buffer(to: recipient)
            let written = String(buffer: buffer)
            #expect(written == Self.expected(Self.message, to: recipient.description))
            // The stanza's own `to` is replaced, not repeated.
            #expect(written.split(separator: " to=").count == 2)
            #expect(!written.contains("someone@localhost"))
        }
        #expect(prepared.name == "message")
        #expect(!prepared.isError)
    }

    @Test func copiesAppendToAnOutputBuffer() throws {
        let prepared = PreparedStanza(Self.message)
        var output = ByteBufferAllocator().buffer(string: "<presence/>")
        prepared.write(to: try JID("romeo@localhost/a"), into: &output)
        prepared.write(to: try JID("juliet@localhost/b"), into: &output)
        #expect(
            String(buffer: output)
                == "<presence/>" + Self.expected(Self.message, to: "romeo@localhost/a") + Self.expected(Self.message, to: "juliet@localhost/b")
        )
    }

    @Test func anErrorStanzaIsCountedAsOne() throws {
        var error = Self.message
        error[attribute: "type"] = "error"
        #expect(PreparedStanza(error).isError)
    }
}

/// What another node sends: the bytes of a prepared stanza, taken as they are.
@Suite struct PreparedStanzaFromBytesTests {
    @Test func theBytesOfAPreparedStanzaGiveTheSameStanza() throws {
        let prepared = PreparedStanza(PreparedStanzaTests.message)
        let received = try #require(PreparedStanza(bytes: prepared.bytes))
        #expect(received == prepared)
        var error = PreparedStanzaTests.message
        error[attribute: "type"] = "error"
        #expect(PreparedStanza(bytes: PreparedStanza(error).bytes)?.isError == true)
        let presence = XMLElement("presence", namespace: Namespace.client)
        #expect(PreparedStanza(bytes: PreparedStanza(presence).bytes)?.name == "presence")
    }

    @Test func bytesThatDoNotStartAsAStanzaAreRefused() {
        for text in ["", "<", "hello", "<stream:stream>", "<messages to='x'/>", "<message", "<iq type='get'/", "<x/>"] {
            #expect(PreparedStanza(bytes: Array(text.utf8)) == nil, "\(text)")
        }
    }
}
