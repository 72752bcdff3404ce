import MUC
import Testing
import XMPPCore

/// What a room accepts is bounded (`RoomLimits`): anything longer or more is refused
/// with a stanza error before the room changes, so nothing it accepts can be refused
/// by the store afterwards (finding 3 of issue 13).
@Suite struct RoomLimitsTests {
    /// `count` bytes of `a`.
    static func text(_ count: Int) -> String { String(repeating: "a", count: count) }

    /// A domain of `count` bytes, in labels of 63 (1,023 is 16 of them and 15 dots).
    static func domain(_ count: Int) -> String {
        var result = ""
        while result.utf8.count < count {
            if !result.isEmpty { result += "." }
            result += String(repeating: "b", count: min(63, count - result.utf8.count))
        }
        return result
    }

    /// The room's environment with `limits`.
    static func environment(_ test: TestRoom, _ change: (inout RoomLimits) -> Void = { _ in }) -> RoomEnvironment {
        var environment = test.environment
        change(&environment.limits)
        return environment
    }

    @Test func aRoomNameLongerThanTheLimitIsNotCreated() throws {
        let long = try JID(localpart: Self.text(257), domainpart: "conference.example")
        var room = Room(jid: long, locked: true)
        let test = TestRoom(room)
        var join = Build.join(Cast.romeo, nick: "Romeo")
        join[attribute: "to"] = "\(long)/Romeo"
        let effects = room.handle(join, from: Cast.romeo, environment: Self.environment(test), isNew: true)
        let error = try #require(effects.stanzas.first)
        #expect(error.type == "error")
        #expect(error.errorCondition == .notAcceptable)
        #expect(error.child("x", namespace: Namespace.muc) != nil, "a join error carries the MUC <x/>")
        #expect(effects.changes.isEmpty, "nothing is created")
        #expect(room.isEmpty)
    }

    @Test func aRoomNameAtTheLimitIsCreated() throws {
        let name = try JID(localpart: Self.text(256), domainpart: "conference.example")
        var room = Room(jid: name, locked: true)
        var join = Build.join(Cast.romeo, nick: "Romeo")
        join[attribute: "to"] = "\(name)/Romeo"
        let effects = room.handle(join, from: Cast.romeo, environment: Self.environment(TestRoom(room)), isNew: true)
        #expect(effects.stanzas.allSatisfy { $0.type != "error" })
        #expect(room.occupant(real: Cast.romeo) != nil)
    }

    @Test func aLongNickIsRefusedOnJoinAndOnNickChange() throws {
        var test = TestRoom.open()
        let refused = test.join(Cast.juliet, nick: Self.text(257))
        #expect(refused.stanzas.first?.errorCondition == .notAcceptable)
        #expect(test.room.occupant(real: Cast.juliet) == nil)

        let change = test.send(Build.presence(from: Cast.romeo, to: Self.text(257)), from: Cast.romeo)
        #expect(change.stanzas.count == 1)
        #expect(change.stanzas.first?.errorCondition == .notAcceptable)
        #expect(test.room.occupant(real: Cast.romeo)?.nick == "Romeo")
    }

    @Test func anAffiliationForAnAddressTooLongToStoreIsRefused() throws {
        // A room JID of 1,044 bytes and the longest bare JID there is (1,023 bytes on
        // either side of the @): together more than PostgreSQL can index, even with
        // `jid_bytes` raised to the JID maximum.
        let longRoom = try JID(localpart: Self.text(1023), domainpart: "conference.example")
        var room = Room(jid: longRoom, affiliations: [Cast.romeo.bare: AffiliationEntry(.owner)])
        let long = try JID(localpart: Self.text(1023), domainpart: Self.domain(1023))
        #expect(long.description.utf8.count == 2047)
        let environment = Self.environment(TestRoom(room)) {
            $0.roomNameBytes = 1023
            $0.jidBytes = 3071
        }
        var iq = Build.iq(
            "set", from: Cast.romeo, id: "long",
            payload: Build.query(Namespace.mucAdmin, [AffiliationChangeTests.set(long, "member")])
        )
        iq[attribute: "to"] = longRoom.description
        let effects = room.handle(iq, from: Cast.romeo, environment: environment)
        #expect(effects.stanzas.count == 1)
        #expect(effects.stanzas.first?.errorCondition == .notAcceptable)
        #expect(effects.changes.isEmpty)
        #expect(room.affiliations[long] == nil)

        // In an ordinary room, the default `jid_bytes` (1,024) refuses it.
        var test = TestRoom.open()
        let byDefault = test.admin(Cast.romeo, [AffiliationChangeTests.set(long, "member")])
        #expect(byDefault.stanzas.count == 1)
        #expect(byDefault.stanzas.first?.errorCondition == .notAcceptable)
        #expect(test.room.affiliations[long] == nil)
    }

