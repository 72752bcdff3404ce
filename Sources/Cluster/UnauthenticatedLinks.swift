/// Connections to the link port that have not yet proved the cluster secret, counted in
/// total and per remote address, so that a flood of half-open handshakes can neither
/// exhaust the node nor, from one address, crowd out the other nodes' links.
struct UnauthenticatedLinks: Sendable {
    let maxTotal: Int
    let maxPerAddress: Int
    private(set) var total = 0
    private var perAddress: [String: Int] = [:]

    init(maxTotal: Int, maxPerAddress: Int) {
        self.maxTotal = maxTotal
        self.maxPerAddress = maxPerAddress
    }

    /// Counts a new connection from `address`; `false` (nothing counted) when a cap is reached.
    mutating func admit(_ address: String) -> Bool {
        let fromAddress = perAddress[address, default: 0]
        guard total < maxTotal, fromAddress < maxPerAddress else { return false }
        total += 1
        perAddress[address] = fromAddress + 1
        return true
    }

    /// A connection from `address` authenticated or closed.
    mutating func release(_ address: String) {
        guard let count = perAddress[address] else { return }
        total -= 1
        perAddress[address] = count > 1 ? count - 1 : nil
    }

    /// Connections counted from `address`.
    func count(from address: String) -> Int { perAddress[address, default: 0] }
}
