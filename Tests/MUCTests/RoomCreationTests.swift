import MUC
import Testing
import XMPPCore

/// XEP-0045 §10.1: creating a room, its lock, and the first configuration.
@Suite struct RoomCreationTests {
    @Test func theCreatorBecomesOwnerAndModerator() throws {
        let (test, effects) = TestRoom.created()
        let own = try #require(effects.presences(to: Cast.romeo).first)
        #expect(own.from == "\(Cast.room)/Romeo")
        #expect(own.mucItem?[attribute: "affiliation"] == "owner")
        #expect(own.mucItem?[attribute: "role"] == "moderator")
        #expect(own.mucItem?[attribute: "jid"] == Cast.romeo.description)
        #expect(test.room.affiliation(of: Cast.romeo, environment: test.environment) == .owner)
        #expect(test.room.occupant(nick: "Romeo")?.role == .moderator)
    }

    @Test func creationSays201BeforeTheItemAnd110After() throws {
        let (_, effects) = TestRoom.created()
        let own = try #require(effects.presences(to: Cast.romeo).first)
        #expect(own.mucUserLayout == ["status 201", "item", "status 110"])
    }

    @Test func creationEndsWithTheEmptySubjectAndNothingElse() throws {
        let (_, effects) = TestRoom.created()
        #expect(effects.recipients == [Cast.romeo.description])
        #expect(effects.stanzas.map(\.name) == ["presence", "message"])
        let subject = try #require(effects.stanzas.last)
        #expect(subject.from == Cast.room.description)
        #expect(subject.child("subject", namespace: Namespace.client)?.children.isEmpty == true)
    }

    @Test func creationIsStoredWithTheOwner() {
        let (_, effects) = TestRoom.created()
        #expect(
            effects.changes == [.created(RoomConfiguration()), .affiliation(Cast.romeo.bare, AffiliationEntry(.owner))])
    }

    @Test func aNewRoomStaysLockedUntilConfigured() {
        let (test, _) = TestRoom.created()
        #expect(test.room.locked)
    }

    @Test func othersGetItemNotFoundWhileTheRoomIsLocked() throws {
        var (test, _) = TestRoom.created()
        let effects = test.join(Cast.juliet, nick: "Juliet")
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error[attribute: "to"] == Cast.juliet.description)
        #expect(error.type == "error")
        #expect(error.errorCondition == .itemNotFound)
        #expect(error.errorType == .cancel)
        #expect(test.room.occupants.map(\.nick) == ["Romeo"])
    }

    @Test func submittingTheFormUnlocksTheRoom() throws {
        var (test, _) = TestRoom.created()
        let effects = test.configure(Cast.romeo, [])
        #expect(!test.room.locked)
        #expect(effects.stanzas.count == 1, "an instant room changes nothing: no 104")
        #expect(effects.stanzas.first?.type == "result")
        #expect(effects.changes == [.configured(RoomConfiguration())])

        let joined = test.join(Cast.juliet, nick: "Juliet")
        #expect(joined.presences(to: Cast.juliet).last?.statusCodes == [110])
        #expect(test.room.occupants.map(\.nick) == ["Romeo", "Juliet"])
    }

    /// XEP-0045 §10.1.3 says a cancelled first configuration destroys the room; Prosody
    /// 0.12 keeps it locked with its owner inside (spec/muc_cancel_initial_config.scs),
    /// and Conclave does what Prosody does.
    @Test func cancellingTheFirstConfigurationKeepsTheLockedRoom() throws {
        var (test, _) = TestRoom.created()
        let cancel = DataForm(type: "cancel").element
        let effects = test.send(
            Build.iq("set", from: Cast.romeo, id: "cancel1", payload: Build.query(Namespace.mucOwner, [cancel])),
            from: Cast.romeo
        )
        let result = try #require(effects.iqs(to: Cast.romeo).first)
        #expect(result.type == "result")
        #expect(result.id == "cancel1")
        #expect(effects.stanzas.count == 1)
        #expect(!effects.roomEnded)
        #expect(effects.changes.isEmpty)
        #expect(test.room.locked)
        #expect(test.room.occupants.map(\.nick) == ["Romeo"])
    }

    @Test func cancellingTheFormOfAConfiguredRoomChangesNothing() throws {
        var test = TestRoom.open()
        let cancel = DataForm(type: "cancel").element
        let effects = test.send(
            Build.iq("set", from: Cast.romeo, id: "cancel2", payload: Build.query(Namespace.mucOwner, [cancel])),
            from: Cast.romeo
        )
        #expect(effects.stanzas.map(\.type) == ["result"])
        #expect(!effects.roomEnded)
        #expect(effects.changes.isEmpty)
        #expect(test.room.occupants.map(\.nick) == ["Romeo"])
    }

    @Test func joiningAnExistingRoomCreatesNothing() {
        var test = TestRoom.open()
        let effects = test.join(Cast.juliet, nick: "Juliet")
        #expect(effects.changes.isEmpty)
        #expect(!effects.presences(to: Cast.juliet).contains { $0.statusCodes.contains(201) })
        #expect(test.room.affiliation(of: Cast.juliet, environment: test.environment) == .none)
    }

    /// As in Prosody: the lock keeps out every later entrant, an owner the creator named too.
    @Test func theLockKeepsOutAnOwnerToo() throws {
        var (test, _) = TestRoom.created()
        test.room.affiliations[Cast.juliet.bare] = AffiliationEntry(.owner)
        let error = try #require(test.join(Cast.juliet, nick: "Juliet").stanzas.first)
        #expect(error.errorCondition == .itemNotFound)
        #expect(error.child("error")?[attribute: "by"] == Cast.room.domain.description)
    }

    /// A password in the creating join protects the room with it; the creator's language
    /// becomes the room's (as Prosody creates rooms).
    @Test func theCreatingJoinGivesThePasswordAndLanguage() throws {
        var test = TestRoom(Room(jid: Cast.room, locked: true))
        var join = Build.join(Cast.romeo, nick: "Romeo", password: "nightingale")
        join[attribute: "xml:lang"] = "it"
        test.send(join, from: Cast.romeo, isNew: true)
        #expect(test.room.configuration.password == "nightingale")
        #expect(test.room.configuration.language == "it")
        test.configure(Cast.romeo, [])
        let refused = try #require(test.join(Cast.juliet, nick: "Juliet").stanzas.first)
        #expect(refused.errorCondition == .notAuthorized)
        #expect(test.join(Cast.juliet, nick: "Juliet", password: "nightingale").presences(to: Cast.juliet).last?.statusCodes == [110])
    }
}
