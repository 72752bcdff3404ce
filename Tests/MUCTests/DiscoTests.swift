import MUC
import Testing
import XMPPCore

/// XEP-0045 §6.4 and §6.5: what service discovery tells anyone about a room.
@Suite struct DiscoTests {
    static func info(_ test: inout TestRoom, from real: JID = Cast.mercutio, node: String? = nil) -> XMLElement? {
        var query = Build.query(Namespace.discoInfo)
        query[attribute: "node"] = node
        let effects = test.send(Build.iq("get", from: real, id: "info1", payload: query), from: real)
        #expect(effects.stanzas.count == 1)
        #expect(effects.stanzas.first?.type == "result")
        #expect(effects.stanzas.first?.id == "info1")
        #expect(effects.stanzas.first?[attribute: "to"] == real.description)
        return effects.stanzas.first?.child("query", namespace: Namespace.discoInfo)
    }

    static func features(_ query: XMLElement?) -> Set<String> {
        Set((query?.children("feature", namespace: Namespace.discoInfo) ?? []).compactMap { $0[attribute: "var"] })
    }

    /// As Prosody's: a room without a name has an identity without one.
    @Test func anUnnamedRoomIsAConferenceWithoutAName() throws {
        var test = TestRoom.open()
        let identity = try #require(Self.info(&test)?.child("identity", namespace: Namespace.discoInfo))
        #expect(identity[attribute: "category"] == "conference")
        #expect(identity[attribute: "type"] == "text")
        #expect(identity[attribute: "name"] == nil)
    }

    @Test func aNamedRoomIsCalledByItsName() throws {
        var test = TestRoom.open { $0.name = "The Capulet Ball" }
        let identity = try #require(Self.info(&test)?.child("identity", namespace: Namespace.discoInfo))
        #expect(identity[attribute: "name"] == "The Capulet Ball")
    }

    @Test func theRoomAlwaysAdvertisesMUCAndItsExtensions() {
        var test = TestRoom.open()
        let features = Self.features(Self.info(&test))
        for feature in [
            Namespace.muc, "http://jabber.org/protocol/muc#stable_id",
            "http://jabber.org/protocol/muc#self-ping-optimization",
            Namespace.occupantID, Namespace.stanzaID, Namespace.discoInfo, Namespace.discoItems,
        ] {
            #expect(features.contains(feature), "\(feature)")
        }
    }

    @Test func theDefaultRoomIsHiddenTemporaryOpenUnsecuredSemiAnonymousUnmoderated() {
        var test = TestRoom.open()
        let roomFeatures = Self.features(Self.info(&test)).filter { $0.hasPrefix("muc_") }
        #expect(
            roomFeatures
                == ["muc_hidden", "muc_temporary", "muc_open", "muc_unsecured", "muc_semianonymous", "muc_unmoderated"]
        )
    }

    @Test func theOppositeConfigurationShowsTheOppositeFeatures() {
        var test = TestRoom.open {
            $0.isPublic = true
            $0.persistent = true
            $0.membersOnly = true
            $0.password = "nightingale"
            $0.whois = .anyone
            $0.moderated = true
        }
        let roomFeatures = Self.features(Self.info(&test)).filter { $0.hasPrefix("muc_") }
        #expect(
            roomFeatures == [
                "muc_public", "muc_persistent", "muc_membersonly", "muc_passwordprotected", "muc_nonanonymous",
                "muc_moderated",
            ]
        )
    }

    @Test func theRoomInfoFormDescribesTheRoom() throws {
        var test = TestRoom.open(
            {
                $0.name = "The Capulet Ball"
                $0.description = "A feast"
                $0.language = "it"
                $0.allowPM = .moderators
                $0.historyLength = 12
            },
            occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")]
        )
        test.room.subject = "Fair Verona"
        let form = try #require(Self.info(&test)?.dataForm)
        #expect(form.type == "result")
        #expect(form.formType == Namespace.mucRoomInfo)
        #expect(form["FORM_TYPE"]?.type == "hidden")
        #expect(form["muc#roominfo_occupants"]?.value == "2")
        #expect(form["muc#roomconfig_roomname"]?.value == "The Capulet Ball")
        #expect(form["muc#roominfo_description"]?.value == "A feast")
        #expect(form["muc#roominfo_lang"]?.value == "it")
        #expect(form["muc#roominfo_subject"]?.value == "Fair Verona")
        #expect(form["muc#roomconfig_allowpm"]?.value == "moderators")
        #expect(form["muc#roomconfig_changesubject"]?.value == "0")
        #expect(form["muc#maxhistoryfetch"]?.value == "12")
    }

    @Test func theOccupantCountFollowsTheRoom() throws {
        var test = TestRoom.open()
        test.join(Cast.juliet, nick: "Juliet")
        test.join(Cast.mercutio, nick: "Mercutio")
        test.leave(Cast.juliet, nick: "Juliet")
        #expect(try #require(Self.info(&test)?.dataForm)["muc#roominfo_occupants"]?.value == "2")
    }

    @Test func aNodeIsEchoed() {
        var test = TestRoom.open()
        #expect(Self.info(&test, node: "x-roominfo")?[attribute: "node"] == "x-roominfo")
    }

    @Test func itemsAreEmptyEvenWithOccupants() throws {
        var test = TestRoom.open(occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")])
        let request = Build.iq("get", from: Cast.mercutio, id: "items2", payload: Build.query(Namespace.discoItems))
        let effects = test.send(request, from: Cast.mercutio)
        let reply = try #require(effects.stanzas.first)
        #expect(effects.stanzas.count == 1)
        #expect(reply.type == "result")
        #expect(reply.id == "items2")
        let query = try #require(reply.child("query", namespace: Namespace.discoItems))
        #expect(query.children.isEmpty)
    }
}
