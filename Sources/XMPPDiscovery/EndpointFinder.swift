import Foundation


/// Finds where clients connect (conclave-spec without --node, conclave-bench): the SRV
/// records of the domain, looked up once per domain, ordered afresh for each
/// connection; and counts which endpoint each connection used, for a summary.
public actor EndpointFinder {
    public struct Candidate: Sendable, CustomStringConvertible {
        public var endpoint: XMPPEndpoint
        /// The address to connect to: the endpoint's host as the named DNS server
        /// resolves it, else the host name itself (for the system resolver).
        public var address: String

        public var description: String { "\(endpoint)" + (address == endpoint.host ? "" : " at \(address)") }
    }

    /// The domain every lookup uses instead of the client's (--domain).
    public nonisolated let domainOverride: String?
    /// The DNS server named with --dns-server (nil: the system's).
    public nonisolated let explicitServer: DNSServerAddress?
    private let discovery: XMPPServiceDiscovery?
    private var generator: any RandomNumberGenerator
    private var cache: [String: XMPPServiceRecords] = [:]
    private var addresses: [String: String] = [:]
    public private(set) var problems: [String] = []

    struct Tally: Sendable {
        var endpoint: XMPPEndpoint
        var connections = 0
        var refusals = 0
    }
    private var tallies: [String: Tally] = [:]
    private var order: [String] = []

    /// Clients of one script prefer endpoints the others do not use (--no-spread: off).
    public nonisolated let spread: Bool

    public init(domain: String?, server: DNSServerAddress?, seed: UInt64?, spread: Bool = false) {
        self.spread = spread
        domainOverride = domain
        explicitServer = server
        let chosen = server ?? DNSServerAddress.system()
        discovery = chosen.map { XMPPServiceDiscovery(client: DNSClient(server: $0)) }
        generator = seed.map { SeededGenerator(seed: $0) as any RandomNumberGenerator } ?? SystemRandomNumberGenerator()
    }

    /// Where a client of `domain` tries to connect, in order.
    public func candidates(for clientDomain: String) async -> [Candidate] {
        let domain = domainOverride ?? clientDomain
        let records: XMPPServiceRecords
        if let cached = cache[domain] {
            records = cached
        } else if let discovery, explicitServer != nil || !Self.isLocalhost(domain) {
            records = await discovery.records(for: domain)
            problems += records.problems
            cache[domain] = records
        } else {
            // No resolver, or `localhost` without a named server: names under
            // localhost are not looked up in the DNS (RFC 6761 §6.3).
            records = XMPPServiceRecords(directTLS: [], startTLS: [])
            cache[domain] = records
        }
        var candidates: [Candidate] = []
        for endpoint in records.endpoints(domain: domain, using: &generator) {
            candidates.append(Candidate(endpoint: endpoint, address: await address(of: endpoint)))
        }
        return candidates
    }

    private func address(of endpoint: XMPPEndpoint) async -> String {
        guard endpoint.fromSRV, explicitServer != nil, let discovery else { return endpoint.host }
        if let known = addresses[endpoint.host] { return known }
        let found = await discovery.address(of: endpoint.host) ?? endpoint.host
        addresses[endpoint.host] = found
        return found
    }

    /// No endpoint of the domain accepted: why each one failed.
    public struct Unreachable: Error, CustomStringConvertible {
        public var domain: String
        public var failures: [String]
        public var description: String {
            "cannot connect to \(domain): " + (failures.isEmpty ? "no endpoint to try" : failures.joined(separator: "; "))
        }
    }

    /// Tries the endpoints of `domain` in order (as `order` rearranges them) until
    /// `attempt` succeeds (RFC 6120 §3.2.1: the next record when one fails), and
    /// tallies each try. `attempt` returns nil to skip an endpoint.
    public nonisolated func connect<Connection: Sendable>(
        to domain: String,
        order: ([Candidate]) -> [Candidate] = { $0 },
        _ attempt: (Candidate) async throws -> Connection?
    ) async throws -> (Connection, Candidate) {
        var failures: [String] = []
        for candidate in order(await candidates(for: domain)) {
            do {
                guard let connection = try await attempt(candidate) else { continue }
                await connected(candidate.endpoint)
                return (connection, candidate)
            } catch {
                await refused(candidate.endpoint)
                failures.append("\(candidate): \(error)")
            }
        }
        throw Unreachable(domain: domain, failures: failures)
    }

    public func connected(_ endpoint: XMPPEndpoint) { tally(endpoint) { $0.connections += 1 } }
    public func refused(_ endpoint: XMPPEndpoint) { tally(endpoint) { $0.refusals += 1 } }

    private func tally(_ endpoint: XMPPEndpoint, _ change: (inout Tally) -> Void) {
        let key = endpoint.description
        if tallies[key] == nil {
            tallies[key] = Tally(endpoint: endpoint)
            order.append(key)
        }
        change(&tallies[key]!)
    }

    /// One line per endpoint used, SRV targets by priority then name.
    public func summary() -> [String] {
        let rows = order.compactMap { tallies[$0] }.sorted {
            ($0.endpoint.priority, $0.endpoint.host, $0.endpoint.port) < ($1.endpoint.priority, $1.endpoint.host, $1.endpoint.port)
        }
        return rows.map { row in
            var line = "  \(row.endpoint)"
            line += row.endpoint.fromSRV ? " priority \(row.endpoint.priority) weight \(row.endpoint.weight)" : " (no SRV records)"
            line += ": \(row.connections) connection\(row.connections == 1 ? "" : "s")"
            if row.refusals > 0 { line += ", \(row.refusals) refused" }
            return line
        }
    }

    public var serverDescription: String {
        explicitServer.map { "\($0)" } ?? DNSServerAddress.system().map { "\($0) (resolv.conf)" } ?? "no DNS server"
    }

    public static func isLocalhost(_ domain: String) -> Bool {
        let lower = domain.lowercased()
        return lower == "localhost" || lower.hasSuffix(".localhost")
    }
}
