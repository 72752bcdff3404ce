import MUC
import Testing
import XMPPCore

/// The limits of issue 13 beyond what the store can keep: invitations meet the same
/// affiliation limits as muc#admin, presence updates are rate-limited per occupant, and
/// a room's history is bounded in bytes as well as in count.
@Suite struct RoomRateAndSizeLimitsTests {
    static func environment(_ test: TestRoom, _ change: (inout RoomLimits) -> Void) -> RoomEnvironment {
        var environment = test.environment
        change(&environment.limits)
        return environment
    }

    // MARK: - Invitations

    static func invite(_ invitee: String) -> XMLElement {
        InvitationTests.invite(from: Cast.romeo, to: invitee)
    }

    @Test func anInvitationBeyondTheAffiliationLimitIsRefusedAndNotSent() throws {
        var test = TestRoom.open({ $0.membersOnly = true }, affiliations: [Cast.juliet: .member])
        // Romeo (owner) and Juliet (member): two of two.
        let environment = Self.environment(test) { $0.affiliations = 2 }
        let effects = test.room.handle(
            Self.invite("mercutio@montague.example"), from: Cast.romeo, environment: environment)
        #expect(effects.stanzas.count == 1, "only the error, no invitation")
        let error = try #require(effects.stanzas.first)
        #expect(error[attribute: "to"] == Cast.romeo.description)
        #expect(error.errorCondition == .resourceConstraint)
        #expect(error.errorType == .wait)
        #expect(effects.changes.isEmpty)
        #expect(test.room.affiliations[address("mercutio@montague.example")] == nil)

        // Someone already affiliated is invited as before: nothing is added.
        let again = test.room.handle(
            Self.invite(Cast.juliet.bare.description), from: Cast.romeo, environment: environment)
        #expect(again.stanzas.count == 1)
        #expect(again.stanzas.first?[attribute: "to"] == Cast.juliet.bare.description)
    }

    @Test func anInvitationForAnAddressTooLongToStoreIsRefused() throws {
        var test = TestRoom.open { $0.membersOnly = true }
        let long = try JID(localpart: RoomLimitsTests.text(1023), domainpart: "montague.example")
        let effects = test.send(Self.invite(long.description), from: Cast.romeo)
        #expect(effects.stanzas.count == 1)
        #expect(effects.stanzas.first?.errorCondition == .notAcceptable)
        #expect(effects.changes.isEmpty)
        #expect(test.room.affiliations[long] == nil)
    }

    @Test func anInvitationIntoAnOpenRoomStoresNothingAndIsNotLimited() {
        var test = TestRoom.open()
        let environment = Self.environment(test) { $0.affiliations = 1 }
        let effects = test.room.handle(
            Self.invite("mercutio@montague.example"), from: Cast.romeo, environment: environment)
        #expect(effects.recipients == ["mercutio@montague.example"])
        #expect(effects.changes.isEmpty)
    }

    // MARK: - Presence updates

    static func status(_ text: String, from real: JID = Cast.juliet, nick: String = "Juliet") -> XMLElement {
        Build.presence(from: real, to: nick, children: [XMLElement("status", namespace: Namespace.client, text: text)])
    }

    @Test func presenceUpdatesBeyondTheRateAreRefusedAndNotBroadcast() throws {
        var test = TestRoom.twoInside()
        let environment = Self.environment(test) {
            $0.presenceUpdatesPerSecond = 2
            $0.presenceUpdateBurst = 3
        }
        func update(_ text: String) -> RoomEffects {
            test.room.handle(Self.status(text), from: Cast.juliet, environment: environment)
        }
        for index in 1...3 {
            let effects = update("update \(index)")
            #expect(effects.presences(to: Cast.romeo).count == 1, "the burst is broadcast")
        }
        let refused = update("one too many")
        #expect(refused.stanzas.count == 1, "nothing broadcast")
        let error = try #require(refused.stanzas.first)
        #expect(error[attribute: "to"] == Cast.juliet.description)
        #expect(error.errorCondition == .policyViolation)
        #expect(error.errorType == .wait)
        #expect(test.room.occupant(real: Cast.juliet)?.presence.child("status")?.text == "update 3")
        // Romeo's budget is his own.
        let romeo = test.room.handle(
            Self.status("here", from: Cast.romeo, nick: "Romeo"), from: Cast.romeo, environment: environment)
        #expect(romeo.presences(to: Cast.juliet).count == 1)

        // Half a second later, one more token (2 a second).
        test.clock.advance(by: 0.5)
        #expect(update("after a while").presences(to: Cast.romeo).count == 1)
        #expect(update("too soon").stanzas.first?.errorCondition == .policyViolation)
    }

