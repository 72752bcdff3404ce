import Crypto
import Foundation

/// The mutual proof of the cluster secret that opens a node link.
///
/// Both ends send a fresh random nonce; then each proves it knows the secret with
/// HMAC-SHA256 over the handshake's transcript: a version label, its role, both node
/// names, both nonces, both incarnations and, over TLS, a hash of both certificates (a
/// `tls-server-end-point`-style channel binding; swift-nio-ssl has no keying-material
/// exporter). The connecting node proves first; the accepting node answers with its own
/// proof, and the connecting node sends no frame before it has checked it.
///
/// - The role in the transcript keeps one side's proof from being reflected as the other's.
/// - A nonce from each side keeps a recorded proof from being replayed on a new connection
///   to either side.
/// - The certificates keep a proof made on one TLS connection from being relayed onto
///   another (a relay would see, and so bind, a different certificate).
///
/// Proofs are compared in constant time.
struct LinkHandshake: Sendable {
    enum Role: String, Sendable {
        case connector
        case acceptor
    }

    /// What both proofs cover.
    struct Transcript: Sendable, Hashable {
        var connector: String
        var acceptor: String
        var connectorNonce: String
        var acceptorNonce: String
        var connectorIncarnation: Int64
        var acceptorIncarnation: Int64
        /// `LinkHandshake.binding(…)` over TLS; empty on plain TCP.
        var binding: String

        /// Each field with its length in front, so no two transcripts share an encoding.
        var bytes: Data {
            let fields = [
                connector, acceptor, connectorNonce, acceptorNonce, String(connectorIncarnation),
                String(acceptorIncarnation), binding,
            ]
            var text = LinkHandshake.label
            for field in fields { text += "|\(field.utf8.count):\(field)" }
            return Data(text.utf8)
        }
    }

    static let label = "conclave-link-3"
    /// Nonces are 16 random bytes, hexadecimal.
    static let nonceLength = 32

    private let key: SymmetricKey

    init(secret: String) {
        key = SymmetricKey(data: Data(secret.utf8))
    }

    /// A fresh nonce from the system's cryptographic random source.
    static func makeNonce() -> String {
        var generator = SystemRandomNumberGenerator()
        return hex((0..<nonceLength / 2).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// Whether `text` has the shape of a nonce (what a peer sends is checked before use).
    static func isNonce(_ text: String) -> Bool {
        text.utf8.count == nonceLength && text.utf8.allSatisfy { isHexDigit($0) }
    }

    /// The channel binding for a TLS link: both certificates, the accepting node's first.
    static func binding(acceptorCertificate: [UInt8], connectorCertificate: [UInt8]) -> String {
        hex(Array(SHA256.hash(data: acceptorCertificate))) + hex(Array(SHA256.hash(data: connectorCertificate)))
    }

    /// The proof `role` sends.
    func proof(_ role: Role, _ transcript: Transcript) -> String {
        LinkHandshake.hex(Array(HMAC<SHA256>.authenticationCode(for: message(role, transcript), using: key)))
    }

    /// Whether `proof` is what `role` must send for `transcript`; constant time in its
    /// content (only a malformed proof returns early).
    func verify(_ proof: String, _ role: Role, _ transcript: Transcript) -> Bool {
        guard let code = LinkHandshake.unhex(proof), code.count == SHA256.byteCount else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(code, authenticating: message(role, transcript), using: key)
    }

    private func message(_ role: Role, _ transcript: Transcript) -> Data {
        Data(role.rawValue.utf8) + transcript.bytes
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    static func unhex(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool { value(byte) != nil }

    private static func value(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
