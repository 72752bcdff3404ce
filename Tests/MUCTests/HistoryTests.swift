import MUC
import Testing
import XMPPCore

/// XEP-0045 §7.2.14 (discussion history on entering) and §7.2.16 (managing it).
@Suite struct HistoryTests {
    /// Romeo alone, having said "one" … "four", a minute apart from the start.
    static func talkative(_ configure: (inout RoomConfiguration) -> Void = { _ in }) -> TestRoom {
        var test = TestRoom.open(configure)
        for (index, line) in ["one", "two", "three", "four"].enumerated() {
            if index > 0 { test.clock.advance(by: 60) }
            test.say(Cast.romeo, line, id: "h\(index + 1)")
        }
        test.clock.advance(by: 60)
        return test
    }

    /// The history bodies Juliet gets when entering with `request`.
    static func replayed(_ test: inout TestRoom, _ request: XMLElement? = nil) -> [String?] {
        let received = test.join(Cast.juliet, nick: "Juliet", history: request).messages(to: Cast.juliet)
        return received.filter { $0.child("subject") == nil }.map(\.body)
    }

    @Test func anEntrantGetsTheWholeHistoryBetweenItsPresenceAndTheSubject() throws {
        var test = Self.talkative()
        let received = test.join(Cast.juliet, nick: "Juliet").to(Cast.juliet)
        #expect(
            received.map(\.name) == ["presence", "presence", "message", "message", "message", "message", "message"])
        #expect(received[2...5].map(\.body) == ["one", "two", "three", "four"])
        #expect(received[6].child("subject") != nil)
    }

    @Test func replayedMessagesKeepSenderAndIDAndCarryADelay() throws {
        var test = Self.talkative()
        let first = try #require(test.join(Cast.juliet, nick: "Juliet").messages(to: Cast.juliet).first)
        #expect(first.from == "\(Cast.room)/Romeo")
        #expect(first[attribute: "to"] == Cast.juliet.description)
        #expect(first.id == "h1")
        #expect(first.type == "groupchat")
        #expect(first.child("stanza-id", namespace: Namespace.stanzaID)?[attribute: "id"] == "sid-1")
        let delay = try #require(first.child("delay", namespace: Namespace.delay))
        #expect(delay[attribute: "from"] == Cast.room.description)
        #expect(delay[attribute: "stamp"] == Timestamp.format(TestRoom.start))
        #expect(delay[attribute: "stamp"] == "2023-11-14T22:13:20.000Z")
    }

    @Test(arguments: [
        ("0", [String]()), ("1", ["four"]), ("3", ["two", "three", "four"]), ("9", ["one", "two", "three", "four"]),
    ])
    func maxstanzasLimitsTheCount(limit: String, expected: [String]) {
        var test = Self.talkative()
        #expect(Self.replayed(&test, Build.history(["maxstanzas": limit])) == expected)
    }

    @Test func secondsLimitsTheAge() {
        var test = Self.talkative()
        // now is start + 240; "three" was said at start + 120, "four" at start + 180
        #expect(Self.replayed(&test, Build.history(["seconds": "120"])) == ["three", "four"])
    }

    @Test func secondsZeroAsksForNone() {
        var test = Self.talkative()
        #expect(Self.replayed(&test, Build.history(["seconds": "0"])) == [])
    }

    @Test func sinceLimitsToLaterMessages() {
        var test = Self.talkative()
        let since = Timestamp.format(TestRoom.start + 90)
        #expect(Self.replayed(&test, Build.history(["since": since])) == ["three", "four"])
    }

    /// Prosody keeps a message stamped exactly at `since` (it stops only at an older one),
    /// as this room does for `seconds`; two messages in one millisecond are otherwise lost.
    @Test func sinceIncludesAMessageStampedAtThatInstant() {
        var test = Self.talkative()
        let since = Timestamp.format(TestRoom.start + 120)
        let replayed = Self.replayed(&test, Build.history(["since": since]))
        #expect(replayed == ["three", "four"])
    }

    @Test func sinceWithATimeZoneOffsetIsTheSameInstant() {
        var test = Self.talkative()
        // start + 90 is 22:14:50Z, which is 00:14:50 at +02:00
        #expect(Self.replayed(&test, Build.history(["since": "2023-11-15T00:14:50+02:00"])) == ["three", "four"])
    }

    @Test func maxcharsCountsWholeStanzasFromTheNewest() throws {
        var test = Self.talkative()
        let sizes = test.room.history.map { $0.message.serialized(parentNamespace: Namespace.client).utf8.count }
        let twoNewest = sizes[2] + sizes[3]
        #expect(Self.replayed(&test, Build.history(["maxchars": String(twoNewest)])) == ["three", "four"])
        test.leave(Cast.juliet, nick: "Juliet")
        #expect(Self.replayed(&test, Build.history(["maxchars": String(twoNewest - 1)])) == ["four"])
        test.leave(Cast.juliet, nick: "Juliet")
        #expect(Self.replayed(&test, Build.history(["maxchars": "0"])) == [])
    }

    @Test func limitsCombineToTheStrictest() {
        var test = Self.talkative()
        let request = Build.history(["maxstanzas": "3", "seconds": "150"])
        #expect(Self.replayed(&test, request) == ["three", "four"])
    }

    @Test func theRoomsHistoryLengthCapsWhatIsSent() {
        var test = Self.talkative()
        test.room.configuration.historyLength = 2
        #expect(Self.replayed(&test) == ["three", "four"])
    }

    @Test func anEmptyHistoryGoesStraightToTheSubject() throws {
        var test = TestRoom.open()
        let received = test.join(Cast.juliet, nick: "Juliet").to(Cast.juliet)
        #expect(received.map(\.name) == ["presence", "presence", "message"])
        #expect(received.last?.child("subject") != nil)
    }

    @Test func unreadableLimitsAreIgnored() {
        var test = Self.talkative()
        let request = Build.history(["maxstanzas": "many", "since": "yesterday"])
        #expect(Self.replayed(&test, request) == ["one", "two", "three", "four"])
    }

    /// `muc#roomconfig_defaulthistorymessages`: what a join that asks for no amount gets.
    @Test func aJoinAskingForNoAmountGetsTheRoomsDefault() {
        var test = Self.talkative { $0.defaultHistoryMessages = 2 }
        #expect(Self.replayed(&test) == ["three", "four"])
        var asking = Self.talkative { $0.defaultHistoryMessages = 2 }
        #expect(Self.replayed(&asking, XMLElement("history", namespace: Namespace.muc, ["maxstanzas": "3"])) == ["two", "three", "four"])
    }
}
