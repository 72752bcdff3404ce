import ClusterTestSupport
import Foundation
import PostgresNIO
import Testing
import XMPPCore

extension ClusterProcessTests {
    /// The seed with its two clients and its room on three different nodes, then the same
    /// membership loss made outside the room: by the CLI and by plain SQL.
    @Suite(.timeLimit(.minutes(3)))
    struct SeedAcrossNodes {
        static var script: String { ClusterTestEnvironment.seedDirectory + "/muc_members_only_change.scs" }

        /// The room the script joins: the bare JID of its first `to="…@conference…/…"`.
        static func room(in script: String) throws -> String {
            let text = try String(contentsOfFile: script, encoding: .utf8)
            let pattern = try NSRegularExpression(pattern: #"to=["']([^"'/@\s]+@conference\.[^"'/\s]+)/"#)
            guard let match = pattern.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
                let range = Range(match.range(at: 1), in: text)
            else { throw TestFailure("no room JID in \(script)") }
            return String(text[range])
        }

        @Test func seedRunsAcrossThreeNodesAndExternalMembershipLossKicks() async throws {
            try await Cluster.run(test: "seed", nodes: 3) { cluster in
                let script = Self.script
                let room = try Self.room(in: script)
                try await cluster.cliOK(["user", "add-from-scripts", script, "--log-level", "warning"])

                // The room's node is the one the ring names; the two clients go to the others.
                // `conclave cluster status --json`: every node alive, up, with its share of the ring.
                let status = try await cluster.cliOK(["cluster", "status", "--json"])
                let object = try #require(
                    try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any], "\(status.output)"
                )
                let nodes = try #require(object["nodes"] as? [[String: Any]], "\(status.output)")
                #expect(Set(nodes.compactMap { $0["name"] as? String }) == Set(cluster.nodeNames))
                #expect(nodes.allSatisfy { $0["alive"] as? Bool == true && $0["state"] as? String == "up" }, "\(status.output)")
                let shares = nodes.compactMap { ($0["ring_share"] as? NSNumber)?.doubleValue }
                #expect(shares.count == nodes.count && abs(shares.reduce(0, +) - 1) < 0.01, "\(status.output)")
                let placement = try await cluster.roomWhere(room)
                let owner = try #require(placement.ringOwner, "room where names no ring owner: \(placement)")
                let others = cluster.nodeNames.filter { $0 != owner }
                try #require(others.count == 2)
                let spec = try await runCommand(
                    ClusterTestEnvironment.conclaveSpec,
                    ["--node", try cluster.node(others[0]).address, "--node", try cluster.node(others[1]).address, script],
                    directory: cluster.directory
                )
                #expect(spec.status == 0, "the seed failed with Romeo on \(others[0]), Juliet on \(others[1]), the room on \(owner):\n\(spec)")
                report("[seed] conclave-spec (Romeo on \(others[0]), Juliet on \(others[1]), room on \(owner)): \(spec.output.split(separator: "\n").last ?? "")")
                // Who served the room during the script: it was the ring owner.
                let served = try await cluster.sql.owner(of: room)
                #expect(served?.node == nil || served?.node == owner, "the seed's room was served by \(String(describing: served)), not \(owner)")

                // The same scene with our own clients, once the seed's clients have left
                // (its room is temporary: it goes when they do).
                try await eventually("the seed's occupants to leave \(room)") {
                    try await cluster.sql.occupantCount(of: room) == 0 ? true : nil
                }
                let romeo = try await cluster.connect("user@localhost", password: "password", to: others[0], resource: "romeo")
                let juliet = try await cluster.connect("user2@localhost", password: "password", to: others[1], resource: "juliet")
                try await romeo.join(room, nick: "Romeo")
                try await romeo.configure(room, [("muc#roomconfig_membersonly", "1")])

                /// Makes Juliet a member again and has her join; returns once Romeo sees her.
                func julietJoins() async throws {
                    try await romeo.setAffiliation(room, jid: juliet.bare, "member")
                    let mark = romeo.count
                    try await juliet.join(room, nick: "Juliet")
                    try await romeo.waitFor("Juliet's presence", after: mark) {
                        $0.name == "presence" && $0.type == nil && $0[attribute: "from"] == "\(room)/Juliet"
                    }
                }

                /// Waits for Juliet's removal with `code` as Juliet and Romeo see it.
                func expectRemoval(_ code: String, after julietMark: Int, _ romeoMark: Int, how: String) async throws -> Session.Received {
                    let own = try await juliet.waitFor("her own unavailable presence with \(code) (\(how))", after: julietMark) {
                        $0.name == "presence" && $0.type == "unavailable" && $0[attribute: "from"] == "\(room)/Juliet"
                    }
                    let ownCodes = MUCStanza.statusCodes(own.element)
                    #expect(Set(ownCodes) == [code, "110"], "Juliet's own presence after \(how): \(own.element)")
                    let item = own.element.child("x", namespace: Namespace.mucUser)?.child("item")
                    #expect(item?[attribute: "role"] == "none", "\(own.element)")
                    let seen = try await romeo.waitFor("Juliet's unavailable presence with \(code) (\(how))", after: romeoMark) {
                        $0.name == "presence" && $0.type == "unavailable" && $0[attribute: "from"] == "\(room)/Juliet"
                    }
                    #expect(MUCStanza.statusCodes(seen.element) == [code], "Romeo's copy after \(how): \(seen.element)")
                    return own
                }

                try await julietJoins()
                let where1 = try await cluster.roomWhere(room)
                #expect(where1.owner == owner, "the room should be on \(owner) (ring owner), clients on \(others): \(where1)")

                // (a) The CLI.
                var julietMark = juliet.count
                var romeoMark = romeo.count
                try await cluster.cliOK(["room", "affiliation", "set", room, juliet.bare, "none"])
                _ = try await expectRemoval("321", after: julietMark, romeoMark, how: "conclave room affiliation set … none")
                #expect(try await cluster.sql.affiliation(of: juliet.bare, in: room) == nil)

                // (b) Plain SQL: the membership row deleted. Latency from the commit.
                try await julietJoins()
                julietMark = juliet.count
                romeoMark = romeo.count
                try await cluster.sql.execute("DELETE FROM room_affiliations WHERE room = \(room) AND jid = \(juliet.bare)")
                let committed = ContinuousClock.now
                let kicked = try await expectRemoval("321", after: julietMark, romeoMark, how: "SQL DELETE")
                let latency = kicked.at - committed
                report("FIGURE kick_latency_ms=\(String(format: "%.1f", latency.milliseconds))")

                // (c) Plain SQL: made an outcast, which is a ban (301).
                try await julietJoins()
                julietMark = juliet.count
                romeoMark = romeo.count
                try await cluster.sql.execute(
                    "UPDATE room_affiliations SET affiliation = 'outcast' WHERE room = \(room) AND jid = \(juliet.bare)"
                )
                _ = try await expectRemoval("301", after: julietMark, romeoMark, how: "SQL UPDATE to outcast")
                // Banned: she cannot come back.
                let mark = juliet.count
                juliet.send(
                    XMLElement("presence", namespace: Namespace.client, ["to": "\(room)/Juliet"], children: [XMLElement("x", namespace: Namespace.muc)])
                )
                let refused = try await juliet.waitFor("the refusal of her join", after: mark) {
                    $0.name == "presence" && $0[attribute: "from"] == "\(room)/Juliet"
                }
                // The seed's room is members-only: that refusal comes first, outcasts
                // included (Prosody's order of join checks).
                #expect(refused.element.stanzaError?.condition == .registrationRequired, "\(refused.element)")
                // Every copy went out through the room's node, which stayed the ring owner.
                #expect(try await cluster.roomWhere(room).owner == owner)
            }
        }
    }
}
