import Crypto
import Storage
import Testing
import XMPPCore

@testable import XMPPStream

/// SCRAM against the test vectors of RFC 5802 §5 (SHA-1) and RFC 7677 §3 (SHA-256).
@Suite struct SCRAMTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        var mechanism: SASLMechanism
        var clientNonce: String
        var serverNonce: String
        var salt: String
        var clientFinal: String
        var serverFinal: String
        var testDescription: String { mechanism.rawValue }
    }

    static let vectors = [
        Vector(
            mechanism: .scramSHA1,
            clientNonce: "fyko+d2lbbFgONRv9qkxdawL",
            serverNonce: "3rfcNHYJY1ZVvWVs7j",
            salt: "QSXCR+Q6sek8bf92",
            clientFinal: "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            serverFinal: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="
        ),
        Vector(
            mechanism: .scramSHA256,
            clientNonce: "rOprNGfwEbeRWgbNEkqO",
            serverNonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            salt: "W22ZaJ0SNY7soEsUEjb6gQ==",
            clientFinal: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                + "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            serverFinal: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        ),
    ]

    private func credentials(_ vector: Vector, password: String = "pencil") -> StoredCredentials {
        StoredCredentials.derive(password: password, salt: Base64.decode(vector.salt)!, iterations: 4096)
    }

    @Test(arguments: vectors)
    func serverFollowsTheRFCExchange(vector: Vector) throws {
        var server = SCRAMServerExchange(mechanism: vector.mechanism, channelBindingData: nil, serverNonce: vector.serverNonce)
        let username = try server.receiveClientFirst(Array("n,,n=user,r=\(vector.clientNonce)".utf8))
        #expect(username == "user")
        let serverFirst = server.serverFirst(credentials: credentials(vector), unknownAccountKey: [], unknownAccountIterations: 4096)
        #expect(
            String(decoding: serverFirst, as: UTF8.self)
                == "r=\(vector.clientNonce)\(vector.serverNonce),s=\(vector.salt),i=4096"
        )
        let serverFinal = try server.receiveClientFinal(Array(vector.clientFinal.utf8))
        #expect(String(decoding: serverFinal, as: UTF8.self) == vector.serverFinal)
    }

    @Test(arguments: vectors)
    func clientFollowsTheRFCExchange(vector: Vector) throws {
        var client = SCRAMClient(
            hash: vector.mechanism.scramHash!, username: "user", password: "pencil", channelBindingData: nil,
            nonce: vector.clientNonce
        )
        #expect(String(decoding: client.clientFirst, as: UTF8.self) == "n,,n=user,r=\(vector.clientNonce)")
        let serverFirst = "r=\(vector.clientNonce)\(vector.serverNonce),s=\(vector.salt),i=4096"
        let final = try client.clientFinal(serverFirst: Array(serverFirst.utf8))
        #expect(String(decoding: final, as: UTF8.self) == vector.clientFinal)
        #expect(client.verify(serverFinal: Array(vector.serverFinal.utf8)))
        #expect(!client.verify(serverFinal: Array("v=AAAA".utf8)))
    }

    @Test(arguments: vectors)
    func wrongPasswordIsNotAuthorized(vector: Vector) throws {
        var server = SCRAMServerExchange(mechanism: vector.mechanism, channelBindingData: nil, serverNonce: vector.serverNonce)
        _ = try server.receiveClientFirst(Array("n,,n=user,r=\(vector.clientNonce)".utf8))
        _ = server.serverFirst(credentials: credentials(vector, password: "other"), unknownAccountKey: [], unknownAccountIterations: 4096)
        #expect(throws: SASLFailure(.notAuthorized)) { try server.receiveClientFinal(Array(vector.clientFinal.utf8)) }
    }

    @Test(arguments: vectors)
    func unknownAccountFailsOnlyAtTheEnd(vector: Vector) throws {
        var server = SCRAMServerExchange(mechanism: vector.mechanism, channelBindingData: nil, serverNonce: vector.serverNonce)
        _ = try server.receiveClientFirst(Array("n,,n=user,r=\(vector.clientNonce)".utf8))
        let first = String(decoding: server.serverFirst(credentials: nil, unknownAccountKey: [1, 2, 3], unknownAccountIterations: 4096), as: UTF8.self)
        #expect(first.hasPrefix("r=\(vector.clientNonce)\(vector.serverNonce),s="))
        #expect(throws: SASLFailure(.notAuthorized)) { try server.receiveClientFinal(Array(vector.clientFinal.utf8)) }
    }

    /// An unknown account's salt and iterations are the same on every connection, as a
    /// real account's are (they used to change with each connection's stream id), and
    /// differ between names and between deployments' keys.
    @Test func unknownAccountsGetAStableSaltAndTheDefaultIterations() throws {
        func serverFirst(_ name: String, key: [UInt8]) throws -> Substring {
            var server = SCRAMServerExchange(mechanism: .scramSHA256, channelBindingData: nil)
            _ = try server.receiveClientFirst(Array("n,,n=\(name),r=abc".utf8))
            let first = String(decoding: server.serverFirst(credentials: nil, unknownAccountKey: key, unknownAccountIterations: 10_000), as: UTF8.self)
            return first[first.firstRange(of: ",s=")!.lowerBound...]
        }
        let once = try serverFirst("ghost", key: [9, 9])
        #expect(try serverFirst("ghost", key: [9, 9]) == once)
        #expect(once.hasSuffix(",i=10000"))
        #expect(try serverFirst("other", key: [9, 9]) != once)
        #expect(try serverFirst("ghost", key: [1]) != once)
    }

    @Test(arguments: [
        ("I\u{00AD}X", "IX"), ("user", "user"), ("a\u{00A0}b", "a b"), ("\u{2168}", "IX"), ("\u{00AA}", "a"),
    ])
    func saslprepMapsAsRFC4013Says(_ input: String, _ expected: String) {
        #expect(SASLprep.prepare(input) == expected)
    }

    @Test(arguments: ["a\u{0007}", "\u{E000}x", "\u{0627}1", "a\u{202E}b"])
    func saslprepRefusesProhibitedText(_ input: String) {
        #expect(SASLprep.prepare(input) == nil)
    }

    /// A client sends the SASLprep'ed password (SCRAM hashes it, PLAIN sends it): the
    /// stored keys are derived the same way, so both forms log in.
    @Test func passwordsAreComparedAfterSASLprep() {
        let stored = StoredCredentials.derive(password: "pass\u{00A0}word", salt: [1, 2, 3], iterations: 16)
        #expect(stored.verify(password: "pass word"))
        #expect(stored.verify(password: "pass\u{00A0}word"))
        #expect(!stored.verify(password: "password"))
    }

    @Test func channelBindingRoundTrip() throws {
        let binding: [UInt8] = Array(repeating: 7, count: 32)
        let stored = StoredCredentials.derive(password: "pw", salt: [1, 2, 3, 4], iterations: 4096)
        var client = SCRAMClient(hash: .sha256, username: "romeo", password: "pw", channelBindingData: binding)
        var server = SCRAMServerExchange(mechanism: .scramSHA256Plus, channelBindingData: binding)
        #expect(try server.receiveClientFirst(client.clientFirst) == "romeo")
        let final = try client.clientFinal(serverFirst: server.serverFirst(credentials: stored, unknownAccountKey: [], unknownAccountIterations: 4096))
        #expect(client.verify(serverFinal: try server.receiveClientFinal(final)))
    }

    @Test func channelBindingMismatchIsNotAuthorized() throws {
        let stored = StoredCredentials.derive(password: "pw", salt: [1, 2, 3, 4], iterations: 4096)
        var client = SCRAMClient(hash: .sha1, username: "romeo", password: "pw", channelBindingData: [1, 1, 1])
        var server = SCRAMServerExchange(mechanism: .scramSHA1Plus, channelBindingData: [2, 2, 2])
        _ = try server.receiveClientFirst(client.clientFirst)
        let final = try client.clientFinal(serverFirst: server.serverFirst(credentials: stored, unknownAccountKey: [], unknownAccountIterations: 4096))
        #expect(throws: SASLFailure.self) { try server.receiveClientFinal(final) }
    }

    static let malformedFirstMessages = [
        "",  // nothing
        "n,,r=abc",  // no username
        "n,,n=user",  // no nonce
        "x,,n=user,r=abc",  // unknown channel binding flag
        "p=tls-unique,,n=user,r=abc",  // binding flag on a mechanism without binding
        "n,,m=ext,n=user,r=abc",  // mandatory extension
        "n,,n=us=er,r=abc",  // bad saslname escape
    ]

    @Test(arguments: malformedFirstMessages)
    func malformedClientFirstMessages(message: String) {
        var server = SCRAMServerExchange(mechanism: .scramSHA256, channelBindingData: nil)
        #expect(throws: SASLFailure.self) { try server.receiveClientFirst(Array(message.utf8)) }
    }

    @Test func plusMechanismRequiresTheBindingFlag() {
        var server = SCRAMServerExchange(mechanism: .scramSHA256Plus, channelBindingData: [1])
        #expect(throws: SASLFailure.self) { try server.receiveClientFirst(Array("n,,n=user,r=abc".utf8)) }
    }

    @Test func usernamesAreEscapedAndNormalised() throws {
        #expect(encodeSASLName("a,b=c") == "a=2Cb=3Dc")
        #expect(decodeSASLName("a=2Cb=3Dc") == "a,b=c")
        var server = SCRAMServerExchange(mechanism: .scramSHA1, channelBindingData: nil)
        #expect(try server.receiveClientFirst(Array("n,,n=Romeo,r=abc".utf8)) == "romeo")
        #expect(server.authzid == nil)
        var withAuthzid = SCRAMServerExchange(mechanism: .scramSHA1, channelBindingData: nil)
        _ = try withAuthzid.receiveClientFirst(Array("n,a=romeo@localhost,n=romeo,r=abc".utf8))
        #expect(withAuthzid.authzid == "romeo@localhost")
    }

    @Test func plainMessages() throws {
        let plain = try PlainCredentials([0] + Array("Juliet".utf8) + [0] + Array("pw".utf8))
        #expect(plain.username == "juliet")
        #expect(plain.password == "pw")
        #expect(plain.authzid == nil)
        #expect(throws: SASLFailure.self) { try PlainCredentials(Array("juliet".utf8)) }
        #expect(throws: SASLFailure.self) { try PlainCredentials([0, 0] + Array("pw".utf8)) }
    }

    @Test func storedCredentialsVerifyOnlyTheirPassword() {
        let stored = StoredCredentials.derive(password: "correct horse", iterations: 4096)
        #expect(stored.verify(password: "correct horse"))
        #expect(!stored.verify(password: "Correct horse"))
        #expect(stored.salt.count == 16)
        #expect(stored.sha1.storedKey.count == 20)
        #expect(stored.sha256.storedKey.count == 32)
    }

    /// `Hi()` as RFC 5802 §2.2 defines it, HMAC by HMAC: the native PBKDF2 gives the same
    /// bytes for one iteration, a few, and many, for an empty password and a long one.
    @Test(arguments: SCRAMHash.allCases)
    func saltedPasswordIsRFC5802Hi(hash: SCRAMHash) {
        func hi(_ password: [UInt8], _ salt: [UInt8], _ iterations: Int) -> [UInt8] {
            var previous = salt + [0, 0, 0, 1]
            var result: [UInt8] = []
            for index in 0..<iterations {
                let next = hash.hmac(key: password, data: previous)
                result = index == 0 ? next : zip(result, next).map { $0 ^ $1 }
                previous = next
            }
            return result
        }
        for (password, iterations) in [("pencil", 1), ("pencil", 2), ("", 3), (String(repeating: "é", count: 300), 4096)] {
            let bytes = Array(password.utf8)
            let salt: [UInt8] = [0x41, 0x25, 0xc2, 0x47, 0xe4, 0x3a, 0xb1, 0xe9, 0x3c, 0x6d, 0xff, 0x76]
            #expect(hash.saltedPassword(bytes, salt: salt, iterations: iterations) == hi(bytes, salt, iterations), "\(password.prefix(8)) × \(iterations)")
        }
    }
}
