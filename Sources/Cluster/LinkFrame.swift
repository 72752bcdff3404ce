public import XMPPCore

/// What travels on a node link.
public enum LinkFrame: Sendable, Hashable {
    /// A stanza for a room, to its owner: sent by the session `real` held by `home`.
    /// `hops` counts forwards between nodes (a hand-over, or ring views that differ
    /// for a moment).
    case room(XMLElement, real: JID, home: String, hops: Int)
    /// The end of the session `real` (held by `home`) for `room`'s owner: it removes the
    /// occupant and answers `sessionLeft(token)` to `home`.
    case sessionEnded(room: JID, real: JID, home: String, hops: Int, token: UInt64)
    /// A room handled the end of a session the receiving node holds.
    case sessionLeft(token: UInt64)
    /// `real`, a session the receiving node holds, entered `room` or left it.
    case membership(room: JID, real: JID, entered: Bool)
    /// Room output for sessions on the receiving node: one copy per recipient, each
    /// with its own `to`. The stanza travels as the bytes the room's node serialized
    /// (base64, not XML the receiving node parses), and is written to the sessions as
    /// they are.
    case deliver(StanzaCopies)
    /// A stanza for a user whose session(s) the receiving node holds (full or bare `to`).
    case user(XMLElement)
    /// Room output for a user who is not an occupant (an invitation, an answer to an owner
    /// outside the room), full or bare `to`: every node gets it, in the room's order with
    /// the room's other output, and delivers it to its own sessions of that user only
    /// (none keeps it offline: the room's node decides that).
    case addressed(XMLElement)
    /// "Answer once your ring is `ring`": a node about to hand rooms over learns that
    /// everything the receiver sent it under the old ring has arrived.
    case barrier(id: UInt64, ring: String)
    case barrierAck(id: UInt64)

    static let namespace = Namespace.client

    /// The frame's element name, for logs.
    var kind: String {
        switch self {
        case .room: "room"
        case .sessionEnded: "session-ended"
        case .sessionLeft: "session-left"
        case .membership: "membership"
        case .deliver: "deliver"
        case .user: "user"
        case .addressed: "addressed"
        case .barrier: "barrier"
        case .barrierAck: "barrier-ack"
        }
    }

    /// The frame as an element of the link's stream.
    func element(seq: UInt64) -> XMLElement {
        switch self {
        case .room(let stanza, let real, let home, let hops):
            var element = XMLElement(
                "room", namespace: Self.namespace,
                ["seq": String(seq), "real": real.description, "home": home, "hops": String(hops)]
            )
            element.append(stanza)
            return element
        case .sessionEnded(let room, let real, let home, let hops, let token):
            return XMLElement(
                "session-ended", namespace: Self.namespace,
                [
                    "seq": String(seq), "room": room.description, "real": real.description, "home": home, "hops": String(hops),
                    "token": String(token),
                ])
        case .sessionLeft(let token):
            return XMLElement("session-left", namespace: Self.namespace, ["seq": String(seq), "token": String(token)])
        case .membership(let room, let real, let entered):
            return XMLElement(
                "membership", namespace: Self.namespace,
                ["seq": String(seq), "room": room.description, "real": real.description, "entered": entered ? "1" : "0"])
        case .deliver(let copies):
            var element = XMLElement("deliver", namespace: Self.namespace, ["seq": String(seq)])
            if let message = copies.message {
                element[attribute: "room"] = message.room
                element[attribute: "id"] = message.id
            }
            if copies.replay { element[attribute: "replay"] = "1" }
            for recipient in copies.recipients {
                element.append(XMLElement("r", namespace: Self.namespace, ["j": recipient.description]))
            }
            element.append(XMLElement("b", namespace: Self.namespace, text: Base64.encode(copies.stanza.bytes)))
            return element
        case .user(let stanza):
            var element = XMLElement("user", namespace: Self.namespace, ["seq": String(seq)])
            element.append(stanza)
            return element
        case .addressed(let stanza):
            var element = XMLElement("addressed", namespace: Self.namespace, ["seq": String(seq)])
            element.append(stanza)
            return element
        case .barrier(let id, let ring):
            return XMLElement("barrier", namespace: Self.namespace, ["seq": String(seq), "id": String(id), "ring": ring])
        case .barrierAck(let id):
            return XMLElement("barrier-ack", namespace: Self.namespace, ["seq": String(seq), "id": String(id)])
        }
    }

    /// Reads a frame; `nil` if the element is not one.
    static func parse(_ element: XMLElement) -> (seq: UInt64, frame: LinkFrame)? {
        guard let seq = element[attribute: "seq"].flatMap(UInt64.init) else { return nil }
        switch element.name {
        case "barrier":
            guard let id = element[attribute: "id"].flatMap(UInt64.init) else { return nil }
            return (seq, .barrier(id: id, ring: element[attribute: "ring"] ?? ""))
        case "barrier-ack":
            guard let id = element[attribute: "id"].flatMap(UInt64.init) else { return nil }
            return (seq, .barrierAck(id: id))
        case "session-ended":
            guard let room = element[attribute: "room"].flatMap({ try? JID($0) }),
                let real = element[attribute: "real"].flatMap({ try? JID($0) }), let home = element[attribute: "home"],
                let token = element[attribute: "token"].flatMap(UInt64.init)
            else { return nil }
            return (seq, .sessionEnded(room: room, real: real, home: home, hops: element[attribute: "hops"].flatMap(Int.init) ?? 0, token: token))
        case "session-left":
            guard let token = element[attribute: "token"].flatMap(UInt64.init) else { return nil }
            return (seq, .sessionLeft(token: token))
        case "membership":
            guard let room = element[attribute: "room"].flatMap({ try? JID($0) }),
                let real = element[attribute: "real"].flatMap({ try? JID($0) })
            else { return nil }
            return (seq, .membership(room: room, real: real, entered: element[attribute: "entered"] == "1"))
        case "deliver":
            // The stanza's bytes are not parsed here: only split after its name
            // (`PreparedStanza(bytes:)`). A peer is an authenticated node of the cluster.
            let children = element.elements
            guard let payload = children.last, payload.name == "b", let bytes = Base64.decode(payload.text),
                let stanza = PreparedStanza(bytes: bytes)
            else { return nil }
            var recipients: [JID] = []
            recipients.reserveCapacity(children.count - 1)
            // Addresses the room's node parsed and wrote out: split, not normalised again.
            for child in children where child.name == "r" {
                guard let text = child[attribute: "j"], !text.isEmpty else { continue }
                recipients.append(JID(normalized: text))
            }
            let message = element[attribute: "id"].flatMap { id in
                element[attribute: "room"].map { StanzaCopies.MessageKey(room: $0, id: id) }
            }
            return (seq, .deliver(StanzaCopies(stanza: stanza, recipients: recipients, message: message, replay: element[attribute: "replay"] == "1")))
        default:
            break
        }
        let children = element.elements
        guard let stanza = children.last(where: { $0.name != "r" }) else { return nil }
        switch element.name {
        case "room":
            guard let real = element[attribute: "real"].flatMap({ try? JID($0) }),
                let home = element[attribute: "home"]
            else { return nil }
            let hops = element[attribute: "hops"].flatMap(Int.init) ?? 0
            return (seq, .room(stanza, real: real, home: home, hops: hops))
        case "user":
            return (seq, .user(stanza))
        case "addressed":
            return (seq, .addressed(stanza))
        default:
            return nil
        }
    }
}
