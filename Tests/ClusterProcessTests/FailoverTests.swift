import Foundation
import Testing
import XMPPCore

extension ClusterProcessTests {
    /// `kill -9` of the node that owns a busy room.
    @Suite(.timeLimit(.minutes(3)))
    struct Failover {
        @Test func killingTheOwnerOfABusyRoomLosesNothingAfterTheTakeover() async throws {
            try await Cluster.run(test: "failover", nodes: 3) { cluster in
                let room = "busy@conference.localhost"
                try await cluster.addUser("romeo@localhost")
                try await cluster.addUser("juliet@localhost")
                let x = try #require(try await cluster.roomWhere(room).ringOwner)
                let others = cluster.nodeNames.filter { $0 != x }
                let romeo = try await cluster.connect("romeo@localhost", to: others[0], resource: "balcony")
                let juliet = try await cluster.connect("juliet@localhost", to: others[1], resource: "garden")

                try await romeo.join(room, nick: "Romeo")
                try await romeo.configure(room, [("muc#roomconfig_persistentroom", "1"), ("muc#roomconfig_membersonly", "1")])
                try await romeo.setAffiliation(room, jid: juliet.bare, "member")
                try await juliet.join(room, nick: "Juliet")
                let before = try await cluster.roomWhere(room)
                #expect(before.owner == x, "\(before)")
                let epoch = try #require(before.epoch)
                // The occupancy is stored, so that a new owner can continue the room.
                try await eventually("both occupants in room_occupants") {
                    try await cluster.sql.occupantCount(of: room) == 2 ? true : nil
                }

                let romeoSends = NumberedSender(romeo, name: "romeo", rooms: [room])
                let julietSends = NumberedSender(juliet, name: "juliet", rooms: [room])
                // Traffic flows both ways before the crash.
                try await juliet.waitFor("romeo #10") { MUCStanza.isNumbered($0, "romeo", 10) }
                try await romeo.waitFor("juliet #10") { MUCStanza.isNumbered($0, "juliet", 10) }
                let romeoMark = romeo.count
                let julietMark = juliet.count

                try await cluster.crash(x)
                let killed = ContinuousClock.now
                // Within the lease plus a margin, another node owns the room, with a higher epoch.
                let after = try await eventually("a new owner of \(room) after \(x) was killed", timeout: .seconds(cluster.leaseSeconds + 8)) {
                    () -> Cluster.RoomWhere? in
                    let now = try await cluster.roomWhere(room)
                    guard let owner = now.owner, owner != x, let newEpoch = now.epoch, newEpoch > epoch else { return nil }
                    return now
                }
                let takeover = ContinuousClock.now
                report("[failover] \(x) killed; \(after) after \(String(format: "%.0f", (takeover - killed).milliseconds)) ms")
                #expect(after.ringOwner == after.owner)

                // Keep talking for a while through the new owner, then stop.
                let romeoTarget = romeoSends.sentCount(room) + 40
                let julietTarget = julietSends.sentCount(room) + 40
                try await eventually("40 more messages from each", timeout: .seconds(20)) {
                    romeoSends.sentCount(room) >= romeoTarget && julietSends.sentCount(room) >= julietTarget ? true : nil
                }
                await romeoSends.stop()
                await julietSends.stop()
                let romeoLast = romeoSends.sentCount(room)
                let julietLast = julietSends.sentCount(room)
                for receiver in [romeo, juliet] {
                    try await receiver.waitFor("romeo #\(romeoLast)", after: 0, timeout: .seconds(10)) {
                        MUCStanza.isNumbered($0, "romeo", romeoLast)
                    }
                    try await receiver.waitFor("juliet #\(julietLast)", after: 0, timeout: .seconds(10)) {
                        MUCStanza.isNumbered($0, "juliet", julietLast)
                    }
                }

                // Every message sent after the takeover: exactly once to each occupant, in order.
                for (sender, name) in [(romeoSends, "romeo"), (julietSends, "juliet")] {
                    let expected = sender.sent(to: room, since: takeover).map(\.number)
                    #expect(!expected.isEmpty)
                    for receiver in [romeo, juliet] {
                        let check = DeliveryCheck(receiver: receiver, sender: name, room: room, expected: expected)
                        // In order too: what a sender's node had queued for the dead owner is
                        // routed to the new one before anything routed by the new ring.
                        #expect(check.ok, "after the takeover: \(check)")
                        // Before it (sent while the owner was dead or dying): reported, not required.
                        let earlier = sender.sent(to: room).map(\.number).filter { !expected.contains($0) }
                        let gap = DeliveryCheck(receiver: receiver, sender: name, room: room, expected: earlier)
                        if !gap.ok { report("[failover] before the takeover (not required): \(gap)") }
                        #expect(gap.duplicated.isEmpty, "a message delivered twice: \(gap)")
                    }
                }
                let errors = romeo.errors(from: romeoMark) + juliet.errors(from: julietMark)
                if !errors.isEmpty {
                    report("[failover] \(errors.count) error stanza(s) after the crash, e.g. \(errors.prefix(3).map { String($0.description.prefix(300)) })")
                }

                // Failover time: from the kill to the first message sent after it that arrived
                // (so it went through the new owner).
                var firstDelivery: ContinuousClock.Instant?
                for (sender, name) in [(romeoSends, "romeo"), (julietSends, "juliet")] {
                    let sentAfterKill = Set(sender.sent(to: room, since: killed).map(\.number))
                    for receiver in [romeo, juliet] {
                        if let first = receiver.numbers(from: name, in: room).first(where: { sentAfterKill.contains($0.number) }) {
                            firstDelivery = min(firstDelivery ?? first.at, first.at)
                        }
                    }
                }
                let delivered = try #require(firstDelivery, "no message sent after the kill arrived")
                report("FIGURE failover_ms=\(String(format: "%.0f", (delivered - killed).milliseconds))")
                #expect(delivered - killed < .seconds(cluster.leaseSeconds + 5))

                // Nobody on a live node left the room.
                for (session, mark) in [(romeo, romeoMark), (juliet, julietMark)] {
                    let left = session.elements(from: mark).map(\.element).filter {
                        $0.name == "presence" && $0.type == "unavailable" && ($0[attribute: "from"] ?? "").hasPrefix(room + "/")
                    }
                    #expect(left.isEmpty, "\(session.label) saw occupants leave: \(left)")
                }
                #expect(try await cluster.sql.occupantCount(of: room) == 2)

                // Configuration and affiliations survived: persistent, members-only, Juliet a member.
                let info = try await juliet.iq("get", to: room, XMLElement("query", namespace: Namespace.discoInfo))
                let features = Set(info.child("query", namespace: Namespace.discoInfo)?.children("feature").compactMap { $0[attribute: "var"] } ?? [])
                #expect(features.isSuperset(of: ["muc_persistent", "muc_membersonly"]), "disco#info after the failover: \(info)")
                let members = try await romeo.iq(
                    "get", to: room,
                    XMLElement("query", namespace: Namespace.mucAdmin, children: [XMLElement("item", namespace: Namespace.mucAdmin, ["affiliation": "member"])])
                )
                let memberJIDs = members.child("query", namespace: Namespace.mucAdmin)?.children("item").compactMap { $0[attribute: "jid"] } ?? []
                #expect(memberJIDs == [juliet.bare], "member list after the failover: \(members)")
                // And a stranger still cannot enter the members-only room.
                try await cluster.addUser("tybalt@localhost")
                let tybalt = try await cluster.connect("tybalt@localhost", to: after.owner!, resource: "street")
                let mark = tybalt.count
                tybalt.send(XMLElement("presence", namespace: Namespace.client, ["to": "\(room)/Tybalt"], children: [XMLElement("x", namespace: Namespace.muc)]))
                let refused = try await tybalt.waitFor("the refusal", after: mark) { $0.name == "presence" && $0[attribute: "from"] == "\(room)/Tybalt" }
                #expect(refused.element.stanzaError?.condition == .registrationRequired, "\(refused.element)")
            }
        }
    }
}
