import Differential
import Foundation
import Scansion
import Testing
import XMPPCore

/// The pure parts of the differential tester: scenarios replay from their seed, two
/// servers' answers that differ only in what servers may choose compare equal, and a
/// difference is written as a script that the spec runner reads.
struct DifferentialTests {
    let generator = ScenarioGenerator(
        mucDomain: "conference.localhost", accounts: ["diff-a@localhost", "diff-b@localhost", "diff-c@localhost", "diff-d@localhost"])

    @Test func aSeedGivesTheSameScenarioEveryTime() {
        let first = generator.scenario(seed: 42, room: "r@conference.localhost")
        let again = generator.scenario(seed: 42, room: "r@conference.localhost")
        let other = generator.scenario(seed: 43, room: "r@conference.localhost")
        #expect(first == again)
        #expect(first != other)
        // Every client connects and comes online before it acts; the first one creates the room.
        #expect(first.actions.first?.kind == .connects)
        let creation = first.actions.first { if case .sends(let xml) = $0.kind { xml.contains("muc\"") } else { false } }
        #expect(creation?.client == "A")
    }

    @Test func scenariosCoverTheActionsTheIssueNames() {
        var labels: [String] = []
        for seed in 1...300 {
            labels += generator.scenario(seed: UInt64(seed), room: "r@conference.localhost").actions.map(\.label)
        }
        for expected in [
            "joins as", "leaves", "changes nick", "says", "sets the subject", "whispers", "configures", "makes",
            "the role", "lists", "invites", "registration form", "registers", "disco#info", "disco#items", "probes",
            "destroys", "disconnects", "password", "history",
            // Between users.
            "messages", "an iq", "directed presence", "(offline)", "no-store",
        ] {
            #expect(labels.contains { $0.contains(expected) }, "no scenario \(expected)")
        }
    }

    /// Stanzas from other users and the rooms' output may interleave either way within
    /// a step (`sender-order`); the order among the rooms' stanzas still counts.
    @Test func userStanzasAndRoomOutputInterleaveFreely() {
        let user = #"<presence from="${A's full JID}" type="unavailable"/>"#
        let room = #"<presence from="r@conference.localhost/romeo" type="unavailable"/>"#
        let subject = #"<message from="r@conference.localhost" type="groupchat"><subject/></message>"#
        func transcript(_ stanzas: [String]) -> Transcript {
            Transcript(steps: [StepTranscript(received: ["B": stanzas.compactMap { try? StanzaTemplate.elements($0).first }])])
        }
        #expect(Comparison.firstDifference(reference: transcript([user, room]), target: transcript([room, user]), clients: ["B"]) == nil)
        #expect(Comparison.firstDifference(reference: transcript([room, subject]), target: transcript([subject, room]), clients: ["B"]) != nil)
    }

    func stanza(_ text: String) throws -> XMLElement {
        try #require(try StanzaTemplate.elements(text).first)
    }

    @Test func whatServersChooseThemselvesComparesEqual() throws {
        let romeo = try JID("diff-a@localhost/prosody-made")
        let juliet = try JID("diff-b@localhost/conclave-made")
        let normalizer = Normalizer(clients: [("A", romeo), ("B", juliet)], sentIDs: ["a1"])
        let prosody = try stanza(
            """
            <message from='room@conference.localhost/romeo' to='diff-b@localhost/prosody-made' type='groupchat' id='xyz'>
              <body>hi</body>
              <delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z' from='room@conference.localhost'/>
              <occupant-id xmlns='urn:xmpp:occupant-id:0' id='prosody-hash'/>
            </message>
            """)
        let conclave = try stanza(
            """
            <message type='groupchat' id='other' to='diff-b@localhost/conclave-made' from='room@conference.localhost/romeo'>
              <body>hi</body><delay xmlns='urn:xmpp:delay' from='room@conference.localhost' stamp='2026-12-04T12:00:00.123Z'/>
              <occupant-id xmlns='urn:xmpp:occupant-id:0' id='opaque'/>
              <stanza-id xmlns='urn:xmpp:sid:0' id='1' by='room@conference.localhost'/>
            </message>
            """)
        // Prosody's copy went to B under Prosody's resource: map it too.
        let prosodyNormalizer = Normalizer(clients: [("A", romeo), ("B", try JID("diff-b@localhost/prosody-made"))], sentIDs: ["a1"])
        #expect(prosodyNormalizer.canonical(prosody) == normalizer.canonical(conclave))
        #expect(normalizer.canonical(conclave).contains("${B&apos;s full JID}"))
    }

    @Test func whatTheClientsSentAndTheBodiesAreCompared() throws {
        let normalizer = Normalizer(clients: [("A", try JID("diff-a@localhost/r"))], sentIDs: ["a1"])
        let answer = try stanza("<iq type='result' id='a1' to='diff-a@localhost/r'/>")
        let otherAnswer = try stanza("<iq type='result' id='a2' to='diff-a@localhost/r'/>")
        #expect(normalizer.canonical(answer).contains("id=\"a1\""))
        #expect(normalizer.canonical(otherAnswer).contains("{scansion:any}"))
        let error = try stanza(
            "<presence type='error' id='a1'><error type='modify' by='room@conference.localhost'><jid-malformed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>why</text></error></presence>"
        )
        let withoutBy = try stanza(
            "<presence type='error' id='a1'><error type='modify'><jid-malformed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>")
        // The wording of a text may differ; a missing `by` may not.
        #expect(normalizer.canonical(error) != normalizer.canonical(withoutBy))
        #expect(!normalizer.canonical(error).contains("why"))
    }

