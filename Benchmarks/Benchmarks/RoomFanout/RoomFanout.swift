// One groupchat message to a room of `occupantCount` occupants, counted per
// delivered copy: each scaled iteration is one copy, so a scaled loop of 1,000 is
// 1,000 / occupantCount messages. Whatever a message costs once (the room's
// stanza-id and occupant-id, the history entry, the effects arrays) is spread over
// its copies, as it is in the server.
import AllocationBenchmarkSupport
import Benchmark
import Cluster
import MUC
import NIOCore
import XMPPCore
import XMPPStream

let occupantCount = 100
let roomJID = try! JID("lounge@conference.example.org")

/// The same message as the parser benchmark's, as the room receives it.
let incoming = XMLElement(
    "message",
    namespace: Namespace.client,
    ["to": roomJID.description, "type": "groupchat", "id": "a1b2c3d4-e5f6-4711-9c2d-000000000042"],
    children: [
        XMLElement("body", namespace: Namespace.client, text: "Has anyone looked at the deploy logs from last night yet?"),
        XMLElement("active", namespace: "http://jabber.org/protocol/chatstates"),
    ]
)

/// Fixed clock and identifiers. The server makes a fresh UUID string per message
/// (about 0.02 allocations per copy at 100 occupants), which a constant leaves out.
let environment = RoomEnvironment(
    now: { 1_750_000_000 },
    makeID: { "5f0c2b7e-9d41-4c3a-8e6f-2a7b1c9d0e34" },
    occupantID: { _, real in "occ-" + real.bare.description }
)

/// A room with `occupantCount` participants who joined with a plain presence, and
/// the real JID of the one who speaks.
final class Fixture {
    var room: Room
    let sender: JID
    let allocator = ByteBufferAllocator()
    /// Where each occupant's session is, as MUCService keeps it (`Slot.homes`).
    let homes: [JID: String]
    /// The sessions of this node, as LocalRouter keeps them.
    let sessions: Set<JID>
    let nodeName = "node-1"

    init() {
        var room = Room(jid: roomJID)
        room.occupants = (0..<occupantCount).map { index in
            let real = try! JID("user\(index)@example.org/laptop-\(index)")
            return Occupant(
                nick: "user\(index)", realJID: real, role: .participant,
                presence: XMLElement("presence", namespace: Namespace.client),
                occupantID: environment.occupantID(roomJID, real)
            )
        }
        self.room = room
        sender = room.occupants[0].realJID
        homes = Dictionary(uniqueKeysWithValues: room.occupants.map { ($0.realJID, "node-1") })
        sessions = Set(room.occupants.map(\.realJID))
        // Fill the history so that every measured message finds it in steady state.
        for _ in 0..<(room.configuration.historyLength + 1) { _ = handle() }
        precondition(handle().stanzas.count == occupantCount, "every occupant gets a copy")
    }

    func handle() -> RoomEffects {
        room.handle(incoming, from: sender, environment: environment)
    }

    var messagesPerScaledLoop: Int { 1_000 / occupantCount }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = allocationBenchmarkConfiguration(warmupIterations: 5)

    // The room alone: Room.handle makes one broadcast (a stanza and its recipients).
    let logic = Fixture()
    Benchmark("Room fan-out, \(occupantCount) occupants: Room.handle, per delivered copy") { benchmark in
        for _ in 0..<logic.messagesPerScaledLoop {
            blackHole(logic.handle())
        }
    }

    // The room and the bytes: each copy serialised on its own and put in a
    // ByteBuffer, as C2SConnection.send(_:) does with a stanza given as an element.
    let bytes = Fixture()
    Benchmark("Room fan-out, \(occupantCount) occupants: Room.handle + serialise to ByteBuffer, per delivered copy") {
        benchmark in
        for _ in 0..<bytes.messagesPerScaledLoop {
            for stanza in bytes.handle().stanzas {
                blackHole(bytes.allocator.buffer(string: stanza.serialized(parentNamespace: Namespace.client)))
            }
        }
    }

    // The bytes of one copy alone: the room's message prepared once (outside the
    // measurement), then one ByteBuffer per recipient.
    let single = Fixture()
    var broadcast = single.handle().stanzas[0]
    broadcast[attribute: "to"] = nil
    let prepared = PreparedStanza(broadcast)
    let recipients = single.room.occupants.map(\.realJID)
    Benchmark("PreparedStanza.buffer(to:), per copy") { benchmark in
        for index in benchmark.scaledIterations {
            blackHole(prepared.buffer(to: recipients[index % recipients.count]))
        }
    }

