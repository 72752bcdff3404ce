import MUC
import Testing
import XMPPCore

/// XEP-0045 §10.2: the owner's muc#owner configuration form, what submitting it does,
/// and the status codes occupants are told.
@Suite struct OwnerConfigurationTests {

    static func requestForm(_ test: inout TestRoom, as real: JID) -> XMLElement? {
        let request = Build.iq("get", from: real, id: "form1", payload: Build.query(Namespace.mucOwner))
        let effects = test.send(request, from: real)
        #expect(effects.stanzas.count == 1)
        return effects.stanzas.first
    }

    static let fieldTypes: [(String, String)] = [
        ("FORM_TYPE", "hidden"), ("muc#roomconfig_roomname", "text-single"), ("muc#roomconfig_roomdesc", "text-single"),
        ("muc#roomconfig_lang", "text-single"), ("muc#roomconfig_persistentroom", "boolean"),
        ("muc#roomconfig_publicroom", "boolean"), ("muc#roomconfig_membersonly", "boolean"),
        ("muc#roomconfig_moderatedroom", "boolean"), ("muc#roomconfig_passwordprotectedroom", "boolean"),
        ("muc#roomconfig_roomsecret", "text-private"), ("muc#roomconfig_whois", "list-single"),
        ("muc#roomconfig_changesubject", "boolean"), ("muc#roomconfig_allowinvites", "boolean"),
        ("muc#roomconfig_allowpm", "list-single"), ("muc#roomconfig_maxusers", "list-single"),
        ("muc#roomconfig_presencebroadcast", "list-multi"), ("muc#roomconfig_getmemberlist", "list-multi"),
        ("muc#roomconfig_historylength", "text-single"), ("muc#roomconfig_defaulthistorymessages", "text-single"),
        ("muc#roomconfig_enablelogging", "boolean"),
    ]

    @Test func theOwnerGetsTheFormWithEveryField() throws {
        var test = TestRoom.twoInside()
        let reply = try #require(Self.requestForm(&test, as: Cast.romeo))
        #expect(reply.type == "result")
        #expect(reply.id == "form1")
        let form = try #require(reply.child("query", namespace: Namespace.mucOwner)?.dataForm)
        #expect(form.type == "form")
        #expect(form.formType == Namespace.mucRoomConfig)
        #expect(form.fields.map(\.variable) == Self.fieldTypes.map(\.0))
        #expect(form.fields.map(\.type) == Self.fieldTypes.map(\.1))
    }

    @Test func theFormShowsTheCurrentValues() throws {
        var test = TestRoom.twoInside {
            $0.name = "Capulet Hall"
            $0.moderated = true
            $0.whois = .anyone
            $0.maxUsers = 30
            $0.historyLength = 5
        }
        let form = try #require(Self.requestForm(&test, as: Cast.romeo)?.child("query")?.dataForm)
        #expect(form["muc#roomconfig_roomname"]?.value == "Capulet Hall")
        #expect(form["muc#roomconfig_moderatedroom"]?.value == "1")
        #expect(form["muc#roomconfig_membersonly"]?.value == "0")
        #expect(form["muc#roomconfig_whois"]?.value == "anyone")
        #expect(form["muc#roomconfig_maxusers"]?.value == "30")
        #expect(form["muc#roomconfig_historylength"]?.value == "5")
        #expect(form["muc#roomconfig_presencebroadcast"]?.values == ["moderator", "participant", "visitor"])
    }

    @Test(arguments: [Cast.juliet, Cast.nurse, Cast.mercutio])
    func onlyOwnersMayGetOrSubmitTheForm(real: JID) throws {
        var test = TestRoom.open(
            { _ in }, affiliations: [Cast.nurse: .admin], occupants: [(Cast.romeo, "Romeo"), (Cast.juliet, "Juliet")])
        let denied = try #require(Self.requestForm(&test, as: real))
        #expect(denied.errorCondition == .forbidden)
        #expect(denied.errorType == .auth)
        let submitted = test.configure(real, [("muc#roomconfig_roomname", ["Juliet's room"])])
        #expect(submitted.stanzas.map(\.errorCondition) == [.forbidden])
        #expect(submitted.changes.isEmpty)
        #expect(test.room.configuration.name == "")
    }

