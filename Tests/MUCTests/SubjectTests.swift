import MUC
import Testing
import XMPPCore

/// XEP-0045 §8.1 (modifying the subject) and §7.2.15 (the subject ends every join).
@Suite struct SubjectTests {

    static func subject(_ text: String, from real: JID, id: String = "s1") -> XMLElement {
        let subject =
            text.isEmpty
            ? XMLElement("subject", namespace: Namespace.client)
            : XMLElement("subject", namespace: Namespace.client, text: text)
        return Build.message(from: real, type: "groupchat", id: id, children: [subject])
    }

    @Test func aModeratorChangesTheSubjectForEveryone() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.subject("Fair Verona", from: Cast.romeo), from: Cast.romeo)
        #expect(effects.recipients == [Cast.romeo, Cast.juliet].map(\.description))
        for real in [Cast.romeo, Cast.juliet] {
            let message = try #require(effects.messages(to: real).first)
            #expect(message.type == "groupchat")
            #expect(message.from == "\(Cast.room)/Romeo")
            #expect(message.child("subject")?.text == "Fair Verona")
            #expect(message.body == nil)
        }
        #expect(test.room.subject == "Fair Verona")
        #expect(test.room.subjectNick == "Romeo")
    }

    @Test func theChangeIsStoredWithWhoAndWhen() {
        var test = TestRoom.twoInside()
        test.clock.advance(by: 60)
        let effects = test.send(Self.subject("Fair Verona", from: Cast.romeo), from: Cast.romeo)
        #expect(effects.changes == [.subject("Fair Verona", nick: "Romeo", stamp: TestRoom.start + 60)])
        #expect(test.room.subjectStamp == TestRoom.start + 60)
    }

    @Test func aSubjectChangeIsNotHistory() {
        var test = TestRoom.twoInside()
        test.send(Self.subject("Fair Verona", from: Cast.romeo), from: Cast.romeo)
        #expect(test.room.history.isEmpty)
    }

    @Test func aParticipantMayNotChangeItByDefault() throws {
        var test = TestRoom.twoInside()
        let effects = test.send(Self.subject("The orchard", from: Cast.juliet, id: "s2"), from: Cast.juliet)
        let error = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(error[attribute: "to"] == Cast.juliet.description)
        #expect(error.id == "s2")
        #expect(error.errorCondition == .forbidden)
        #expect(error.errorType == .auth)
        #expect(test.room.subject == "")
        #expect(effects.changes.isEmpty)
    }

    @Test func aParticipantMayWhenTheRoomAllowsIt() throws {
        var test = TestRoom.twoInside { $0.changeSubject = true }
        let effects = test.send(Self.subject("The orchard", from: Cast.juliet), from: Cast.juliet)
        #expect(effects.messages(to: Cast.romeo).first?.from == "\(Cast.room)/Juliet")
        #expect(test.room.subject == "The orchard")
        #expect(test.room.subjectNick == "Juliet")
    }

    @Test func aVisitorMayNotEvenWhenTheRoomAllowsIt() throws {
        var test = TestRoom.twoInside {
            $0.changeSubject = true
            $0.moderated = true
        }
        test.join(Cast.mercutio, nick: "Mercutio")
        let effects = test.send(Self.subject("Queen Mab", from: Cast.mercutio), from: Cast.mercutio)
        #expect(effects.stanzas.first?.errorCondition == .forbidden)
        #expect(test.room.subject == "")
    }

    @Test func laterEntrantsGetTheSubjectFromItsSetterWithADelay() throws {
        var test = TestRoom.twoInside()
        test.send(Self.subject("Fair Verona", from: Cast.romeo), from: Cast.romeo)
        test.clock.advance(by: 3600)
        let subject = try #require(test.join(Cast.mercutio, nick: "Mercutio").to(Cast.mercutio).last)
        #expect(subject.name == "message")
        #expect(subject.type == "groupchat")
        #expect(subject.from == "\(Cast.room)/Romeo")
        #expect(subject.child("subject")?.text == "Fair Verona")
        let delay = try #require(subject.child("delay", namespace: Namespace.delay))
        #expect(delay[attribute: "from"] == Cast.room.description)
        #expect(delay[attribute: "stamp"] == Timestamp.format(TestRoom.start))
    }

    @Test func aSubjectWithABodyIsAnOrdinaryMessage() throws {
        var test = TestRoom.twoInside()
        let message = Build.message(
            from: Cast.juliet, type: "groupchat", id: "s4", body: "Banished!",
            children: [XMLElement("subject", namespace: Namespace.client, text: "Mantua")]
        )
        let effects = test.send(message, from: Cast.juliet)
        let relayed = try #require(effects.messages(to: Cast.romeo).first)
        #expect(relayed.id == "s4")
        #expect(relayed.child("subject")?.text == "Mantua")
        #expect(relayed.body == "Banished!")
        #expect(test.room.subject == "")
        #expect(test.room.history.count == 1)
    }

    @Test func anEmptySubjectClearsIt() throws {
        var test = TestRoom.twoInside()
        test.send(Self.subject("Fair Verona", from: Cast.romeo), from: Cast.romeo)
        let effects = test.send(Self.subject("", from: Cast.romeo), from: Cast.romeo)
        let cleared = try #require(effects.messages(to: Cast.juliet).first)
        #expect(cleared.child("subject")?.children.isEmpty == true)
        #expect(test.room.subject == "")
        let joined = try #require(test.join(Cast.mercutio, nick: "Mercutio").to(Cast.mercutio).last)
        #expect(joined.child("subject")?.text == "")
    }
}