    @Test func addressesInTextAndTheJoinsEchoedXCompareEqual() throws {
        let prosody = Normalizer(clients: [("C", try JID("diff-c@localhost/abc"))], sentIDs: ["c3"])
        let conclave = Normalizer(clients: [("C", try JID("diff-c@localhost/conclave-xyz"))], sentIDs: ["c3"])
        // An invitation's body names the inviter by its full JID, resource included.
        #expect(
            prosody.canonical(try stanza("<message id='c3'><body>diff-c@localhost/abc invited you</body></message>"))
                == conclave.canonical(try stanza("<message id='c3'><body>diff-c@localhost/conclave-xyz invited you</body></message>")))
        // A join's error with or without the join's <x/> (join-error-x).
        let bare = try stanza("<presence type='error' id='c3'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>")
        let echoed = try stanza(
            "<presence type='error' id='c3'><x xmlns='http://jabber.org/protocol/muc'/><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>")
        #expect(prosody.canonical(bare) == prosody.canonical(echoed))
    }

    @Test func aDifferencesKindSurvivesChangedDetails() throws {
        let one = Difference(
            step: 3, client: "B", reference: ["<message type=\"groupchat\"><body>x</body><subject>s</subject></message>"],
            target: ["<message type=\"groupchat\"><body>x</body></message>"])
        let other = Difference(
            step: 7, client: "C", reference: ["<message type=\"groupchat\"><body>other</body><subject>t</subject></message>"],
            target: ["<message type=\"groupchat\"><body>other</body></message>"])
        let unrelated = Difference(
            step: 3, client: "B", reference: ["<presence><x xmlns=\"http://jabber.org/protocol/muc#user\"/></presence>"], target: [])
        #expect(one.signature == other.signature)
        #expect(one.signature != unrelated.signature)
    }

    @Test func aDifferenceIsWrittenAsAScriptTheRunnerReads() throws {
        let scenario = Scenario(
            seed: 7, room: "r@conference.localhost", clients: [("A", "diff-a@localhost"), ("B", "diff-b@localhost")],
            actions: [
                ScenarioAction(client: "A", kind: .connects, label: "connects"),
                ScenarioAction(client: "A", kind: .sends("<presence to=\"r@conference.localhost/romeo\" id=\"a1\"/>"), label: "joins"),
            ])
        let romeo = try JID("diff-a@localhost/x")
        let normalizer = Normalizer(clients: [("A", romeo)], sentIDs: ["a1"])
        let selfPresence = normalizer.normalize(
            try stanza(
                "<presence from='r@conference.localhost/romeo' to='diff-a@localhost/x' id='a1'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator' jid='diff-a@localhost/x'/><status code='110'/></x></presence>"
            ))
        let reference = Transcript(steps: [StepTranscript(), StepTranscript(received: ["A": [selfPresence]])])
        let difference = Difference(step: 1, client: "A", reference: [selfPresence.serialized()], target: [])
        let text = ScriptWriter.script(scenario, reference: reference, difference: difference, password: "password", title: "t")
        let script = try ScansionScript(parsing: text, path: "diff.scs")
        #expect(script.clients.map { $0.name } == ["A"])
        #expect(script.actions.count == 3)
        #expect(text.contains("jid=\"${A's full JID}\""))
        #expect(text.contains("## differential"))
    }

    /// A recorded reference compares as the live one did, in a run whose room has
    /// another name; a recording the generator no longer makes is told apart.
    @Test func aRecordedTranscriptComparesAsTheLiveOne() throws {
        let room = "diff-run1-1-7-1@conference.localhost"
        let scenario = generator.scenario(seed: 7, room: room)
        let romeo = try JID("diff-a@localhost/r")
        let normalizer = Normalizer(clients: [("A", romeo)], sentIDs: [])
        let live = normalizer.normalize(
            try stanza(
                "<presence from='\(room)/romeo' to='diff-a@localhost/r' id='a1'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator'/><status code='110'/></x></presence>"
            ))
        let transcript = Transcript(steps: [StepTranscript(received: ["A": [live]])])
        let entry = Recording.Entry(scenario: scenario, transcript: transcript)
        #expect(entry.steps[0]["A"]?.first?.contains("{room}") == true)
        #expect(!(entry.steps[0]["A"]?.first?.contains(room) ?? true))

        let elsewhere = "diff-run2-3-7-9@conference.localhost"
        let moved = scenario.moved(to: elsewhere)
        #expect(entry.actions == Recording.Entry.labels(of: moved))
        let replayed = entry.transcript(room: elsewhere)
        let again = Transcript(steps: [StepTranscript(received: ["A": [live].map { try! stanza($0.serialized().replacingOccurrences(of: room, with: elsewhere)) }.map(normalizer.normalize)])])
        #expect(Comparison.firstDifference(reference: replayed, target: again, clients: ["A"]) == nil)
        #expect(entry.actions != Recording.Entry.labels(of: generator.scenario(seed: 8, room: elsewhere)))
    }
}
