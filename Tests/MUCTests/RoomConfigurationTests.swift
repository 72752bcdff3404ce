import MUC
import Testing
import XMPPCore

/// `RoomConfiguration` on its own: defaults, the form it shows, reading a submitted
/// form back, and the status codes for a change.
@Suite struct RoomConfigurationTests {
    static let room = Cast.room

    /// Every setting away from its default.
    static var unusual: RoomConfiguration {
        var configuration = RoomConfiguration()
        configuration.name = "Capulet Hall"
        configuration.description = "A feast & a dance"
        configuration.language = "it"
        configuration.persistent = true
        configuration.isPublic = true
        configuration.membersOnly = true
        configuration.moderated = true
        configuration.password = "nightingale"
        configuration.whois = .anyone
        configuration.changeSubject = true
        configuration.allowInvites = true
        configuration.allowPM = .participants
        configuration.maxUsers = 30
        configuration.presenceBroadcast = [.moderator]
        configuration.getMemberList = []
        configuration.historyLength = 7
        configuration.defaultHistoryMessages = 5
        configuration.logging = true
        return configuration
    }

    /// The form as a client gets it and submits it back unchanged.
    static func submitted(_ configuration: RoomConfiguration) -> DataForm? {
        var form = configuration.form(room: room)
        form.type = "submit"
        return DataForm(element: form.element)
    }

    @Test func theDefaultsAreProsodys() {
        let configuration = RoomConfiguration()
        #expect(!configuration.persistent && !configuration.isPublic && !configuration.membersOnly)
        #expect(!configuration.moderated && !configuration.passwordProtected && !configuration.logging)
        #expect(configuration.whois == .moderators)
        #expect(!configuration.changeSubject && !configuration.allowInvites)
        #expect(configuration.allowPM == .anyone)
        #expect(configuration.maxUsers == nil)
        #expect(configuration.historyLength == 20)
        #expect(configuration.presenceBroadcast == [.moderator, .participant, .visitor])
    }

    @Test(arguments: [RoomConfiguration(), unusual])
    func aSubmittedFormReadsBackAsTheSameConfiguration(configuration: RoomConfiguration) throws {
        let form = try #require(Self.submitted(configuration))
        #expect(try RoomConfiguration().applying(form).get() == configuration)
    }

    @Test func theFormIsTitledForTheRoom() {
        let form = RoomConfiguration().form(room: Self.room)
        #expect(form.title == "Configuration for \(Self.room)")
        #expect(form.instructions != nil)
    }

    @Test func listFieldsOfferTheirChoices() throws {
        let element = RoomConfiguration().form(room: Self.room).element
        func options(_ variable: String) -> [String] {
            let field = element.children("field", namespace: Namespace.dataForms).first {
                $0[attribute: "var"] == variable
            }
            return (field?.children("option", namespace: Namespace.dataForms) ?? []).map {
                $0.child("value")?.text ?? ""
            }
        }
        #expect(options("muc#roomconfig_whois") == ["moderators", "anyone"])
        #expect(options("muc#roomconfig_allowpm") == ["anyone", "participants", "moderators", "none"])
        #expect(options("muc#roomconfig_maxusers").first == "none")
        #expect(options("muc#roomconfig_presencebroadcast") == ["moderator", "participant", "visitor"])
    }

    @Test func fieldsLeftOutKeepTheirValues() throws {
        let form = DataForm(type: "submit", fields: [.init("muc#roomconfig_roomname", values: ["Renamed"])])
        var expected = Self.unusual
        expected.name = "Renamed"
        #expect(try Self.unusual.applying(form).get() == expected)
    }

    @Test func unknownFieldsAreIgnored() throws {
        let form = DataForm(type: "submit", fields: [.init("x-prosody#roomconfig_unknown", values: ["1"])])
        #expect(try Self.unusual.applying(form).get() == Self.unusual)
    }

    @Test func aBooleanFieldWithoutValueChangesNothing() throws {
        let form = DataForm(type: "submit", fields: [.init("muc#roomconfig_persistentroom")])
        #expect(try Self.unusual.applying(form).get().persistent)
    }

    @Test func turningPasswordProtectionOffClearsThePassword() throws {
        let form = DataForm(type: "submit", fields: [.init("muc#roomconfig_passwordprotectedroom", values: ["0"])])
        #expect(try Self.unusual.applying(form).get().password == "")
    }

    @Test(arguments: [("none", Int?.none), ("0", nil), ("", nil), ("25", 25)])
    func maxusersNoneOrZeroMeansNoLimit(value: String, expected: Int?) throws {
        let form = DataForm(type: "submit", fields: [.init("muc#roomconfig_maxusers", values: [value])])
        #expect(try Self.unusual.applying(form).get().maxUsers == expected)
    }

    @Test func historyLengthIsCappedAtAThousand() throws {
        let form = DataForm(type: "submit", fields: [.init("muc#roomconfig_historylength", values: ["5000"])])
        #expect(try RoomConfiguration().applying(form).get().historyLength == 1000)
    }

    @Test func aForeignFormTypeIsABadRequestOfTypeCancel() {
        let form = DataForm(type: "submit", fields: [.init("FORM_TYPE", values: ["urn:example:other"])])
        guard case .failure(let error) = RoomConfiguration().applying(form) else {
            Issue.record("a foreign FORM_TYPE was accepted")
            return
        }
        #expect(error.condition == .badRequest)
        #expect(error.type == .cancel)
    }

    /// A change, and the codes the occupants must be told.
    static let changes: [(String, @Sendable (inout RoomConfiguration) -> Void, [Int])] = [
        ("nothing", { _ in }, []),
        ("name", { $0.name = "Capulet Hall" }, [104]),
        ("members-only", { $0.membersOnly = true }, [104]),
        ("whois anyone", { $0.whois = .anyone }, [172]),
        ("logging on", { $0.logging = true }, [170]),
        (
            "name and whois",
            {
                $0.name = "Capulet Hall"; $0.whois = .anyone
            }, [104, 172]
        ),
        (
            "all three",
            {
                $0.moderated = true; $0.whois = .anyone; $0.logging = true
            }, [104, 170, 172]
        ),
    ]

    @Test(arguments: changes)
    func changeStatusCodesNameWhatChanged(
        label: String, change: @Sendable (inout RoomConfiguration) -> Void, codes: [Int]
    ) {
        var next = RoomConfiguration()
        change(&next)
        #expect(next.changeStatusCodes(from: RoomConfiguration()) == codes, "\(label)")
    }

    @Test func goingBackSaysTheOppositeCodes() {
        let old = Self.unusual
        var next = old
        next.whois = .moderators
        next.logging = false
        #expect(next.changeStatusCodes(from: old) == [171, 173])
    }
}
