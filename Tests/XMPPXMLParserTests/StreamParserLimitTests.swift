import Testing
import XMPPCore
import XMPPXMLParser

/// `maxStanzaBytes` and `maxDepth` protect the server from a peer that sends
/// endless or endlessly nested stanzas: both end the stream with policy-violation.
@Suite struct StreamParserLimitTests {
    static let small = Harness.options(maxStanzaBytes: 1024)

    @Test func stanzaJustUnderTheLimitPassesHoweverSplit() throws {
        let stanza = Harness.message(bytes: 1000)
        let bytes = Array((Harness.prologue + stanza + "<presence/>").utf8)
        let expected = try Harness.events([bytes[...]], options: Self.small)
        #expect(Harness.stanzas(expected).map(\.name) == ["message", "presence"])
        for position in 0...bytes.count {
            #expect(try Harness.events(Harness.split(bytes, at: position), options: Self.small) == expected)
        }
        #expect(try Harness.events(Harness.bytewise(bytes), options: Self.small) == expected)
    }

    @Test func manyStanzasUnderTheLimitAddUpToMoreThanIt() throws {
        let stanza = Harness.message(bytes: 900)
        let input = Harness.prologue + String(repeating: stanza + " ", count: 20)
        #expect(Harness.stanzas(try Harness.events(input, options: Self.small)).count == 20)
    }

    @Test func stanzaFarOverTheLimitIsRefusedHoweverSplit() {
        let bytes = Array((Harness.prologue + Harness.message(bytes: 12 * 1024)).utf8)
        #expect(Harness.failure([bytes[...]], options: Self.small)?.condition == .policyViolation)
        for position in 0...bytes.count {
            let error = Harness.failure(Harness.split(bytes, at: position), options: Self.small)
            #expect(error?.condition == .policyViolation, "split at byte \(position)")
        }
        #expect(Harness.failure(Harness.bytewise(bytes), options: Self.small)?.condition == .policyViolation)
    }

    @Test
    func stanzaJustOverTheLimitIsRefusedHoweverSplit() {
        let exact = Array((Harness.prologue + Harness.message(bytes: 1024) + "<presence/>").utf8)
        let over = Array((Harness.prologue + Harness.message(bytes: 1025) + "<presence/>").utf8)
        let big = Array((Harness.prologue + Harness.message(bytes: 3000)).utf8)
        #expect(Harness.failure(Harness.bytewise(exact), options: Self.small) == nil)
        #expect(Harness.failure([exact[...]], options: Self.small) == nil)
        #expect(Harness.failure([over[...]], options: Self.small)?.condition == .policyViolation)
        #expect(Harness.failure(Harness.bytewise(over), options: Self.small)?.condition == .policyViolation)
        #expect(Harness.failure([big[...]], options: Self.small)?.condition == .policyViolation)
        let missed = (0...over.count).filter { position in
            Harness.failure(Harness.split(over, at: position), options: Self.small)?.condition != .policyViolation
        }
        #expect(missed.isEmpty, "a 1025-byte stanza got through at \(missed.count) split positions")
    }

    @Test func defaultLimitRefusesA300KiBStanzaBeforeItEnds() throws {
        let parser = XMLStreamParser()
        #expect(parser.options.maxStanzaBytes == 256 * 1024)
        _ = try parser.parse(Harness.prologue)
        let body = Array(("<message><body>" + String(repeating: "é", count: 150 * 1024) + "</body></message>").utf8)
        var fed = 0
        var failure: XMLStreamParserError?
        while fed < body.count, failure == nil {
            let chunk = Array(body[fed..<min(fed + 8 * 1024, body.count)])
            do {
                let events = try parser.parse(chunk)
                #expect(events.isEmpty)
            } catch {
                failure = error
            }
            fed += chunk.count
        }
        #expect(failure?.condition == .policyViolation)
        #expect(fed < body.count, "the stanza must be refused before all of it has arrived")
        #expect(fed <= 256 * 1024 + 16 * 1024)
    }

    @Test func defaultLimitPassesA250KiBStanzaFedIn8KiBChunks() throws {
        let parser = XMLStreamParser()
        _ = try parser.parse(Harness.prologue)
        let body = Array(("<message><body>" + String(repeating: "a", count: 250 * 1024) + "</body></message>").utf8)
        var events: [XMLStreamEvent] = []
        for start in stride(from: 0, to: body.count, by: 8 * 1024) {
            events += try parser.parse(Array(body[start..<min(start + 8 * 1024, body.count)]))
        }
        #expect(Harness.stanzas(events).first?.child("body")?.text.utf8.count == 250 * 1024)
    }

    @Test(arguments: [1, 4, 64])
    func nestingUpToMaxDepthPasses(depth: Int) throws {
        let options = Harness.options(maxDepth: depth)
        let events = try Harness.events(Harness.prologue + Harness.nested(depth: depth), options: options)
        var element = try #require(Harness.stanzas(events).first)
        for _ in 1..<depth { element = try #require(element.child("x")) }
        #expect(element.elements.isEmpty)
    }

    @Test(arguments: [1, 4, 64])
    func nestingDeeperThanMaxDepthIsRefusedHoweverSplit(depth: Int) {
        let options = Harness.options(maxDepth: depth)
        let bytes = Array((Harness.prologue + Harness.nested(depth: depth + 1)).utf8)
        #expect(Harness.failure([bytes[...]], options: options)?.condition == .policyViolation)
        for position in 0...bytes.count {
            let error = Harness.failure(Harness.split(bytes, at: position), options: options)
            #expect(error?.condition == .policyViolation, "split at byte \(position)")
        }
        #expect(Harness.failure(Harness.bytewise(bytes), options: options)?.condition == .policyViolation)
    }

    @Test func defaultDepthLimitIs64() {
        #expect(XMLStreamParser().options.maxDepth == 64)
        #expect(Harness.failure(Harness.prologue + Harness.nested(depth: 65))?.condition == .policyViolation)
    }

    @Test func deepNestingIsRefusedBeforeTheStanzaCloses() {
        // An attacker never needs to close the elements: the refusal comes on the way down.
        let options = Harness.options(maxDepth: 8)
        let input = Harness.prologue + "<message>" + String(repeating: "<x>", count: 8)
        let error = Harness.failure(input, options: options)
        #expect(error?.condition == .policyViolation)
    }
}
