import Storage
public import XMPPCore
import Crypto

/// The SASL mechanisms Conclave offers (RFC 6120 §6, RFC 5802, RFC 7677, RFC 4616).
public enum SASLMechanism: String, Sendable, CaseIterable {
    case scramSHA256Plus = "SCRAM-SHA-256-PLUS"
    case scramSHA1Plus = "SCRAM-SHA-1-PLUS"
    case scramSHA256 = "SCRAM-SHA-256"
    case scramSHA1 = "SCRAM-SHA-1"
    case plain = "PLAIN"

    var scramHash: SCRAMHash? {
        switch self {
        case .scramSHA1, .scramSHA1Plus: .sha1
        case .scramSHA256, .scramSHA256Plus: .sha256
        case .plain: nil
        }
    }

    var usesChannelBinding: Bool { self == .scramSHA1Plus || self == .scramSHA256Plus }
}

/// A SASL failure condition (RFC 6120 §6.5).
public struct SASLFailure: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Condition: String, Sendable {
        case aborted
        case accountDisabled = "account-disabled"
        case credentialsExpired = "credentials-expired"
        case encryptionRequired = "encryption-required"
        case incorrectEncoding = "incorrect-encoding"
        case invalidAuthzid = "invalid-authzid"
        case invalidMechanism = "invalid-mechanism"
        case malformedRequest = "malformed-request"
        case mechanismTooWeak = "mechanism-too-weak"
        case notAuthorized = "not-authorized"
        case temporaryAuthFailure = "temporary-auth-failure"
    }

    public var condition: Condition
    public var text: String?

    public init(_ condition: Condition, text: String? = nil) {
        self.condition = condition
        self.text = text
    }

    public var element: XMLElement {
        var failure = XMLElement("failure", namespace: Namespace.sasl)
        failure.append(XMLElement(condition.rawValue, namespace: Namespace.sasl))
        if let text { failure.append(XMLElement("text", namespace: Namespace.sasl, ["xml:lang": "en"], text: text)) }
        return failure
    }

    public var description: String { text.map { "\(condition.rawValue): \($0)" } ?? condition.rawValue }
}

/// The server side of one SCRAM exchange, as a state machine without I/O.
///
/// 1. `receiveClientFirst` parses the client-first message and names the account;
/// 2. the caller looks the account up and calls `serverFirst(credentials:)` (with
///    `nil` for an unknown account: the exchange goes on with made-up values and fails
///    at the end, so a client cannot tell unknown accounts from wrong passwords);
/// 3. `receiveClientFinal` checks the proof and the channel binding and returns the
///    server-final message.
struct SCRAMServerExchange {
    let hash: SCRAMHash
    let mechanism: SASLMechanism
    /// `tls-server-end-point` data of this connection, when it runs over TLS.
    let channelBindingData: [UInt8]?

    private(set) var username: String = ""
    private var gs2Header: Substring = ""
    private var clientFirstBare: Substring = ""
    private var nonce = ""
    private var serverFirstMessage = ""
    private var credentials: StoredCredentials?
    private var keys = SCRAMKeys(storedKey: [], serverKey: [])

    private let serverNonce: String

    init(mechanism: SASLMechanism, channelBindingData: [UInt8]?, serverNonce: String = randomNonce()) {
        self.serverNonce = serverNonce
        self.mechanism = mechanism
        self.hash = mechanism.scramHash ?? .sha256
        self.channelBindingData = channelBindingData
    }

    /// Returns the (normalised) username the client authenticates as.
    mutating func receiveClientFirst(_ data: [UInt8]) throws(SASLFailure) -> String {
        guard let message = String(validating: data, as: UTF8.self) else { throw SASLFailure(.incorrectEncoding) }
        let parts = message.split(separator: ",", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw SASLFailure(.malformedRequest) }
        let flag = parts[0]
        if mechanism.usesChannelBinding {
            guard flag == "p=tls-server-end-point" else {
                throw SASLFailure(.malformedRequest, text: "channel binding type not supported")
            }
            guard channelBindingData != nil else { throw SASLFailure(.malformedRequest) }
        } else if flag != "n" && flag != "y" {
            // "y": the client supports channel binding but not with us. RFC 5802 would
            // have us fail when we offered -PLUS, but the only type we can offer,
            // tls-server-end-point, is one many clients lack (slixmpp knows only
            // tls-unique, which TLS 1.3 does not have), and they send "y" for that.
            throw SASLFailure(.malformedRequest)
        }
        if !parts[1].isEmpty {
            guard parts[1].hasPrefix("a="), decodeSASLName(parts[1].dropFirst(2)) != nil else {
                throw SASLFailure(.malformedRequest)
            }
        }
        gs2Header = message[message.startIndex..<parts[2].startIndex]
        clientFirstBare = parts[2]
        guard let attributes = SCRAMAttributes(clientFirstBare),
            attributes.values.first?.0 == "n", attributes.values.dropFirst().first?.0 == "r",
            let rawName = attributes["n"], let name = decodeSASLName(rawName), !name.isEmpty,
            let clientNonce = attributes["r"], !clientNonce.isEmpty
        else { throw SASLFailure(.malformedRequest) }
        if attributes.values.contains(where: { $0.0 == "m" }) { throw SASLFailure(.malformedRequest) }
        nonce = String(clientNonce) + serverNonce
        username = name.lowercased()
        return username
    }

