/// The names in a node's link certificate, and whether they name a given node.
///
/// Mutual TLS alone admits any certificate the cluster's CA signed; a node holding one
/// could then claim to be any other node. So once a peer says which node it is, its
/// certificate must name that node: a DNS subject alternative name or the subject's
/// common name either equal to the node name or having it as its first label. Both kinds
/// of certificate we ship qualify: `deploy/local/certs.sh` issues `CN=node1.localhost`
/// with `DNS:node1.localhost`, docs/deploy.md `CN=node1`.
///
/// Read straight from the certificate's DER (swift-nio-ssl does not expose the common
/// name); anything that does not parse yields no names, so it names no node.
struct LinkCertificateNames: Sendable, Hashable {
    var dnsNames: [String] = []
    var commonName: String?

    init(dnsNames: [String], commonName: String?) {
        self.dnsNames = dnsNames
        self.commonName = commonName
    }

    /// The names in a DER-encoded X.509 certificate.
    init(der: [UInt8]) {
        var certificate = DERReader(der[...])
        guard let (_, body) = certificate.read(tag: 0x30) else { return }
        var outer = DERReader(body)
        guard let (_, tbs) = outer.read(tag: 0x30) else { return }
        var fields = DERReader(tbs)
        if fields.peekTag == 0xA0 { _ = fields.read() }  // version
        // serial number, signature algorithm, issuer, validity, then the subject
        for _ in 0..<4 {
            guard fields.read() != nil else { return }
        }
        guard let (_, subject) = fields.read(tag: 0x30) else { return }
        commonName = Self.commonName(in: subject)
        _ = fields.read()  // subject public key info
        while let (tag, contents) = fields.read() {
            guard tag == 0xA3 else { continue }  // [3] extensions
            var wrapper = DERReader(contents)
            guard let (_, list) = wrapper.read(tag: 0x30) else { return }
            dnsNames = Self.dnsNames(inExtensions: list)
        }
    }

    /// Whether these names name `node` (ASCII case-insensitively).
    func name(_ node: String) -> Bool {
        let node = node.lowercased()
        guard !node.isEmpty else { return false }
        return (dnsNames + [commonName].compactMap { $0 }).contains { name in
            let name = name.lowercased()
            return name == node || name.hasPrefix(node + ".")
        }
    }

    private static let commonNameOID: [UInt8] = [0x55, 0x04, 0x03]  // 2.5.4.3
    private static let subjectAltNameOID: [UInt8] = [0x55, 0x1D, 0x11]  // 2.5.29.17

    /// The last common name of a Name (SEQUENCE OF SET OF AttributeTypeAndValue).
    private static func commonName(in name: ArraySlice<UInt8>) -> String? {
        var found: String?
        var rdns = DERReader(name)
        while let (tag, set) = rdns.read() {
            guard tag == 0x31 else { continue }
            var attributes = DERReader(set)
            while let (_, attribute) = attributes.read(tag: 0x30) {
                var parts = DERReader(attribute)
                guard let (_, oid) = parts.read(tag: 0x06), Array(oid) == commonNameOID,
                    let (kind, value) = parts.read()
                else { continue }
                // UTF8String, PrintableString, IA5String, TeletexString (read as UTF-8)
                if [0x0C, 0x13, 0x16, 0x14].contains(kind) { found = String(decoding: value, as: UTF8.self) }
            }
        }
        return found
    }

    /// The dNSName entries of the subjectAltName extension.
    private static func dnsNames(inExtensions list: ArraySlice<UInt8>) -> [String] {
        var extensions = DERReader(list)
        while let (_, fields) = extensions.read(tag: 0x30) {
            var parts = DERReader(fields)
            guard let (_, oid) = parts.read(tag: 0x06), Array(oid) == subjectAltNameOID else { continue }
            if parts.peekTag == 0x01 { _ = parts.read() }  // critical
            guard let (_, octets) = parts.read(tag: 0x04) else { return [] }
            var wrapper = DERReader(octets)
            guard let (_, generalNames) = wrapper.read(tag: 0x30) else { return [] }
            var names = DERReader(generalNames)
            var result: [String] = []
            while let (tag, value) = names.read() {
                if tag == 0x82 { result.append(String(decoding: value, as: UTF8.self)) }  // [2] dNSName
            }
            return result
        }
        return []
    }
}

/// Reads DER tag-length-value items one after another (definite lengths only, as DER
/// requires). A malformed item ends the reading.
private struct DERReader {
    private var bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    var peekTag: UInt8? { bytes.first }

    /// The next item, if its tag is `tag`; otherwise nothing is consumed.
    mutating func read(tag: UInt8) -> (UInt8, ArraySlice<UInt8>)? {
        guard peekTag == tag else { return nil }
        return read()
    }

    mutating func read() -> (UInt8, ArraySlice<UInt8>)? {
        var index = bytes.startIndex
        guard index < bytes.endIndex else { return nil }
        let tag = bytes[index]
        index += 1
        guard index < bytes.endIndex else { return nil }
        var length = Int(bytes[index])
        index += 1
        if length & 0x80 != 0 {
            let count = length & 0x7F
            guard count >= 1, count <= 4, bytes.endIndex - index >= count else { return nil }
            length = 0
            for _ in 0..<count {
                length = length << 8 | Int(bytes[index])
                index += 1
            }
        }
        guard length <= bytes.endIndex - index else { return nil }
        let contents = bytes[index..<(index + length)]
        bytes = bytes[(index + length)...]
        return (tag, contents)
    }
}
