import Foundation
import MUC
import XMPPCore

/// The clock, identifiers and occupant ids the rooms run with.
enum MUCEnvironment {
    static func make(admins: Set<JID>, occupantIDs: OccupantIDs) -> RoomEnvironment {
        RoomEnvironment(
            now: { Date().timeIntervalSince1970 },
            makeID: { UUID().uuidString.lowercased() },
            // Stable per room and user, and not computable from the user's address (XEP-0421 §4).
            occupantID: { room, real in occupantIDs.id(room: room, real: real) },
            isServiceAdmin: { admins.contains($0.bare) }
        )
    }
}