    /// A submitted field, its values, and what the configuration must then say.
    static let submissions: [(String, [String], @Sendable (RoomConfiguration) -> Bool)] = [
        ("muc#roomconfig_roomname", ["Capulet Hall"], { $0.name == "Capulet Hall" }),
        ("muc#roomconfig_roomdesc", ["A feast"], { $0.description == "A feast" }),
        ("muc#roomconfig_lang", ["it"], { $0.language == "it" }),
        ("muc#roomconfig_persistentroom", ["1"], { $0.persistent }),
        ("muc#roomconfig_publicroom", ["true"], { $0.isPublic }),
        ("muc#roomconfig_membersonly", ["1"], { $0.membersOnly }),
        ("muc#roomconfig_moderatedroom", ["1"], { $0.moderated }),
        ("muc#roomconfig_roomsecret", ["nightingale"], { $0.password == "nightingale" && $0.passwordProtected }),
        ("muc#roomconfig_whois", ["anyone"], { $0.whois == .anyone }),
        ("muc#roomconfig_changesubject", ["1"], { $0.changeSubject }),
        ("muc#roomconfig_allowinvites", ["1"], { $0.allowInvites }),
        ("muc#roomconfig_allowpm", ["moderators"], { $0.allowPM == .moderators }),
        ("muc#roomconfig_maxusers", ["50"], { $0.maxUsers == 50 }),
        ("muc#roomconfig_presencebroadcast", ["moderator"], { $0.presenceBroadcast == [.moderator] }),
        (
            "muc#roomconfig_getmemberlist", ["moderator", "participant"],
            { $0.getMemberList == [.moderator, .participant] }
        ),
        ("muc#roomconfig_historylength", ["7"], { $0.historyLength == 7 }),
        ("muc#roomconfig_enablelogging", ["1"], { $0.logging }),
    ]

    @Test(arguments: submissions)
    func submittingAFieldAppliesIt(variable: String, values: [String], check: @Sendable (RoomConfiguration) -> Bool) {
        var test = TestRoom.open()
        let effects = test.configure(Cast.romeo, [(variable, values)])
        #expect(effects.iqs(to: Cast.romeo).first?.type == "result")
        #expect(check(test.room.configuration))
        #expect(effects.changes == [.configured(test.room.configuration)])
    }

    @Test func aFormOfAnotherTypeIsABadRequest() throws {
        var test = TestRoom.twoInside()
        let form = DataForm(
            type: "submit",
            fields: [
                .init("FORM_TYPE", values: ["urn:example:not-a-room-config"]),
                .init("muc#roomconfig_roomname", values: ["X"]),
            ]
        )
        let request = Build.iq(
            "set", from: Cast.romeo, id: "c4", payload: Build.query(Namespace.mucOwner, [form.element]))
        let effects = test.send(request, from: Cast.romeo)
        #expect(effects.stanzas.count == 1)
        #expect(effects.stanzas.first?.errorCondition == .badRequest)
        #expect(effects.stanzas.first?.errorType == .cancel)
        #expect(test.room.configuration == RoomConfiguration())
    }

    @Test(arguments: [
        ("muc#roomconfig_whois", "everyone"), ("muc#roomconfig_maxusers", "-3"), ("muc#roomconfig_maxusers", "lots"),
        ("muc#roomconfig_historylength", "-1"), ("muc#roomconfig_historylength", "many"),
        ("muc#roomconfig_allowpm", "all"),
    ])
    func anInvalidValueIsNotAcceptable(variable: String, value: String) {
        var test = TestRoom.twoInside()
        let effects = test.configure(Cast.romeo, [("muc#roomconfig_roomname", ["Changed"]), (variable, [value])])
        #expect(effects.stanzas.count == 1)
        #expect(effects.stanzas.first?.errorCondition == .notAcceptable)
        #expect(effects.changes.isEmpty)
        #expect(test.room.configuration == RoomConfiguration(), "nothing of the form is applied")
    }

    @Test(arguments: ["form", "result"])
    func aFormThatIsNotSubmittedIsABadRequest(type: String) {
        var test = TestRoom.twoInside()
        let request = Build.iq(
            "set", from: Cast.romeo, id: "c5", payload: Build.query(Namespace.mucOwner, [DataForm(type: type).element])
        )
        #expect(test.send(request, from: Cast.romeo).stanzas.first?.errorCondition == .badRequest)
    }

    @Test func aSetWithNeitherFormNorDestroyIsABadRequest() {
        var test = TestRoom.twoInside()
        let request = Build.iq("set", from: Cast.romeo, id: "c6", payload: Build.query(Namespace.mucOwner))
        #expect(test.send(request, from: Cast.romeo).stanzas.first?.errorCondition == .badRequest)
    }
}
