/// What the harness knows was committed: each room's configuration and the
/// affiliations of the JIDs it manages. Changed only when a change was acknowledged
/// (an IQ result, the CLI's exit 0, an SQL commit), and compared with PostgreSQL and
/// with what the rooms do after every step.
struct World {
    struct Room {
        let jid: String
        let persistent: Bool
        /// The room exists (a persistent room after its creation; a temporary room
        /// from its creation until its last occupant left).
        var exists: Bool
        var membersOnly = false
        var name = ""
        /// Bare JID → affiliation ("owner", "admin", "member", "outcast"); absent: none.
        var affiliations: [String: String] = [:]
        /// A temporary room that emptied: its name is not used again.
        var retired = false
    }

    var rooms: [String: Room] = [:]
    /// The JIDs whose affiliations the harness changes and checks (the chaos accounts
    /// and a few JIDs of nobody, which only the database shows).
    var managedJIDs: [String] = []

    var persistentRooms: [String] { rooms.values.filter(\.persistent).map(\.jid).sorted() }
    var liveTemporaryRooms: [String] { rooms.values.filter { !$0.persistent && $0.exists }.map(\.jid).sorted() }

    func affiliation(of jid: String, in room: String) -> String { rooms[room]?.affiliations[jid] ?? "none" }

    static let rank = ["outcast": -1, "none": 0, "member": 1, "admin": 2, "owner": 3]

    /// What joining `room` as `jid` must do, given what was committed.
    enum JoinExpectation: Equatable, CustomStringConvertible {
        /// Entered; `created`: the join creates the room (status 201).
        case enters(created: Bool)
        /// Refused with this condition (registration-required for a non-member of a
        /// members-only room, outcasts included, as Prosody checks; forbidden for an
        /// outcast of an open room).
        case refused(String)

        var description: String {
            switch self {
            case .enters(let created): created ? "enters and creates the room (201)" : "enters"
            case .refused(let condition): "is refused with <\(condition)/>"
            }
        }
    }

    func expectation(joining room: String, as jid: String) -> JoinExpectation {
        guard let model = rooms[room], model.exists else { return .enters(created: true) }
        let affiliation = affiliation(of: jid, in: room)
        if model.membersOnly && (Self.rank[affiliation] ?? 0) < 1 { return .refused("registration-required") }
        if affiliation == "outcast" { return .refused("forbidden") }
        return .enters(created: false)
    }

    /// The status code with which an occupant whose affiliation became `affiliation`
    /// must leave `room` (301 banned, 321 no longer a member of a members-only room).
    func removal(after affiliation: String, in room: String) -> String? {
        if affiliation == "outcast" { return "301" }
        if rooms[room]?.membersOnly == true && affiliation == "none" { return "321" }
        return nil
    }
}
