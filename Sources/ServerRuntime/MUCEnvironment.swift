import Crypto
import Foundation
import MUC
import XMPPCore

/// The clock, identifiers and occupant ids the rooms run with.
enum MUCEnvironment {
    static func make(admins: Set<JID>) -> RoomEnvironment {
        RoomEnvironment(
            now: { Date().timeIntervalSince1970 },
            makeID: { UUID().uuidString.lowercased() },
            occupantID: { room, real in
                // Stable per room and user, and not the user's address (XEP-0421 §4).
                let digest = SHA256.hash(data: Array("conclave-occupant-id|\(room)|\(real)".utf8))
                return Base64.encode(Array(digest))
            },
            isServiceAdmin: { admins.contains($0.bare) }
        )
    }
}