    /// The authzid the client asked for (`a=`), if any.
    var authzid: String? {
        let field = gs2Header.split(separator: ",", omittingEmptySubsequences: false).dropFirst().first
        guard let field, field.hasPrefix("a=") else { return nil }
        return decodeSASLName(field.dropFirst(2))
    }

    /// For an account that does not exist, the salt is derived from `unknownAccountKey`
    /// and the name, and the iterations are the node's default: the answer is the same on
    /// every connection, as a real account's is, so it does not tell which names exist.
    mutating func serverFirst(
        credentials: StoredCredentials?,
        unknownAccountKey: [UInt8],
        unknownAccountIterations: Int
    ) -> [UInt8] {
        self.credentials = credentials
        let salt: [UInt8]
        let iterations: Int
        if let credentials {
            salt = credentials.salt
            iterations = credentials.iterations
            keys = credentials.keys(for: hash)
        } else {
            salt = Self.unknownAccountSalt(key: unknownAccountKey, username: username)
            iterations = unknownAccountIterations
            var generator = SystemRandomNumberGenerator()
            let random = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
            keys = SCRAMKeys(storedKey: random, serverKey: random)
        }
        serverFirstMessage = "r=\(nonce),s=\(Base64.encode(salt)),i=\(iterations)"
        return Array(serverFirstMessage.utf8)
    }

    static func unknownAccountSalt(key: [UInt8], username: String) -> [UInt8] {
        let code = HMAC<SHA256>.authenticationCode(
            for: Array("conclave-scram-salt|\(username)".utf8),
            using: SymmetricKey(data: key)
        )
        return Array(Array(code).prefix(16))
    }

    /// Verifies the client's proof; returns the server-final message.
    func receiveClientFinal(_ data: [UInt8]) throws(SASLFailure) -> [UInt8] {
        guard let message = String(validating: data, as: UTF8.self) else { throw SASLFailure(.incorrectEncoding) }
        guard let proofRange = message.firstRange(of: ",p=") else { throw SASLFailure(.malformedRequest) }
        let withoutProof = message[..<proofRange.lowerBound]
        guard let attributes = SCRAMAttributes(Substring(message)),
            let binding = attributes["c"], let receivedNonce = attributes["r"], let proofText = attributes["p"],
            let proof = Base64.decode(String(proofText)), let bindingBytes = Base64.decode(String(binding))
        else { throw SASLFailure(.malformedRequest) }
        var expectedBinding = Array(gs2Header.utf8)
        if mechanism.usesChannelBinding { expectedBinding += channelBindingData ?? [] }
        guard bindingBytes == expectedBinding else {
            throw SASLFailure(.notAuthorized, text: "channel binding mismatch")
        }
        guard receivedNonce == nonce else { throw SASLFailure(.malformedRequest, text: "nonce mismatch") }
        let authMessage = Array("\(clientFirstBare),\(serverFirstMessage),\(withoutProof)".utf8)
        let clientSignature = hash.hmac(key: keys.storedKey, data: authMessage)
        guard proof.count == clientSignature.count, credentials != nil else { throw SASLFailure(.notAuthorized) }
        let clientKey = zip(proof, clientSignature).map { $0 ^ $1 }
        guard constantTimeEqual(hash.hash(clientKey), keys.storedKey) else { throw SASLFailure(.notAuthorized) }
        let serverSignature = hash.hmac(key: keys.serverKey, data: authMessage)
        return Array("v=\(Base64.encode(serverSignature))".utf8)
    }
}

/// PLAIN (RFC 4616): `authzid NUL authcid NUL password`.
struct PlainCredentials {
    var authzid: String?
    var username: String
    var password: String

    init(_ data: [UInt8]) throws(SASLFailure) {
        let parts = data.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3,
            let authzid = String(validating: parts[0], as: UTF8.self),
            let username = String(validating: parts[1], as: UTF8.self),
            let password = String(validating: parts[2], as: UTF8.self),
            !username.isEmpty
        else { throw SASLFailure(.malformedRequest) }
        self.authzid = authzid.isEmpty ? nil : authzid
        self.username = username.lowercased()
        self.password = password
    }
}
