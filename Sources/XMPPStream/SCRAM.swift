public import Storage
import Crypto
import CryptoExtras

/// The hash functions SCRAM runs with (RFC 5802, RFC 7677).
public enum SCRAMHash: Sendable, Hashable, CaseIterable {
    case sha1, sha256

    public var mechanismName: String {
        switch self {
        case .sha1: "SCRAM-SHA-1"
        case .sha256: "SCRAM-SHA-256"
        }
    }

    func hmac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        let key = SymmetricKey(data: key)
        switch self {
        case .sha1: return Array(HMAC<Insecure.SHA1>.authenticationCode(for: data, using: key))
        case .sha256: return Array(HMAC<SHA256>.authenticationCode(for: data, using: key))
        }
    }

    func hash(_ data: [UInt8]) -> [UInt8] {
        switch self {
        case .sha1: Array(Insecure.SHA1.hash(data: data))
        case .sha256: Array(SHA256.hash(data: data))
        }
    }

    /// PBKDF2 with HMAC of this hash, one output block (RFC 5802 `Hi()`): BoringSSL's,
    /// which runs the iterations natively (a login checks a PLAIN password this way);
    /// the same computed HMAC by HMAC if it refuses the parameters.
    func saltedPassword(_ password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        let function: KDF.Insecure.PBKDF2.HashFunction = self == .sha1 ? .insecureSHA1 : .sha256
        let length = self == .sha1 ? Insecure.SHA1.byteCount : SHA256.byteCount
        if let key = try? KDF.Insecure.PBKDF2.deriveKey(
            from: password, salt: salt, using: function, outputByteCount: length, unsafeUncheckedRounds: max(1, iterations))
        {
            return key.withUnsafeBytes { Array($0) }
        }
        let key = SymmetricKey(data: password)
        var previous = salt + [0, 0, 0, 1]
        var result: [UInt8] = []
        for index in 0..<max(1, iterations) {
            let next: [UInt8]
            switch self {
            case .sha1: next = Array(HMAC<Insecure.SHA1>.authenticationCode(for: previous, using: key))
            case .sha256: next = Array(HMAC<SHA256>.authenticationCode(for: previous, using: key))
            }
            if index == 0 {
                result = next
            } else {
                for byte in result.indices { result[byte] ^= next[byte] }
            }
            previous = next
        }
        return result
    }

    /// StoredKey and ServerKey for `password`.
    public func keys(password: String, salt: [UInt8], iterations: Int) -> SCRAMKeys {
        let salted = saltedPassword(Array(password.utf8), salt: salt, iterations: iterations)
        let clientKey = hmac(key: salted, data: Array("Client Key".utf8))
        return SCRAMKeys(storedKey: hash(clientKey), serverKey: hmac(key: salted, data: Array("Server Key".utf8)))
    }
}

extension StoredCredentials {
    /// Derives the credentials to store for `password` with a fresh random salt.
    public static func derive(password: String, iterations: Int = 4096) -> StoredCredentials {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return derive(password: password, salt: salt, iterations: iterations)
    }

    /// Keys for `password` after SASLprep (RFC 4013), as clients prepare it before
    /// hashing; a password SASLprep refuses is used as given (`conclave user` refuses it
    /// before it gets here).
    public static func derive(password: String, salt: [UInt8], iterations: Int) -> StoredCredentials {
        let password = SASLprep.prepare(password) ?? password
        return StoredCredentials(
            salt: salt,
            iterations: iterations,
            sha1: SCRAMHash.sha1.keys(password: password, salt: salt, iterations: iterations),
            sha256: SCRAMHash.sha256.keys(password: password, salt: salt, iterations: iterations)
        )
    }

    public func keys(for hash: SCRAMHash) -> SCRAMKeys {
        switch hash {
        case .sha1: sha1
        case .sha256: sha256
        }
    }

    /// Whether `password` is the one these credentials were derived from.
    public func verify(password: String) -> Bool {
        guard let password = SASLprep.prepare(password) else { return false }
        let candidate = SCRAMHash.sha256.keys(password: password, salt: salt, iterations: iterations)
        return constantTimeEqual(candidate.storedKey, sha256.storedKey)
    }
}

/// Whether `password` is acceptable to SASLprep (RFC 4013), so that a client can send it.
public func isValidPassword(_ password: String) -> Bool {
    !password.isEmpty && SASLprep.prepare(password) != nil
}

func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    var difference: UInt8 = 0
    for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
    return difference == 0
}

/// Attribute-value pairs of a SCRAM message (`n=…,r=…`).
struct SCRAMAttributes {
    var values: [(Character, Substring)] = []

    init?(_ message: Substring) {
        for part in message.split(separator: ",", omittingEmptySubsequences: false) {
            guard part.count >= 2, part[part.index(after: part.startIndex)] == "=" else { return nil }
            values.append((part.first!, part.dropFirst(2)))
        }
    }

    subscript(_ key: Character) -> Substring? { values.first { $0.0 == key }?.1 }
}

/// `saslname` decoding: `=2C` is `,` and `=3D` is `=`; any other `=` is invalid.
func decodeSASLName(_ name: Substring) -> String? {
    var out = ""
    var index = name.startIndex
    while index < name.endIndex {
        let character = name[index]
        if character == "=" {
            let code = name[index...].dropFirst().prefix(2)
            switch code {
            case "2C": out.append(",")
            case "3D": out.append("=")
            default: return nil
            }
            index = name.index(index, offsetBy: 3)
        } else {
            out.append(character)
            index = name.index(after: index)
        }
    }
    return out
}

func encodeSASLName(_ name: String) -> String {
    var out = ""
    for character in name {
        switch character {
        case ",": out += "=2C"
        case "=": out += "=3D"
        default: out.append(character)
        }
    }
    return out
}

func randomNonce() -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    var generator = SystemRandomNumberGenerator()
    return String((0..<24).map { _ in alphabet.randomElement(using: &generator)! })
}
