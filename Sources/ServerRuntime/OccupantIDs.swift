import Crypto
public import XMPPCore

/// XEP-0421 occupant ids: HMAC-SHA-256 of the room and the occupant's real bare JID,
/// keyed with the deployment's secret (`deployment_secrets`, 'muc-occupant-id').
///
/// Why keyed: an id must be stable per room and user, and must not give the user's
/// address away (XEP-0421 §4). A plain hash of room and address does: anyone who
/// guesses an address (from a roster, a directory, another room) can hash it and
/// find the occupant behind the id in a semi-anonymous room. With a secret only the
/// deployment can compute ids. The secret is shared by every node and kept in the
/// database, so ids are the same on every node and across restarts.
public struct OccupantIDs: Sendable {
    /// The `deployment_secrets` row that keys them.
    public static let secretName = "muc-occupant-id"

    private let key: SymmetricKey

    public init(secret: [UInt8]) {
        key = SymmetricKey(data: secret)
    }

    /// The id of `real` (its bare JID) in `room`, Base64 of the 32-byte MAC.
    public func id(room: JID, real: JID) -> String {
        // NUL cannot occur in a JID: the two parts cannot be shifted into each other.
        let message = Array("\(room.bare)\u{0}\(real.bare)".utf8)
        return Base64.encode(Array(HMAC<SHA256>.authenticationCode(for: message, using: key)))
    }
}
