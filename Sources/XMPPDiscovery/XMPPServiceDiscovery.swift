/// Where to connect for an XMPP domain (RFC 6120 §3.2, XEP-0368): the
/// `_xmpps-client._tcp` (Direct TLS) and `_xmpp-client._tcp` (STARTTLS) SRV records of
/// the domain, in priority order, each priority's records in weighted random order
/// (RFC 2782), Direct TLS records before STARTTLS ones of the same priority; without
/// any record, the domain itself on port 5222.
public struct XMPPEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// The host name to connect to (the SRV target, or the domain).
    public var host: String
    public var port: Int
    /// TLS from the first byte (an `_xmpps-client` record) rather than STARTTLS.
    public var directTLS: Bool
    /// The SRV record's priority and weight (0 for the fallback).
    public var priority: Int
    public var weight: Int
    /// Where it came from: an SRV record, or the fallback.
    public var fromSRV: Bool

    public init(host: String, port: Int, directTLS: Bool, priority: Int = 0, weight: Int = 0, fromSRV: Bool = false) {
        self.host = host
        self.port = port
        self.directTLS = directTLS
        self.priority = priority
        self.weight = weight
        self.fromSRV = fromSRV
    }

    public var description: String {
        let address = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        return address + (directTLS ? " (Direct TLS)" : " (STARTTLS)")
    }
}

/// The SRV records of a domain's two client services, as looked up.
public struct XMPPServiceRecords: Sendable, Hashable {
    public var directTLS: [SRVRecord]
    public var startTLS: [SRVRecord]
    /// Why a lookup gave nothing, when one failed (timeouts, server failures): the
    /// fallback is used then too.
    public var problems: [String] = []

    public init(directTLS: [SRVRecord], startTLS: [SRVRecord], problems: [String] = []) {
        self.directTLS = directTLS
        self.startTLS = startTLS
        self.problems = problems
    }

    /// One record whose target is "." says the service is not offered (RFC 2782).
    static func offered(_ records: [SRVRecord]) -> [SRVRecord] {
        if records.count == 1, records[0].target == "." { return [] }
        return records.filter { $0.target != "." }
    }

    static func declined(_ records: [SRVRecord]) -> Bool { records.count == 1 && records[0].target == "." }

    /// The endpoints to try, in order.
    public func endpoints(domain: String, using generator: inout some RandomNumberGenerator) -> [XMPPEndpoint] {
        let direct = Self.offered(directTLS)
        let plain = Self.offered(startTLS)
        if direct.isEmpty, plain.isEmpty {
            // The STARTTLS service explicitly declined: no fallback to the domain
            // (which would be that same service on its default port).
            if Self.declined(startTLS) { return [] }
            return [XMPPEndpoint(host: domain, port: 5222, directTLS: false)]
        }
        var endpoints: [XMPPEndpoint] = []
        for priority in Set((direct + plain).map(\.priority)).sorted() {
            for (records, isDirect) in [(direct, true), (plain, false)] {
                let band = records.filter { $0.priority == priority }
                for record in Self.weightedOrder(band, using: &generator) {
                    endpoints.append(
                        XMPPEndpoint(
                            host: record.target, port: Int(record.port), directTLS: isDirect,
                            priority: Int(record.priority), weight: Int(record.weight), fromSRV: true
                        )
                    )
                }
            }
        }
        return endpoints
    }

    /// RFC 2782's selection, repeated until every record is placed: records of weight
    /// 0 first, then a running sum of weights; a random number in 0...sum picks the
    /// first record whose running sum reaches it. A record of weight w among records
    /// of total weight W comes first with probability w/W; weight-0 records only
    /// by the chance of drawing 0 (or when all weights are 0).
    public static func weightedOrder(_ records: [SRVRecord], using generator: inout some RandomNumberGenerator) -> [SRVRecord] {
        var remaining = records.filter { $0.weight == 0 } + records.filter { $0.weight != 0 }
        var ordered: [SRVRecord] = []
        ordered.reserveCapacity(records.count)
        while !remaining.isEmpty {
            let total = remaining.reduce(0) { $0 + Int($1.weight) }
            // RFC 2782 draws from 0...total; drawing 0 picks the first record even
            // when it has weight 1, which for weights 1, 1, 2 gives 40/20/40 % instead
            // of 25/25/50 %. Without weight-0 records the draw starts at 1.
            let lowest = remaining.first?.weight == 0 ? 0 : 1
            let draw = total == 0 ? 0 : Int.random(in: lowest...total, using: &generator)
            var sum = 0
            var chosen = remaining.count - 1
            for (index, record) in remaining.enumerated() {
                sum += Int(record.weight)
                if sum >= draw {
                    chosen = index
                    break
                }
            }
            ordered.append(remaining.remove(at: chosen))
        }
        return ordered
    }
}

/// Looks up a domain's client services with a DNS server.
public struct XMPPServiceDiscovery: Sendable {
    public let client: DNSClient

    public init(client: DNSClient) {
        self.client = client
    }

    /// Both services' SRV records; a failed lookup counts as no records (and is
    /// reported in `problems`), so the caller falls back to the domain.
    public func records(for domain: String) async -> XMPPServiceRecords {
        async let direct = lookUp("_xmpps-client._tcp." + domain)
        async let plain = lookUp("_xmpp-client._tcp." + domain)
        let (directResult, plainResult) = await (direct, plain)
        var problems: [String] = []
        for (name, result) in [("_xmpps-client._tcp.", directResult), ("_xmpp-client._tcp.", plainResult)] {
            if case .failure(let error) = result { problems.append("SRV \(name)\(domain): \(error)") }
        }
        return XMPPServiceRecords(
            directTLS: (try? directResult.get()) ?? [], startTLS: (try? plainResult.get()) ?? [], problems: problems
        )
    }

    /// The host's first IPv4 address, else its first IPv6 address, as this server
    /// knows them; nil when it knows neither (then the system resolver may).
    public func address(of host: String) async -> String? {
        if let response = try? await client.query(host, type: .a), let first = response.addresses.first { return first }
        if let response = try? await client.query(host, type: .aaaa), let first = response.addresses.first { return first }
        return nil
    }

    private func lookUp(_ name: String) async -> Result<[SRVRecord], any Error> {
        do {
            return .success(try await client.query(name, type: .srv).srvRecords)
        } catch {
            return .failure(error)
        }
    }
}

/// A seeded generator (SplitMix64), for repeatable choices in tests and runs.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
