import Foundation
public import Logging
public import MUC
public import Storage
import Synchronization
public import XMPPCore
import XMPPXMLParser

/// Runs the rooms of the MUC domain: one lock per room serialises its stanzas,
/// effects are delivered in the order the room produced them, and durable changes
/// go to the `RoomStore` in that same order through one writer.
public final class MUCService: Sendable {
    public let domain: JID
    /// Only service administrators may create rooms (others get `not-allowed`).
    public let restrictRoomCreation: Bool
    private let store: any RoomStore
    private let environment: RoomEnvironment
    private let deliver: @Sendable (XMLElement) -> Void
    private let logger: Logger
    private let rooms = Mutex<[JID: RoomBox]>([:])
    private let writes: AsyncStream<(JID, StoredRoomChange)>
    private let writer: AsyncStream<(JID, StoredRoomChange)>.Continuation

    final class RoomBox: Sendable {
        let state: Mutex<Room>
        init(_ room: Room) { state = Mutex(room) }
    }

    public init(
        domain: JID,
        store: any RoomStore,
        environment: RoomEnvironment,
        restrictRoomCreation: Bool = false,
        logger: Logger,
        deliver: @escaping @Sendable (XMLElement) -> Void
    ) {
        self.domain = domain
        self.restrictRoomCreation = restrictRoomCreation
        self.store = store
        self.environment = environment
        self.deliver = deliver
        self.logger = logger
        (writes, writer) = AsyncStream.makeStream(of: (JID, StoredRoomChange).self)
    }

    /// Loads the persistent rooms. Call before handling stanzas.
    public func load() async throws {
        let stored = try await store.loadRooms()
        var loaded: [JID: RoomBox] = [:]
        for entry in stored {
            guard let configuration = try? JSONDecoder().decode(RoomConfiguration.self, from: Data(entry.configuration.utf8))
            else {
                logger.error("room with unreadable configuration", metadata: ["room": "\(entry.jid)"])
                continue
            }
            var room = Room(
                jid: entry.jid, configuration: configuration, subject: entry.subject, subjectNick: entry.subjectNick,
                subjectStamp: entry.subjectStamp
            )
            for affiliation in entry.affiliations {
                if let value = Affiliation(rawValue: affiliation.affiliation) {
                    room.affiliations[affiliation.jid] = AffiliationEntry(
                        value, reason: affiliation.reason, nick: affiliation.nick
                    )
                }
            }
            let parser = XMLStreamParser()
            _ = try? parser.parse("<stream:stream xmlns='jabber:client' xmlns:stream='\(Namespace.stream)'>")
            for item in entry.history {
                guard let events = try? parser.parse(item.stanza) else { continue }
                for case .element(let message) in events {
                    room.history.append(HistoryEntry(message: message, stamp: item.stamp, senderNick: item.nick))
                }
            }
            loaded[entry.jid] = RoomBox(room)
        }
        rooms.withLock { $0.merge(loaded) { current, _ in current } }
        logger.info("rooms loaded", metadata: ["rooms": "\(loaded.count)"])
    }

    /// Writes durable changes until cancelled (run it for the node's lifetime).
    public func runWriter() async {
        for await (room, change) in writes {
            do {
                try await store.apply(change, to: room)
            } catch {
                logger.error(
                    "storing a room change failed", metadata: ["room": "\(room)", "error": "\(String(reflecting: error))"]
                )
            }
        }
    }

    /// Stops accepting writes; `runWriter` returns after the queued ones.
    public func finishWrites() {
        writer.finish()
    }

    public var roomCount: Int { rooms.withLock { $0.count } }

    // MARK: - Input

    /// A stanza to the MUC domain or one of its rooms, from a local session.
    public func handle(_ stanza: XMLElement, from real: JID) {
        guard let to = try? stanza.toJID() else { return }
        guard to.localpart != nil else { return handleService(stanza, from: real) }
        let roomJID = to.bare
        // Only a presence with <x xmlns='…/muc'/> creates a room (as in Prosody).
        let isJoin =
            stanza.stanzaKind == .presence && stanza.type == nil && to.resourcepart != nil
            && stanza.child("x", namespace: Namespace.muc) != nil
        var isNew = false
        var refused = false
        let box = rooms.withLock { rooms -> RoomBox? in
            if let box = rooms[roomJID] { return box }
            guard isJoin else { return nil }
            if restrictRoomCreation && !environment.isServiceAdmin(real.bare) {
                refused = true
                return nil
            }
            isNew = true
            let box = RoomBox(Room(jid: roomJID, locked: true))
            rooms[roomJID] = box
            return box
        }
        guard let box else {
            if refused {
                var reply = stanza.errorReply(StanzaError(.notAllowed, text: "only administrators may create rooms"))
                reply.append(XMLElement("x", namespace: Namespace.muc))
                deliver(reply)
                return
            }
            if stanza.type != "error", stanza.type != "result" {
                deliver(stanza.errorReply(StanzaError(.itemNotFound, text: "no such room")))
            }
            return
        }
        box.state.withLock { room in
            let effects = room.handle(stanza, from: real, environment: environment, isNew: isNew)
            apply(effects, room: room, request: stanza)
            if effects.roomEnded || (isNew && room.isEmpty) {
                rooms.withLock { rooms in
                    if rooms[roomJID] === box { rooms[roomJID] = nil }
                }
            }
        }
    }