    @Test func aLongReasonIsRefused() {
        var test = TestRoom.twoInside()
        let effects = test.admin(
            Cast.romeo, [AffiliationChangeTests.set(Cast.mercutio, "outcast", reason: Self.text(1025))])
        #expect(effects.stanzas.count == 1)
        #expect(effects.stanzas.first?.errorCondition == .notAcceptable)
        #expect(test.room.affiliations[Cast.mercutio.bare] == nil)
        let kick = test.admin(Cast.romeo, [Build.item(["role": "none", "nick": "Juliet"], reason: Self.text(1025))])
        #expect(kick.stanzas.first?.errorCondition == .notAcceptable)
        #expect(test.room.occupant(real: Cast.juliet) != nil)
    }

    @Test func aRoomKeepsAtMostTheConfiguredAffiliations() {
        var test = TestRoom.open()
        let environment = Self.environment(test) { $0.affiliations = 3 }
        func set(_ items: [XMLElement]) -> RoomEffects {
            test.room.handle(
                Build.iq("set", from: Cast.romeo, id: "a", payload: Build.query(Namespace.mucAdmin, items)),
                from: Cast.romeo,
                environment: environment
            )
        }
        // Romeo (owner) is one; two more fit, a third does not, even within one request.
        let three = set([
            AffiliationChangeTests.set(Cast.juliet, "member"), AffiliationChangeTests.set(Cast.nurse, "member"),
            AffiliationChangeTests.set(Cast.tybalt, "outcast"),
        ])
        #expect(three.stanzas.last?.errorCondition == .resourceConstraint)
        #expect(test.room.affiliations.count == 1, "the request is applied whole or not at all")
        let two = set([
            AffiliationChangeTests.set(Cast.juliet, "member"), AffiliationChangeTests.set(Cast.nurse, "member"),
        ])
        #expect(two.stanzas.last?.type == "result")
        #expect(
            set([AffiliationChangeTests.set(Cast.tybalt, "outcast")]).stanzas.last?.errorCondition
                == .resourceConstraint)
        // Changing or removing an existing one is always possible.
        #expect(set([AffiliationChangeTests.set(Cast.juliet, "admin")]).stanzas.last?.type == "result")
        #expect(set([AffiliationChangeTests.set(Cast.nurse, "none")]).stanzas.last?.type == "result")
        #expect(set([AffiliationChangeTests.set(Cast.tybalt, "outcast")]).stanzas.last?.type == "result")
    }

    @Test(arguments: [
        "muc#roomconfig_roomname", "muc#roomconfig_roomdesc", "muc#roomconfig_lang", "muc#roomconfig_roomsecret",
    ])
    func aLongConfigurationFieldIsRefused(field: String) {
        var test = TestRoom.open()
        let before = test.room.configuration
        let effects = test.configure(Cast.romeo, [(field, [Self.text(2049)])])
        #expect(effects.stanzas.count == 1)
        #expect(effects.stanzas.first?.errorCondition == .notAcceptable)
        #expect(test.room.configuration == before)
        #expect(test.configure(Cast.romeo, [(field, [Self.text(2048)])]).stanzas.contains { $0.type == "result" })
    }

    @Test func aLongRegisteredNickIsRefused() {
        var test = TestRoom.open(affiliations: [Cast.juliet: .member])
        let form = DataForm(
            type: "submit",
            fields: [
                .init("FORM_TYPE", values: ["http://jabber.org/protocol/muc#register"]),
                .init("muc#register_roomnick", values: [Self.text(257)]),
            ]
        )
        let effects = test.send(
            Build.iq("set", from: Cast.juliet, id: "reg", payload: Build.query(Namespace.register, [form.element])),
            from: Cast.juliet
        )
        #expect(effects.stanzas.first?.errorCondition == .notAcceptable)
        #expect(test.room.affiliations[Cast.juliet.bare]?.nick == nil)
    }
}

extension RoomLimitsTests {
    @Test func aLongSubjectIsRefused() {
        var test = TestRoom.twoInside()
        let long = Build.message(
            from: Cast.romeo, type: "groupchat",
            children: [XMLElement("subject", namespace: Namespace.client, text: Self.text(4097))]
        )
        let effects = test.send(long, from: Cast.romeo)
        #expect(effects.stanzas.count == 1)
        #expect(effects.stanzas.first?.errorCondition == .notAcceptable)
        #expect(effects.changes.isEmpty)
        #expect(test.room.subject == "")
        let fits = Build.message(
            from: Cast.romeo, type: "groupchat",
            children: [XMLElement("subject", namespace: Namespace.client, text: Self.text(4096))]
        )
        #expect(test.send(fits, from: Cast.romeo).changes.count == 1)
    }
}
