import ServerRuntime
import StoragePostgres
import Testing
import XMPPCore
import XMPPStream

/// Issue 13: XEP-0421 occupant ids are keyed with a secret of the deployment, so that
/// nobody can find the occupant behind an id by hashing guessed addresses.
@Suite struct OccupantIDTests {
    static let room = address("verona@conference.example")
    static let romeo = address("romeo@montague.example/balcony")
    static let secret: [UInt8] = Array(0..<32)

    static func address(_ text: String) -> JID {
        guard let jid = try? JID(text) else { fatalError("invalid test JID \(text)") }
        return jid
    }

    /// What ids were before: Base64(SHA-256("conclave-occupant-id|room|real")), which
    /// anyone could compute for a guessed address.
    @Test func anIDIsNotThePublicHashOfRoomAndAddress() {
        let id = OccupantIDs(secret: Self.secret).id(room: Self.room, real: Self.romeo)
        #expect(id != "r/yPfBjqRd7bH1x9U2mgN4FT6PjdM/jX/EGxgtyCnXA=")
        #expect(!id.contains("romeo"))
    }

    @Test func anIDIsStableForTheSameRoomAndUser() {
        let ids = OccupantIDs(secret: Self.secret)
        let again = OccupantIDs(secret: Self.secret)
        let id = ids.id(room: Self.room, real: Self.romeo)
        #expect(id == again.id(room: Self.room, real: Self.romeo))
        #expect(id == ids.id(room: Self.room, real: Self.address("romeo@montague.example/orchard")), "any resource")
        #expect(id.count == 44, "Base64 of 32 bytes")
    }

    @Test func anIDDiffersAcrossRoomsAndUsers() {
        let ids = OccupantIDs(secret: Self.secret)
        let id = ids.id(room: Self.room, real: Self.romeo)
        #expect(id != ids.id(room: Self.address("mantua@conference.example"), real: Self.romeo))
        #expect(id != ids.id(room: Self.room, real: Self.address("juliet@capulet.example")))
    }

    @Test func deploymentsWithDifferentSecretsGiveDifferentIDs() {
        let ours = OccupantIDs(secret: Self.secret).id(room: Self.room, real: Self.romeo)
        let theirs = OccupantIDs(secret: Array(repeating: 7, count: 32)).id(room: Self.room, real: Self.romeo)
        #expect(ours != theirs)
    }
}

/// The secret is made once and shared through PostgreSQL, and a node uses it.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(2)))
struct DeploymentSecretTests {
    @Test func everyNodeReadsTheSecretTheFirstOneMade() async throws {
        let client = try await TestDatabase.shared.connected()
        let name = "test-\(UInt64.random(in: 0...UInt64.max))"
        // Several nodes asking at once: one row wins, all get it.
        let secrets = try await withThrowingTaskGroup(of: [UInt8].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    try await PostgresDeploymentSecrets(client: client, logger: TestEnvironment.logger).secret(named: name)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(Set(secrets).count == 1)
        #expect(secrets.first?.count == 32)
        let later = try await PostgresDeploymentSecrets(client: client, logger: TestEnvironment.logger).secret(named: name)
        #expect(later == secrets.first)
        let other = try await PostgresDeploymentSecrets(client: client, logger: TestEnvironment.logger)
            .secret(named: name + "-other")
        #expect(other != later, "each secret is random")
    }

    /// The id a node gives is the keyed one, and a restarted node (a new node on the same
    /// database) gives the same.
    @Test func aNodeGivesKeyedIDsThatSurviveARestart() async throws {
        let account = try await TestDatabase.shared.makeAccount()
        let room = try JID("ids\(UInt32.random(in: 0...UInt32.max))@conference.localhost")
        var seen: [String] = []
        for _ in 0..<2 {
            try await withNode { node in
                let client = try await node.login(account)
                var x = XMLElement("x", namespace: Namespace.muc)
                x.append(XMLElement("history", namespace: Namespace.muc, ["maxstanzas": "0"]))
                client.send(XMLElement("presence", namespace: Namespace.client, ["to": "\(room)/Romeo"], children: [x]))
                let own = try await client.receive { $0.name == "presence" && $0[attribute: "from"] == "\(room)/Romeo" }
                seen.append(own.child("occupant-id", namespace: Namespace.occupantID)?[attribute: "id"] ?? "")
                await client.close()
            }
        }
        let client = try await TestDatabase.shared.connected()
        let secret = try await PostgresDeploymentSecrets(client: client, logger: TestEnvironment.logger)
            .secret(named: OccupantIDs.secretName)
        let expected = OccupantIDs(secret: secret).id(room: room, real: account)
        #expect(seen == [expected, expected])
    }
}
