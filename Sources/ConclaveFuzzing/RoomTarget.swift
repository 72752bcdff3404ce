import MUC
import XMPPCore

/// A room fed arbitrary stanzas from arbitrary senders, as the MUC service would feed it.
///
/// A room is shared by everyone in it, so no sequence of stanzas from anyone may trap it
/// or leave it in a state that hurts the others. After every stanza the room's effects
/// and state are checked (`RoomInvariants`). The clock, the ids and the occupant ids are
/// deterministic: the same input replays the same run.
///
/// Input: byte 0 chooses the limits, the room's name and whether the room exists
/// already (persistent, configured from bytes 1–2, with affiliations) or is created by
/// the first join; then each step reads who acts and what it sends.
public enum RoomTarget {
    public static let serviceAdmin = jid("admin@example.com/desk")

    /// Who may send: two resources of one account, occupants-to-be, a banned one, a
    /// service administrator, and an address too long for the room to store.
    public static let people: [JID] = [
        jid("romeo@montague.example/balcony"), jid("romeo@montague.example/phone"),
        jid("juliet@capulet.example/chamber"), jid("mercutio@montague.example/street"),
        jid("mallory@evil.example/lair"), serviceAdmin,
        jid(String(repeating: "l", count: 1000) + "@long.example/" + String(repeating: "r", count: 200)),
    ]

    public static func run(_ data: [UInt8]) throws(FuzzFinding) {
        var input = FuzzInput(data)
        let mode = input.byte()
        let roomJID =
            mode & 0x4 == 0
            ? jid("verona@conference.example") : jid(String(repeating: "v", count: 300) + "@conference.example")
        let clock = FuzzClock()
        var limits = RoomLimits()
        if mode & 0x2 != 0 {
            limits.roomNameBytes = 16
            limits.jidBytes = 48
            limits.nickBytes = 12
            limits.reasonBytes = 24
            limits.affiliations = 6
            limits.subjectBytes = 32
            limits.configurationFieldBytes = 16
        }
        let environment = RoomEnvironment(
            now: { clock.now() },
            makeID: { clock.nextID() },
            occupantID: { room, real in "\(real)@\(room)" },
            isServiceAdmin: { $0.bare == serviceAdmin.bare },
            limits: limits
        )
        var room: Room? = mode & 0x1 == 0 ? nil : existingRoom(roomJID, &input)
        let builder = RoomStanzaBuilder(room: roomJID, people: people)
        var step = 0
        while !input.isAtEnd && step < 64 {
            step += 1
            let sender = people[input.below(people.count)]
            let operation = input.byte()
            if operation >= 250 {
                // Things that happen to a room besides stanzas.
                guard var current = room else { continue }
                let before = current
                let effects: RoomEffects
                switch operation {
                case 250, 251: effects = current.sessionEnded(sender, environment: environment)
                case 252: effects = current.systemShutdown(environment: environment)
                default:
                    clock.advance(by: Double(input.below(4096)) * 7.5)
                    continue
                }
                try RoomInvariants.check(
                    before: before, after: current, effects: effects, sender: sender, isNew: false,
                    environment: environment, step: step
                )
                room = effects.roomEnded ? nil : current
                continue
            }
            let currentNick = room?.occupant(real: sender)?.nick
            let template = Int(operation) % RoomStanzaBuilder.templateCount
            guard let stanza = builder.stanza(template, from: sender, currentNick: currentNick, &input) else {
                continue
            }
            // As the service: only a join creates a room; anything else finds none.
            let isNew = room == nil
            if isNew && !isJoin(stanza) { continue }
            var current = room ?? Room(jid: roomJID, locked: true)
            let before = current
            let effects = current.handle(stanza, from: sender, environment: environment, isNew: isNew)
            try RoomInvariants.check(
                before: before, after: current, effects: effects, sender: sender, isNew: isNew,
                environment: environment, step: step
            )
            room = effects.roomEnded || (isNew && current.isEmpty) ? nil : current
        }
    }

    /// A join, as the service recognises one (it decides whether a stanza creates a room).
    static func isJoin(_ stanza: XMLElement) -> Bool {
        guard stanza.stanzaKind == .presence, stanza.type == nil, let to = try? stanza.toJID(), to.resourcepart != nil
        else { return false }
        return stanza.child("x", namespace: Namespace.muc) != nil
    }

    /// A persistent room as the store would give it back: configured from the input,
    /// with an owner, an admin, a member with a reserved nick and an outcast.
    static func existingRoom(_ jid: JID, _ input: inout FuzzInput) -> Room {
        let flags = input.byte()
        let more = input.byte()
        var configuration = RoomConfiguration()
        configuration.persistent = true
        configuration.membersOnly = flags & 0x01 != 0
        configuration.moderated = flags & 0x02 != 0
        configuration.password = flags & 0x04 != 0 ? "secret" : ""
        configuration.whois = flags & 0x08 != 0 ? .anyone : .moderators
        configuration.allowInvites = flags & 0x10 != 0
        configuration.changeSubject = flags & 0x20 != 0
        configuration.maxUsers = flags & 0x40 != 0 ? 2 : nil
        configuration.logging = flags & 0x80 != 0
        configuration.allowPM = [.anyone, .participants, .moderators, .none][Int(more & 0x3)]
        configuration.historyLength = [0, 1, 3, 20][Int(more >> 2 & 0x3)]
        if more & 0x10 != 0 { configuration.presenceBroadcast = [.moderator] }
        if more & 0x20 != 0 { configuration.getMemberList = [.moderator] }
        return Room(
            jid: jid, configuration: configuration,
            affiliations: [
                people[0].bare: AffiliationEntry(.owner),
                people[2].bare: AffiliationEntry(.admin),
                people[3].bare: AffiliationEntry(.member, nick: "Mercutio"),
                people[4].bare: AffiliationEntry(.outcast, reason: "spam"),
            ],
            subject: more & 0x40 != 0 ? "Verona" : "", subjectNick: more & 0x40 != 0 ? "Romeo" : nil,
            subjectStamp: more & 0x40 != 0 ? FuzzClock.start - 60 : nil
        )
    }

    static func jid(_ text: String) -> JID {
        guard let jid = try? JID(text) else { fatalError("invalid JID in the fuzz cast: \(text)") }
        return jid
    }
}
