public import XMPPCore

/// What travels on a node link.
public enum LinkFrame: Sendable, Hashable {
    /// A stanza for a room, to its owner: sent by the session `real` held by `home`.
    /// `hops` counts forwards between nodes (a hand-over, or ring views that differ
    /// for a moment).
    case room(XMLElement, real: JID, home: String, hops: Int)
    /// Room output for sessions on the receiving node: one copy per recipient, each
    /// with its own `to`.
    case deliver(XMLElement, recipients: [JID])
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
        case .deliver(let stanza, let recipients):
            var element = XMLElement("deliver", namespace: Self.namespace, ["seq": String(seq)])
            for recipient in recipients {
                element.append(XMLElement("r", namespace: Self.namespace, ["j": recipient.description]))
            }
            element.append(stanza)
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
        case "deliver":
            let recipients = children.filter { $0.name == "r" }.compactMap { $0[attribute: "j"].flatMap { try? JID($0) } }
            return (seq, .deliver(stanza, recipients: recipients))
        case "user":
            return (seq, .user(stanza))
        case "addressed":
            return (seq, .addressed(stanza))
        default:
            return nil
        }
    }
}
