import Scansion
import Testing
import XMPPCore

/// `{scansion:any}` and `{scansion:capture:KEY}` in expected attribute values.
@Suite struct AnyAndCaptureTests {
    @Test(arguments: ["x", "", "purple-42", "a b", "{scansion:any}"])
    func anyAcceptsEveryValue(value: String) throws {
        let received = XMLElement("iq", namespace: Namespace.client, ["type": "result", "id": value])
        var matcher = StanzaMatcher()
        #expect(
            matcher.match(expected: try Fixture.expected("<iq type='result' id='{scansion:any}'/>"), received: received)
                == nil)
    }

    @Test func anyStillRequiresTheAttribute() throws {
        let mismatch = try #require(
            try Fixture.mismatch("<iq type='result' id='{scansion:any}'/>", "<iq type='result'/>"))
        #expect(mismatch.reason.contains("id"))
    }

    @Test func anyInAStrictElement() throws {
        let expected = "<iq><query xmlns='urn:q' ver='{scansion:any}'/></iq>"
        #expect(try Fixture.matches(expected, "<iq><query xmlns='urn:q' ver='17'/></iq>"))
        #expect(try !Fixture.matches(expected, "<iq><query xmlns='urn:q'/></iq>"))
        #expect(try !Fixture.matches(expected, "<iq><query xmlns='urn:q' ver='17' other='1'/></iq>"))
    }

    @Test func anyIsOnlyTheWholeValue() throws {
        #expect(try !Fixture.matches("<iq id='x{scansion:any}'/>", "<iq id='xyz'/>"))
        #expect(try Fixture.matches("<iq id='x{scansion:any}'/>", "<iq id='x{scansion:any}'/>"))
    }

    @Test func firstUseOfACaptureRecordsTheValue() throws {
        var matcher = StanzaMatcher()
        let expected = try Fixture.expected("<iq type='result' id='{scansion:capture:req}'/>")
        #expect(
            matcher.match(expected: expected, received: try Fixture.received("<iq type='result' id='abc'/>")) == nil)
        #expect(matcher.captures == ["req": "abc"])
    }

    @Test func laterUsesMustBeEqual() throws {
        var matcher = StanzaMatcher()
        let first = try Fixture.expected("<iq type='result' id='{scansion:capture:req}'/>")
        #expect(matcher.match(expected: first, received: try Fixture.received("<iq type='result' id='abc'/>")) == nil)

        let later = try Fixture.expected("<message><x xmlns='urn:x' ref='{scansion:capture:req}'/></message>")
        #expect(
            matcher.match(
                expected: later, received: try Fixture.received("<message><x xmlns='urn:x' ref='abc'/></message>"))
                == nil)

        let mismatch = try #require(
            matcher.match(
                expected: later, received: try Fixture.received("<message><x xmlns='urn:x' ref='abd'/></message>")))
        #expect(mismatch.reason.contains("req"))
        #expect(mismatch.reason.contains("abc") && mismatch.reason.contains("abd"))
        #expect(matcher.captures == ["req": "abc"])
    }

    @Test func captureTwiceInOneStanzaMustBeEqual() throws {
        let expected = "<message id='{scansion:capture:k}'><x xmlns='urn:x' ref='{scansion:capture:k}'/></message>"
        #expect(try Fixture.matches(expected, "<message id='7'><thread/><x xmlns='urn:x' ref='7'/></message>"))
        #expect(
            try !Fixture.matches(expected, "<message id='7'><thread/><x xmlns='urn:x' ref='8'/></message>"))
    }

    @Test func differentKeysAreIndependent() throws {
        var matcher = StanzaMatcher()
        let expected = try Fixture.expected("<iq id='{scansion:capture:a}' to='{scansion:capture:b}'/>")
        #expect(matcher.match(expected: expected, received: try Fixture.received("<iq id='1' to='2'/>")) == nil)
        #expect(matcher.captures == ["a": "1", "b": "2"])
    }

    @Test func failedMatchDoesNotRecordCaptures() throws {
        var matcher = StanzaMatcher()
        let expected = try Fixture.expected("<iq type='result' id='{scansion:capture:req}'/>")
        #expect(matcher.match(expected: expected, received: try Fixture.received("<iq type='error' id='abc'/>")) != nil)
        #expect(matcher.captures.isEmpty)
        // The failed attempt did not bind the key: a later stanza may bind it to anything.
        #expect(
            matcher.match(expected: expected, received: try Fixture.received("<iq type='result' id='xyz'/>")) == nil)
        #expect(matcher.captures == ["req": "xyz"])
    }

    @Test func failedMatchAfterACaptureInsideItDoesNotRecord() throws {
        // The capture is met (and would be recorded) before the child that fails.
        var matcher = StanzaMatcher()
        let expected = try Fixture.expected("<iq id='{scansion:capture:req}'><query xmlns='urn:q'><a/></query></iq>")
        #expect(
            matcher.match(
                expected: expected, received: try Fixture.received("<iq id='1'><query xmlns='urn:q'><b/></query></iq>"))
                != nil)
        #expect(matcher.captures.isEmpty)
    }

    @Test func captureFromARejectedCandidateChildIsNotKept() throws {
        // The first <item> is tried and rejected (b differs) after `a` was captured from it.
        var matcher = StanzaMatcher()
        let expected = try Fixture.expected("<message><item a='{scansion:capture:k}' b='2'/></message>")
        let received = try Fixture.received("<message><item a='first' b='1'/><item a='second' b='2'/></message>")
        #expect(matcher.match(expected: expected, received: received) == nil)
        #expect(matcher.captures == ["k": "second"])
    }

    @Test func capturesAreSharedAcrossOneMatcherOnly() throws {
        let expected = try Fixture.expected("<iq id='{scansion:capture:req}'/>")
        var first = StanzaMatcher()
        #expect(first.match(expected: expected, received: try Fixture.received("<iq id='1'/>")) == nil)
        var second = StanzaMatcher()
        #expect(second.match(expected: expected, received: try Fixture.received("<iq id='2'/>")) == nil)
        #expect(first.match(expected: expected, received: try Fixture.received("<iq id='2'/>")) != nil)
    }

    @Test func captureStillRequiresTheAttribute() throws {
        var matcher = StanzaMatcher()
        let expected = try Fixture.expected("<iq type='result' id='{scansion:capture:req}'/>")
        #expect(matcher.match(expected: expected, received: try Fixture.received("<iq type='result'/>")) != nil)
        #expect(matcher.captures.isEmpty)
    }
}
