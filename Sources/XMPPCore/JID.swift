/// An XMPP address (RFC 7622): `[localpart@]domainpart[/resourcepart]`.
///
/// Parsing normalises what can be normalised without Unicode tables beyond the
/// standard library: the localpart and domainpart are case-mapped to lower case,
/// a trailing dot on the domain is dropped, and every part is checked for its
/// length and forbidden characters. Equal addresses compare equal after parsing.
public struct JID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let localpart: String?
    public let domainpart: String
    public let resourcepart: String?

    /// Parses and normalises `string`; throws `JIDError` for an invalid address.
    public init(_ string: String) throws(JIDError) {
        let (local, domain, resource) = Self.split(string)
        try self.init(localpart: local, domainpart: domain, resourcepart: resource)
    }

    /// `[localpart@]domainpart[/resourcepart]` in its parts, as written.
    private static func split(_ string: String) -> (local: String?, domain: String, resource: String?) {
        var rest = Substring(string)
        var resource: Substring?
        if let slash = rest.firstIndex(of: "/") {
            resource = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var local: Substring?
        if let at = rest.firstIndex(of: "@") {
            local = rest[..<at]
            rest = rest[rest.index(after: at)...]
        }
        return (local.map(String.init), String(rest), resource.map(String.init))
    }

    /// Builds an address from its parts, normalising and validating each.
    public init(localpart: String?, domainpart: String, resourcepart: String? = nil) throws(JIDError) {
        self.localpart = try localpart.map(JID.normaliseLocalpart)
        self.domainpart = try JID.normaliseDomainpart(domainpart)
        self.resourcepart = try resourcepart.map(JID.normaliseResourcepart)
    }

    /// An address as `description` wrote it for an address parsed before (by a node of
    /// the same cluster): split into its parts, not normalised or checked again. Only for
    /// text from a trusted peer; anything else goes through `init(_:)`.
    public init(normalized string: String) {
        let (local, domain, resource) = Self.split(string)
        self.init(trustedLocal: local, domain: domain, resource: resource)
    }

    /// An address from its parts as a node of the same cluster wrote them (parts of an
    /// address parsed before): not normalised or checked again. Only for a trusted peer.
    public init(normalizedLocal local: String?, domain: String, resource: String?) {
        self.init(trustedLocal: local, domain: domain, resource: resource)
    }

    private init(trustedLocal: String?, domain: String, resource: String?) {
        self.localpart = trustedLocal
        self.domainpart = domain
        self.resourcepart = resource
    }

    /// This address without its resource.
    public var bare: JID { JID(trustedLocal: localpart, domain: domainpart, resource: nil) }

    public var isBare: Bool { resourcepart == nil }
    public var isFull: Bool { resourcepart != nil }

    /// The domain alone, as a JID.
    public var domain: JID { JID(trustedLocal: nil, domain: domainpart, resource: nil) }

    /// This address with `resource` as its resourcepart.
    public func with(resource: String) throws(JIDError) -> JID {
        JID(trustedLocal: localpart, domain: domainpart, resource: try JID.normaliseResourcepart(resource))
    }

    public var description: String {
        var out = ""
        if let localpart {
            out += localpart
            out += "@"
        }
        out += domainpart
        if let resourcepart {
            out += "/"
            out += resourcepart
        }
        return out
    }

    public static func < (lhs: JID, rhs: JID) -> Bool { lhs.description < rhs.description }

    // MARK: - Normalisation (RFC 7622 §3)

    private static let maxPartBytes = 1023

    /// Characters RFC 7622 §3.3.1 forbids in a localpart.
    private static let forbiddenInLocalpart: Set<Unicode.Scalar> = ["\"", "&", "'", "/", ":", "<", ">", "@"]

    static func normaliseLocalpart(_ raw: String) throws(JIDError) -> String {
        let value = raw.lowercased()
        guard !value.isEmpty else { throw JIDError(.emptyLocalpart, raw) }
        guard value.utf8.count <= maxPartBytes else { throw JIDError(.tooLong, raw) }
        for scalar in value.unicodeScalars {
            if forbiddenInLocalpart.contains(scalar) || isSpaceOrControl(scalar) {
                throw JIDError(.forbiddenCharacter, raw)
            }
        }
        return value
    }

    static func normaliseDomainpart(_ raw: String) throws(JIDError) -> String {
        var value = raw.lowercased()
        if value.hasSuffix(".") { value.removeLast() }
        guard !value.isEmpty else { throw JIDError(.emptyDomainpart, raw) }
        guard value.utf8.count <= maxPartBytes else { throw JIDError(.tooLong, raw) }
        if value.hasPrefix("[") {
            // An IPv6 literal: hex digits, colons and dots between brackets.
            guard value.hasSuffix("]"), value.count > 2 else { throw JIDError(.invalidDomain, raw) }
            for scalar in value.unicodeScalars.dropFirst().dropLast() {
                guard scalar.properties.isASCIIHexDigit || scalar == ":" || scalar == "." else {
                    throw JIDError(.invalidDomain, raw)
                }
            }
            return value
        }
        for label in value.split(separator: ".", omittingEmptySubsequences: false) {
            guard !label.isEmpty, label.utf8.count <= 63 else { throw JIDError(.invalidDomain, raw) }
            guard label.first != "-", label.last != "-" else { throw JIDError(.invalidDomain, raw) }
            for scalar in label.unicodeScalars {
                if scalar.isASCII {
                    let ok =
                        ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "-" || scalar == "_"
                    guard ok else { throw JIDError(.invalidDomain, raw) }
                } else if isSpaceOrControl(scalar) {
                    throw JIDError(.invalidDomain, raw)
                }
            }
        }
        return value
    }

    static func normaliseResourcepart(_ raw: String) throws(JIDError) -> String {
        guard !raw.isEmpty else { throw JIDError(.emptyResourcepart, raw) }
        guard raw.utf8.count <= maxPartBytes else { throw JIDError(.tooLong, raw) }
        for scalar in raw.unicodeScalars where scalar.properties.generalCategory == .control {
            throw JIDError(.forbiddenCharacter, raw)
        }
        return raw
    }

    private static func isSpaceOrControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .spaceSeparator, .lineSeparator, .paragraphSeparator, .format: return true
        default: return false
        }
    }
}

/// Why a string is not a valid JID. Maps onto the `jid-malformed` stanza error.
public struct JIDError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Reason: Sendable, Hashable {
        case emptyLocalpart, emptyDomainpart, emptyResourcepart, tooLong, forbiddenCharacter, invalidDomain
    }

    public let reason: Reason
    public let input: String

    init(_ reason: Reason, _ input: String) {
        self.reason = reason
        self.input = input
    }

    public var description: String { "invalid JID '\(input)': \(reason)" }
}
