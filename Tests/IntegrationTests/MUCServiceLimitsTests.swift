import Foundation
import MUC
import MUCService
import StoragePostgres
import Testing
import XMPPCore

/// The limits the service applies outside any one room (issue 13): how many rooms one
/// user may own (counted in PostgreSQL, so across the cluster) and how many rooms one
/// disco#items answer lists (XEP-0059 paging for the rest). A real `MUCService` on the
/// real PostgreSQL store.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(2)))
struct MUCServiceLimitsTests {
    typealias Service = RoomStoreFailureTests.Service

    static func unique(_ prefix: String) -> String { prefix + String(UInt64.random(in: 0...UInt64.max), radix: 36) }

    static func room(_ name: String) throws -> JID { try JID("\(name)@conference.localhost") }

    /// `owner` creates `room`, public so that the service lists it.
    static func createPublic(_ room: JID, by owner: JID, in service: Service) async throws {
        let joined = try await service.join(room, as: owner, nick: "owner")
        #expect(joined.type != "error", "creating \(room) failed: \(joined)")
        var form = XMLElement("x", namespace: Namespace.dataForms, ["type": "submit"])
        var field = XMLElement("field", namespace: Namespace.dataForms, ["var": "muc#roomconfig_publicroom"])
        field.append(XMLElement("value", namespace: Namespace.dataForms, text: "1"))
        form.append(field)
        let answer = try await service.iq(
            "set", to: room, from: owner, id: "create-\(room.localpart!)",
            XMLElement("query", namespace: Namespace.mucOwner, children: [form])
        )
        #expect(answer.type == "result")
    }

    @Test func aUserWhoOwnsTheMostRoomsMayNotCreateAnother() async throws {
        var limits = RoomLimits()
        limits.roomsPerUser = 2
        let service = try await Service.start(prefix: "limits-owner-", limits: limits)
        let owner = try JID(Self.unique("builder") + "@localhost/desk")
        for index in 1...2 {
            try await service.create(try Self.room(Self.unique("owned\(index)-")), by: owner)
        }
        let store = PostgresRoomStore(client: try await TestDatabase.shared.connected(), logger: TestEnvironment.logger)
        #expect(try await store.ownedRoomCount(owner) == 2)

        let third = try Self.room(Self.unique("third-"))
        let refused = try await service.join(third, as: owner, nick: "owner")
        #expect(refused.type == "error")
        #expect(refused.stanzaError?.condition == .policyViolation)
        #expect(refused.child("x", namespace: Namespace.muc) != nil)
        #expect(try await store.ownedRoomCount(owner) == 2)

        // Someone else may create that room; joining an existing room is not limited.
        let other = try JID(Self.unique("other") + "@localhost/desk")
        let created = try await service.join(third, as: other, nick: "other")
        #expect(created.type != "error")
        #expect(
            created.child("x", namespace: Namespace.mucUser)?.children("status", namespace: Namespace.mucUser)
                .contains { $0[attribute: "code"] == "201" } == true)
        await service.stop()
    }

    @Test func theRoomListIsAnsweredInPagesOfAtMostTheLimit() async throws {
        var limits = RoomLimits()
        limits.discoItemsMax = 3
        let service = try await Service.start(prefix: "limits-disco-", limits: limits)
        let owner = try JID(Self.unique("lister") + "@localhost/desk")
        let prefix = Self.unique("listed-")
        var mine: Set<String> = []
        for index in 1...7 {
            let room = try Self.room("\(prefix)\(index)")
            try await Self.createPublic(room, by: owner, in: service)
            mine.insert(room.description)
        }
        let client = try JID(Self.unique("reader") + "@localhost/desk")
        func page(after: String?, max: Int?, id: String) async throws -> XMLElement {
            var query = XMLElement("query", namespace: Namespace.discoItems)
            if after != nil || max != nil {
                var set = XMLElement("set", namespace: "http://jabber.org/protocol/rsm")
                if let max {
                    set.append(XMLElement("max", namespace: "http://jabber.org/protocol/rsm", text: "\(max)"))
                }
                if let after {
                    set.append(XMLElement("after", namespace: "http://jabber.org/protocol/rsm", text: after))
                }
                query.append(set)
            }
            let answer = try await service.iq("get", to: service.muc.domain, from: client, id: id, query)
            #expect(answer.type == "result")
            return try #require(answer.child("query", namespace: Namespace.discoItems))
        }
        func items(_ query: XMLElement) -> [String] {
            query.children("item", namespace: Namespace.discoItems).compactMap { $0[attribute: "jid"] }
        }
        func set(_ query: XMLElement, _ name: String) -> String? {
            query.child("set", namespace: "http://jabber.org/protocol/rsm")?
                .child(name, namespace: "http://jabber.org/protocol/rsm")?.text
        }

        // Without <set/>: the first three, and a <set/> saying there are more.
        let first = try await page(after: nil, max: nil, id: "items-plain")
        #expect(items(first).count == 3)
        let total = try #require(set(first, "count").flatMap(Int.init))
        #expect(total >= 7, "other tests' public rooms may be listed too")
        #expect(set(first, "last") == items(first).last)

        // Asking for more than the limit gets the limit; paging with <after/> reaches every room once.
        var seen: [String] = []
        var after: String?
        var request = 0
        repeat {
            request += 1
            let query = try await page(after: after, max: 100, id: "items-\(request)")
            let listed = items(query)
            #expect(listed.count <= 3)
            #expect(set(query, "first") == listed.first)
            seen += listed
            after = listed.isEmpty ? nil : set(query, "last")
        } while after != nil && request < 1000
        #expect(Set(seen).count == seen.count, "no room twice")
        #expect(mine.isSubset(of: Set(seen)))
        await service.stop()
    }
}