    // What a connection does with a copy: written into its output buffer of this tick,
    // whose memory an earlier tick left (C2SConnection.appendOutput).
    var output = ByteBufferAllocator().buffer(capacity: 1024)
    Benchmark("PreparedStanza.write(to:into:) a reused output buffer, per copy") { benchmark in
        for index in benchmark.scaledIterations {
            output.clear()
            prepared.write(to: recipients[index % recipients.count], into: &output)
            blackHole(output.readableBytes)
        }
    }

    // The steps the server takes between the room and the socket, copied here from
    // MUCService.outgoing (the room's broadcast serialized once as a PreparedStanza and
    // its recipients split by the node that holds them: one piece per node),
    // LocalRouter.deliverLocal (the copies listed per session) and
    // C2SConnection.appendOutput (each copy written into its session's output buffer,
    // reused from an earlier tick). Left out: locks, metrics counters, the hop to the
    // sessions' event loop, NIO's write and the flush.
    let server = Fixture()
    var outputs = [JID: ByteBuffer]()
    for recipient in server.room.occupants.map(\.realJID) { outputs[recipient] = ByteBufferAllocator().buffer(capacity: 1024) }
    Benchmark("Room fan-out, \(occupantCount) occupants: server path (room, split per node, PreparedStanza), per delivered copy") {
        benchmark in
        for _ in 0..<server.messagesPerScaledLoop {
            let effects = server.handle()
            var pieces: [(prepared: PreparedStanza, node: String?, recipients: [JID])] = []
            for delivery in effects.output {
                guard case .broadcast(let stanza, let recipients) = delivery else { continue }
                let prepared = PreparedStanza(stanza)
                var nodes: [String?] = []
                var byNode: [String?: [JID]] = [:]
                for recipient in recipients {
                    let home = server.homes[recipient]
                    if byNode[home] == nil { nodes.append(home) }
                    byNode[home, default: []].append(recipient)
                }
                for home in nodes { pieces.append((prepared, home, byNode[home] ?? [])) }
            }
            for piece in pieces where piece.node == server.nodeName {
                let sessions = piece.recipients.map { server.sessions.contains($0) ? $0 : nil }
                var copies: [(session: JID, recipient: JID)] = []
                copies.reserveCapacity(piece.recipients.count)
                for (recipient, session) in zip(piece.recipients, sessions) {
                    guard let session else { continue }
                    copies.append((session, recipient))
                }
                for copy in copies {
                    outputs[copy.session]!.clear()
                    piece.prepared.write(to: copy.recipient, into: &outputs[copy.session]!)
                }
                blackHole(copies)
            }
        }
    }

    // The remote path: every occupant's session on another node. The room's node makes
    // the broadcast's PreparedStanza and encodes one `deliver` frame with the recipients
    // (LinkFrameCodec.encode, as OutboundLink.enqueue does); the recipients' node reads it
    // (LinkFrameCodec.decode, as InboundLinkHandler.receiveFrames does: no XML parsed),
    // finds each recipient's session and writes the copy into its reused output buffer.
    // Left out as above, and the TLS, the socket and the acknowledgement.
    let remote = Fixture()
    var remoteOutputs = [JID: ByteBuffer]()
    for recipient in remote.room.occupants.map(\.realJID) { remoteOutputs[recipient] = ByteBufferAllocator().buffer(capacity: 1024) }
    Benchmark("Room fan-out, \(occupantCount) occupants: remote path (room, deliver frame encoded, decoded on the recipients' node, written), per delivered copy") {
        benchmark in
        for _ in 0..<remote.messagesPerScaledLoop {
            let effects = remote.handle()
            for delivery in effects.output {
                guard case .broadcast(let stanza, let recipients) = delivery else { continue }
                let copies = StanzaCopies(stanza: PreparedStanza(stanza), recipients: recipients)
                let frame = LinkFrameCodec.encode(.deliver(copies), seq: 1)
                let decoded = frame.withUnsafeBytes { LinkFrameCodec.decode(UnsafeRawBufferPointer(rebasing: $0[LinkFrameCodec.lengthBytes...])) }
                guard case .frame(_, .deliver(let received)) = decoded else { fatalError("the frame reads back") }
                for recipient in received.recipients where remote.sessions.contains(recipient) {
                    remoteOutputs[recipient]!.clear()
                    received.stanza.write(to: recipient, into: &remoteOutputs[recipient]!)
                }
                blackHole(received)
            }
        }
    }
}
