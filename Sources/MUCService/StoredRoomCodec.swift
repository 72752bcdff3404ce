import Foundation
import Logging
import MUC
import Storage
import Synchronization
import XMPPCore
import XMPPXMLParser

// Rooms as the store keeps them: changes to rows, rows to a room.
extension MUCService {
    func stored(_ change: RoomChange, room: Room) -> StoredRoomChange {
        switch change {
        case .created(let configuration), .configured(let configuration):
            let json = (try? JSONEncoder().encode(configuration)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            return .configuration(json: json, persistent: configuration.persistent, locked: room.locked)
        case .affiliation(let jid, let entry):
            return .affiliation(jid, affiliation: entry.affiliation.rawValue, reason: entry.reason, nick: entry.nick)
        case .subject(let subject, let nick, let stamp):
            return .subject(subject, nick: nick, stamp: stamp)
        case .history(let entry):
            return .history(
                StoredHistoryEntry(
                    stanza: entry.message.serialized(parentNamespace: Namespace.client), stamp: entry.stamp,
                    nick: entry.senderNick,
                    id: entry.message.child("stanza-id", namespace: Namespace.stanzaID)?[attribute: "id"]
                ),
                // What the room keeps after it (bounded by count and bytes, `RoomLimits.historyBytes`).
                keep: room.history.count
            )
        case .destroyed:
            return .deleted
        }
    }

    static func room(from entry: StoredRoom, logger: Logger) -> Room {
        let configuration: RoomConfiguration
        if let decoded = try? JSONDecoder().decode(RoomConfiguration.self, from: Data(entry.configuration.utf8)) {
            configuration = decoded
        } else {
            logger.error("room with unreadable configuration", metadata: ["room": "\(entry.jid)"])
            configuration = RoomConfiguration()
        }
        var room = Room(
            jid: entry.jid, configuration: configuration, subject: entry.subject, subjectNick: entry.subjectNick,
            subjectStamp: entry.subjectStamp, locked: entry.locked
        )
        room.affiliations = affiliations(entry.affiliations)
        var reader = StoredStanzaReader()
        for item in entry.history {
            guard let message = reader.read(item.stanza) else {
                logger.error("a stored history message cannot be read; skipped", metadata: ["room": "\(entry.jid)"])
                continue
            }
            room.history.append(HistoryEntry(message: message, stamp: item.stamp, senderNick: item.nick))
        }
        return room
    }

    static func affiliations(_ stored: [StoredAffiliation]) -> [JID: AffiliationEntry] {
        var result: [JID: AffiliationEntry] = [:]
        for affiliation in stored {
            if let value = Affiliation(rawValue: affiliation.affiliation) {
                result[affiliation.jid] = AffiliationEntry(value, reason: affiliation.reason, nick: affiliation.nick)
            }
        }
        return result
    }
}
