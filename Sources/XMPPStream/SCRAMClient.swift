import XMPPCore

/// The client side of SCRAM (RFC 5802), for the spec runner, the load generator and
/// tests.
struct SCRAMClient {
    let hash: SCRAMHash
    let username: String
    let password: String
    /// `tls-server-end-point` data for -PLUS mechanisms; `nil` for plain SCRAM.
    let channelBindingData: [UInt8]?
    private let clientNonce: String
    private var gs2Header: String
    private var authMessage: [UInt8] = []
    private var saltedPassword: [UInt8] = []

    init(hash: SCRAMHash, username: String, password: String, channelBindingData: [UInt8]?, nonce: String = randomNonce()) {
        self.hash = hash
        self.username = username
        self.password = password
        self.channelBindingData = channelBindingData
        self.clientNonce = nonce
        self.gs2Header = channelBindingData == nil ? "n,," : "p=tls-server-end-point,,"
    }

    var clientFirstBare: String { "n=\(encodeSASLName(username)),r=\(clientNonce)" }

    var clientFirst: [UInt8] { Array((gs2Header + clientFirstBare).utf8) }

    /// Answers the server-first message with the client-final message.
    mutating func clientFinal(serverFirst data: [UInt8]) throws(SASLFailure) -> [UInt8] {
        guard let serverFirst = String(validating: data, as: UTF8.self),
            let attributes = SCRAMAttributes(Substring(serverFirst)),
            let nonce = attributes["r"], nonce.hasPrefix(clientNonce),
            let saltText = attributes["s"], let salt = Base64.decode(String(saltText)),
            let iterationText = attributes["i"], let iterations = Int(iterationText), iterations > 0
        else { throw SASLFailure(.malformedRequest, text: "unexpected server-first message") }
        saltedPassword = hash.saltedPassword(Array(password.utf8), salt: salt, iterations: iterations)
        let binding = Base64.encode(Array(gs2Header.utf8) + (channelBindingData ?? []))
        let withoutProof = "c=\(binding),r=\(nonce)"
        authMessage = Array("\(clientFirstBare),\(serverFirst),\(withoutProof)".utf8)
        let clientKey = hash.hmac(key: saltedPassword, data: Array("Client Key".utf8))
        let storedKey = hash.hash(clientKey)
        let signature = hash.hmac(key: storedKey, data: authMessage)
        let proof = zip(clientKey, signature).map { $0 ^ $1 }
        return Array("\(withoutProof),p=\(Base64.encode(proof))".utf8)
    }

    /// Checks the server's signature in the server-final message.
    func verify(serverFinal data: [UInt8]) -> Bool {
        guard let text = String(validating: data, as: UTF8.self), text.hasPrefix("v="),
            let signature = Base64.decode(String(text.dropFirst(2)))
        else { return false }
        let serverKey = hash.hmac(key: saltedPassword, data: Array("Server Key".utf8))
        return constantTimeEqual(signature, hash.hmac(key: serverKey, data: authMessage))
    }
}
