import MUC
import XMPPCore

/// What must hold after a room handled anything, whoever sent it.
enum RoomInvariants {
    static func check(
        before: Room, after room: Room, effects: RoomEffects, sender: JID, isNew: Bool,
        environment: RoomEnvironment, step: Int
    ) throws(FuzzFinding) {
        let context = "room, step \(step) (from \(sender.description.prefix(60)))"
        let limits = environment.limits

        // Every stanza the room sends is addressed, and survives being written to the
        // recipient's stream: serialize → parse gives it back.
        for stanza in effects.stanzas {
            guard let to = stanza[attribute: "to"] else {
                throw FuzzFinding("\(context): a stanza without a recipient: \(stanza)")
            }
            try FuzzFinding.check((try? JID(to)) != nil, "\(context): a stanza to an invalid address: \(stanza)")
        }
        try StanzaText.checkRoundTrip(effects.stanzas, context)
        // History is stored as text and parsed when the room is loaded again.
        let kept = effects.changes.compactMap { change -> XMLElement? in
            if case .history(let entry) = change { return entry.message }
            return nil
        }
        try StanzaText.checkRoundTrip(kept, "\(context), history")

        // What the store is told is what the room now holds.
        var affiliations = before.affiliations
        var configuration = before.configuration
        var subject = before.subject
        for change in effects.changes {
            switch change {
            case .created(let value):
                try FuzzFinding.check(isNew, "\(context): an existing room reported .created")
                configuration = value
            case .configured(let value):
                configuration = value
            case .affiliation(let jid, let entry):
                try FuzzFinding.check(jid.isBare, "\(context): an affiliation stored for a full JID \(jid)")
                affiliations[jid] = entry.affiliation == .none ? nil : entry
                if entry.affiliation != .none {
                    try FuzzFinding.check(
                        limits.refusal(storing: jid, in: room.jid) == nil,
                        "\(context): an affiliation stored for \(jid.description.utf8.count) bytes of JID"
                    )
                    try FuzzFinding.check(
                        (entry.nick?.utf8.count ?? 0) <= limits.nickBytes,
                        "\(context): a reserved nick longer than \(limits.nickBytes) bytes"
                    )
                }
            case .subject(let value, _, _):
                subject = value
            case .history, .destroyed:
                break
            }
        }
        try FuzzFinding.check(
            affiliations == room.affiliations,
            "\(context): stored affiliations \(describe(affiliations)) "
                + "but the room holds \(describe(room.affiliations))"
        )
        try FuzzFinding.check(
            configuration == room.configuration, "\(context): the stored configuration differs from the room's"
        )
        try FuzzFinding.check(subject == room.subject, "\(context): the stored subject differs from the room's")
        if effects.roomEnded { return }

        // A room keeps an owner: its owners cannot all give up or lose ownership (a
        // service administrator, who has owner rights everywhere, may still remove them).
        let hadOwner = before.affiliations.values.contains { $0.affiliation == .owner }
        if hadOwner, !environment.isServiceAdmin(sender) {
            try FuzzFinding.check(
                room.affiliations.values.contains { $0.affiliation == .owner },
                "\(context): the room lost its last owner: \(describe(room.affiliations))"
            )
        }

        // Stored values fit the limits (nothing the room accepts may be refused by the store).
        try FuzzFinding.check(
            room.affiliations.count <= max(limits.affiliations, before.affiliations.count),
            "\(context): \(room.affiliations.count) affiliations, more than \(limits.affiliations)"
        )
        try FuzzFinding.check(
            room.subject == before.subject || room.subject.utf8.count <= limits.subjectBytes,
            "\(context): a subject of \(room.subject.utf8.count) bytes"
        )
        for (field, value) in [
            ("name", room.configuration.name), ("description", room.configuration.description),
            ("language", room.configuration.language), ("password", room.configuration.password),
        ] where room.configuration != before.configuration {
            try FuzzFinding.check(
                value.utf8.count <= limits.configurationFieldBytes,
                "\(context): a room \(field) of \(value.utf8.count) bytes"
            )
        }

        // The occupants: a nick (as RFC 8266 compares them) belongs to one account (its
        // resources may share it, XEP-0045 §7.2.x), a real JID is in once; none banned,
        // none without a role, only members in a members-only room.
        var nicks: [String: JID] = [:]
        var reals: Set<JID> = []
        for occupant in room.occupants {
            let holder = nicks[occupant.nickKey, default: occupant.realJID.bare]
            nicks[occupant.nickKey] = holder
            try FuzzFinding.check(
                holder == occupant.realJID.bare,
                "\(context): \(holder) and \(occupant.realJID) share the nick \(occupant.nick)"
            )
            try FuzzFinding.check(
                reals.insert(occupant.realJID).inserted, "\(context): \(occupant.realJID) is in the room twice"
            )
            try FuzzFinding.check(occupant.role != .none, "\(context): \(occupant.nick) is in the room without a role")
            let affiliation = room.affiliation(of: occupant.realJID, environment: environment)
            try FuzzFinding.check(affiliation != .outcast, "\(context): the outcast \(occupant.realJID) is in the room")
            if room.configuration.membersOnly {
                try FuzzFinding.check(
                    affiliation.rank >= Affiliation.member.rank,
                    "\(context): \(occupant.realJID) (\(affiliation)) is in a members-only room"
                )
            }
            try FuzzFinding.check(
                occupant.nick.utf8.count <= limits.nickBytes,
                "\(context): an occupant's nick of \(occupant.nick.utf8.count) bytes"
            )
            try FuzzFinding.check(
                limits.refusal(storing: occupant.realJID, in: room.jid) == nil,
                "\(context): an occupant whose address cannot be stored"
            )
            try FuzzFinding.check(
                (try? room.jid.with(resource: occupant.nick)) != nil,
                "\(context): an occupant whose nick is no JID resource: \(String(reflecting: occupant.nick))"
            )
        }
    }

    static func describe(_ affiliations: [JID: AffiliationEntry]) -> String {
        let entries = affiliations.sorted { $0.key < $1.key }.map { jid, entry in
            "\(jid.description.prefix(40))=\(entry.affiliation.rawValue)\(entry.nick.map { "(\($0))" } ?? "")"
        }
        return "[" + entries.joined(separator: ", ") + "]"
    }
}