    @Test func nickChangesCountAsPresenceUpdates() {
        var test = TestRoom.twoInside()
        let environment = Self.environment(test) {
            $0.presenceUpdatesPerSecond = 1
            $0.presenceUpdateBurst = 1
        }
        let first = test.room.handle(
            Build.presence(from: Cast.juliet, to: "Jules"), from: Cast.juliet, environment: environment)
        #expect(first.presences(to: Cast.romeo).count == 2, "unavailable (303) and available")
        let second = test.room.handle(
            Build.presence(from: Cast.juliet, to: "Julie"), from: Cast.juliet, environment: environment)
        #expect(second.stanzas.count == 1)
        #expect(second.stanzas.first?.errorCondition == .policyViolation)
        #expect(test.room.occupant(real: Cast.juliet)?.nick == "Jules")
    }

    @Test func leavingAndJoiningAgainDoesNotRefillTheBudget() {
        var test = TestRoom.twoInside()
        let environment = Self.environment(test) {
            $0.presenceUpdatesPerSecond = 1
            $0.presenceUpdateBurst = 1
        }
        let first = test.room.handle(Self.status("one"), from: Cast.juliet, environment: environment)
        #expect(first.presences(to: Cast.romeo).count == 1)
        _ = test.room.handle(
            Build.presence(from: Cast.juliet, to: "Juliet", type: "unavailable"), from: Cast.juliet,
            environment: environment)
        _ = test.room.handle(Build.join(Cast.juliet, nick: "Juliet"), from: Cast.juliet, environment: environment)
        let second = test.room.handle(Self.status("two"), from: Cast.juliet, environment: environment)
        #expect(second.stanzas.first?.errorCondition == .policyViolation)
    }

    @Test func joiningAndLeavingAreNotRateLimited() {
        var test = TestRoom.twoInside()
        let environment = Self.environment(test) {
            $0.presenceUpdatesPerSecond = 1
            $0.presenceUpdateBurst = 1
        }
        for _ in 1...3 {
            let left = test.room.handle(
                Build.presence(from: Cast.juliet, to: "Juliet", type: "unavailable"), from: Cast.juliet,
                environment: environment)
            #expect(left.presences(to: Cast.romeo).count == 1)
            let joined = test.room.handle(
                Build.join(Cast.juliet, nick: "Juliet"), from: Cast.juliet, environment: environment)
            #expect(joined.presences(to: Cast.romeo).count == 1)
        }
    }

    // MARK: - History bytes

    static func bodies(_ effects: RoomEffects, to real: JID) -> [String] {
        effects.messages(to: real).compactMap(\.body)
    }

    @Test func historyIsTrimmedOldestFirstToItsByteBound() throws {
        var test = TestRoom.twoInside { $0.historyLength = 100 }
        // Each message is a few hundred bytes as kept; three fit in 1,500, four do not.
        let body = String(repeating: "x", count: 200)
        test.say(Cast.romeo, "probe")
        let size = try #require(test.room.history.last).bytes + body.utf8.count - "probe".utf8.count
        let environment = Self.environment(test) { $0.historyBytes = 3 * size + size / 2 }
        for index in 1...5 {
            let message = Build.message(from: Cast.romeo, type: "groupchat", body: "\(index)" + body.dropFirst())
            _ = test.room.handle(message, from: Cast.romeo, environment: environment)
        }
        #expect(test.room.history.count == 3)
        #expect(test.room.history.map(\.message.body?.first) == ["3", "4", "5"])
        #expect(test.room.history.reduce(0) { $0 + $1.bytes } <= environment.limits.historyBytes)

        let joined = test.room.handle(Build.join(Cast.mercutio, nick: "Mercutio"), from: Cast.mercutio,
            environment: environment)
        #expect(Self.bodies(joined, to: Cast.mercutio).map(\.first) == ["3", "4", "5"])
    }

    @Test func aMessageBiggerThanTheWholeBoundIsDeliveredButNotKept() {
        var test = TestRoom.twoInside()
        test.say(Cast.romeo, "kept")
        let environment = Self.environment(test) { $0.historyBytes = 2000 }
        let effects = test.room.handle(
            Build.message(from: Cast.romeo, type: "groupchat", body: String(repeating: "y", count: 3000)),
            from: Cast.romeo, environment: environment)
        #expect(effects.messages(to: Cast.juliet).count == 1)
        #expect(effects.changes.isEmpty)
        #expect(test.room.history.map(\.message.body) == ["kept"])
    }

    @Test func aJoinReplaysNoMoreThanTheBoundOfHistoryLoadedFromTheStore() {
        // History kept before the bound was lowered (loaded from the store as it was).
        var test = TestRoom.twoInside()
        for index in 1...10 { test.say(Cast.romeo, "message \(index) " + String(repeating: "z", count: 500)) }
        #expect(test.room.history.count == 10)
        let newest = test.room.history[9].bytes
        let environment = Self.environment(test) { $0.historyBytes = 2 * newest }
        let joined = test.room.handle(
            Build.join(Cast.mercutio, nick: "Mercutio"), from: Cast.mercutio, environment: environment)
        let replayed = Self.bodies(joined, to: Cast.mercutio).filter { $0.hasPrefix("message") }
        #expect(replayed.count == 2)
        #expect(replayed.first?.hasPrefix("message 9 ") == true)
    }
}