    /// A session ended: it leaves every room it was in (before its stream closes).
    public func sessionEnded(_ real: JID) {
        let boxes = rooms.withLock { Array($0) }
        for (jid, box) in boxes {
            box.state.withLock { room in
                guard room.occupant(real: real) != nil else { return }
                let effects = room.sessionEnded(real, environment: environment)
                apply(effects, room: room, request: nil)
                if effects.roomEnded {
                    rooms.withLock { rooms in
                        if rooms[jid] === box { rooms[jid] = nil }
                    }
                }
            }
        }
    }

    /// The node is shutting down: occupants of every room are told (332) before their
    /// sessions close.
    public func systemShutdown() {
        let boxes = rooms.withLock { Array($0) }
        for (jid, box) in boxes {
            box.state.withLock { room in
                let effects = room.systemShutdown(environment: environment)
                apply(effects, room: room, request: nil)
                if effects.roomEnded {
                    rooms.withLock { rooms in
                        if rooms[jid] === box { rooms[jid] = nil }
                    }
                }
            }
        }
    }

    private func apply(_ effects: RoomEffects, room: Room, request: XMLElement?) {
        for stanza in effects.stanzas {
            var stanza = stanza
            if stanza[attribute: "from"] == nil { stanza[attribute: "from"] = request?[attribute: "to"] ?? room.jid.description }
            deliver(stanza)
        }
        for change in effects.changes {
            writer.yield((room.jid, stored(change, room: room)))
        }
    }

    private func stored(_ change: RoomChange, room: Room) -> StoredRoomChange {
        switch change {
        case .created(let configuration), .configured(let configuration):
            let json = (try? JSONEncoder().encode(configuration)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            return .configuration(json: json, persistent: configuration.persistent)
        case .affiliation(let jid, let entry):
            return .affiliation(jid, affiliation: entry.affiliation.rawValue, reason: entry.reason, nick: entry.nick)
        case .subject(let subject, let nick, let stamp):
            return .subject(subject, nick: nick, stamp: stamp)
        case .history(let entry):
            return .history(
                StoredHistoryEntry(
                    stanza: entry.message.serialized(parentNamespace: Namespace.client), stamp: entry.stamp,
                    nick: entry.senderNick
                ),
                keep: room.configuration.historyLength
            )
        case .destroyed:
            return .deleted
        }
    }

    // MARK: - The service itself

    private func handleService(_ stanza: XMLElement, from real: JID) {
        guard stanza.stanzaKind == .iq, let type = stanza.type, type == "get" || type == "set" else {
            if stanza.stanzaKind == .message, stanza.type != "error" {
                deliver(stanza.errorReply(StanzaError(.serviceUnavailable)))
            }
            return
        }
        let payload = stanza.elements.first
        switch (type, payload?.namespace, payload?.name) {
        case ("get", Namespace.discoInfo, "query"):
            var query = XMLElement("query", namespace: Namespace.discoInfo)
            query.append(
                XMLElement("identity", namespace: Namespace.discoInfo, ["category": "conference", "type": "text", "name": "Chatrooms"])
            )
            for feature in [Namespace.discoInfo, Namespace.discoItems, Namespace.muc, Namespace.ping] {
                query.append(XMLElement("feature", namespace: Namespace.discoInfo, ["var": feature]))
            }
            deliver(stanza.iqResult(query))
        case ("get", Namespace.discoItems, "query"):
            var query = XMLElement("query", namespace: Namespace.discoItems)
            let listed = rooms.withLock { rooms in
                rooms.values.compactMap { box in
                    box.state.withLock { room -> (JID, String)? in
                        guard room.configuration.isPublic, !room.locked else { return nil }
                        return (room.jid, room.configuration.name.isEmpty ? room.jid.localpart ?? "" : room.configuration.name)
                    }
                }
            }
            for (jid, name) in listed.sorted(by: { $0.0 < $1.0 }) {
                query.append(XMLElement("item", namespace: Namespace.discoItems, ["jid": jid.description, "name": name]))
            }
            deliver(stanza.iqResult(query))
        case ("get", Namespace.ping, "ping"):
            deliver(stanza.iqResult())
        default:
            deliver(stanza.errorReply(StanzaError(.serviceUnavailable)))
        }
    }
}
