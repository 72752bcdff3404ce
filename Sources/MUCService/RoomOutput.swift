import Foundation
import Logging
import MUC
import Storage
import Synchronization
public import XMPPCore
import XMPPXMLParser

/// A stanza for a room, with where its sender's session lives.
public struct RoomInput: Sendable {
    public var stanza: XMLElement
    /// The sender's real full JID.
    public var real: JID
    /// The node holding the sender's session.
    public var home: String
    /// How often it was forwarded between nodes.
    public var hops: Int
    /// When this node first held it back (its room activating, moving, or its lease
    /// unconfirmed): input that waits longer than the service's `inputTimeout` is
    /// refused.
    var heldSince: Duration?
    /// How often a session's end was routed again because no node could take it then.
    var retries = 0
    /// Released with the last copy of this input, once it is handled, refused or passed
    /// on: input that came over a node link is acknowledged to its sender then
    /// (`LinkReceipt`), so that its sender still holds it if this node dies first.
    public var receipt: (any AnyObject & Sendable)?

    /// A session's end (`sessionEnded(room:…)`): the token its node gets back once the
    /// room removed the occupant. Such input is not a stanza: its `stanza` only
    /// addresses the room.
    public var sessionEnd: UInt64?

    public init(stanza: XMLElement, real: JID, home: String, hops: Int = 0) {
        self.stanza = stanza
        self.real = real
        self.home = home
        self.hops = hops
    }

    /// The session `real`, held by `home`, ended: the room removes it and answers
    /// `RoomOutput.left(token:…)`.
    public static func sessionEnded(room: JID, real: JID, home: String, token: UInt64, hops: Int = 0) -> RoomInput {
        var input = RoomInput(
            stanza: XMLElement("presence", namespace: Namespace.client, ["to": room.description, "type": "unavailable"]),
            real: real, home: home, hops: hops)
        input.sessionEnd = token
        return input
    }
}

/// Where rooms live: which node should own a room now (the ring), and which nodes
/// are still reachable.
public protocol RoomPlacement: Sendable {
    var nodeName: String { get }
    /// The node that should own `room` now; `nil` when no node can.
    func owner(of room: JID) -> String?
    /// The node is alive and holds sessions.
    func isReachable(_ node: String) -> Bool
    /// This node's lease is valid: it may apply changes to rooms.
    var canServe: Bool { get }
    /// This node's incarnation: room ownership is claimed under it.
    var incarnation: Int64 { get }
    /// The node lost its lease and is registering again: the others do not count it
    /// as a member, so room output for its sessions would not reach them.
    var isRejoining: Bool { get }
    /// Returns once every live node has taken the current ring, and everything each sent
    /// this node under the previous one has arrived (or a timeout passed).
    func ringBarrier() async
}

/// Copies of one piece of a room's output for the recipients one node holds: the
/// stanza (no `to`) and, serialized once for the whole broadcast, its bytes.
public struct RoomCopies: Sendable {
    /// The stanza without `to`: for recipients who are not occupants (`node` `nil`),
    /// whose delivery needs it (offline storage, a bare JID's resources).
    public var stanza: XMLElement
    public var copies: StanzaCopies

    public var recipients: [JID] { copies.recipients }

    public init(_ stanza: XMLElement, prepared: PreparedStanza? = nil, to recipients: [JID], message: StanzaCopies.MessageKey? = nil, replay: Bool = false) {
        self.stanza = stanza
        copies = StanzaCopies(stanza: prepared ?? PreparedStanza(stanza), recipients: recipients, message: message, replay: replay)
    }

    /// A stanza with its `to`, for that recipient.
    public init?(single stanza: XMLElement) {
        guard let to = try? stanza.toJID() else { return nil }
        var stanza = stanza
        stanza[attribute: "to"] = nil
        self.init(stanza, to: [to])
    }
}

/// Where room output goes: sessions on this node or on others.
public protocol RoomOutput: Sendable {
    /// The copies for recipients held by `node`; `nil`: the recipient is not an
    /// occupant, find where it is. `keep` stays alive until `node` has the copies (its
    /// link acknowledged them): the receipt of the input they answer, so that its sender
    /// hears the input was handled only once the answer has left this node.
    func deliver(_ copies: RoomCopies, node: String?, keeping keep: (any AnyObject & Sendable)?)
    /// The room `room` handled the end of a session `node` holds (`RoomInput.sessionEnded`).
    func left(token: UInt64, room: JID, node: String)
    /// `real`, a session `node` holds, entered `room` or left it: what that node tells
    /// the room when the session ends.
    func membership(room: JID, real: JID, entered: Bool, node: String)
    /// Input this node will not handle: queued for the node that owns the room, in the
    /// order of the calls. `false`: that node cannot take it now (no link, a full queue).
    /// Called while routing is locked: must not route anything itself.
    func forward(_ input: RoomInput, to node: String) -> Bool
    /// Runs `work` soon, outside whatever locks the caller holds: where a room lets go of
    /// held output once a link acknowledged (on that link's event loop, under its locks).
    func later(_ work: @escaping @Sendable () -> Void)
}

extension RoomOutput {
    public func later(_ work: @escaping @Sendable () -> Void) {
        Task { work() }
    }

    /// One stanza, its `to` set, for a session `node` holds.
    public func deliver(single stanza: XMLElement, node: String?, keeping keep: (any AnyObject & Sendable)? = nil) {
        guard let copies = RoomCopies(single: stanza) else { return }
        deliver(copies, node: node, keeping: keep)
    }
}

/// What a room sends, in its order: copies of its stanzas, and what the nodes of its
/// occupants' sessions must know besides (membership, a session's end handled).
enum RoomOutgoing {
    case copies(RoomCopies, node: String?)
    case membership(real: JID, entered: Bool, node: String)
    case left(token: UInt64, node: String)

    var node: String? {
        switch self {
        case .copies(_, let node): node
        case .membership(_, _, let node), .left(_, let node): node
        }
    }
}
