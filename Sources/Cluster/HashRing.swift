/// Rendezvous (highest random weight) hashing of room JIDs over the live nodes.
///
/// Every node computes the same owner from the same membership: the score of a
/// (node, key) pair depends only on their names, never on process-local hash seeds.
/// When a node joins, only the keys it now scores highest on move to it (about
/// 1/(n+1) of them); when a node leaves, only its own keys move, each to its
/// second-best node.
public struct HashRing: Sendable, Hashable {
    /// Node names, sorted, without duplicates.
    public let nodes: [String]

    public init(nodes: some Sequence<String>) {
        self.nodes = Array(Set(nodes)).sorted()
    }

    public var isEmpty: Bool { nodes.isEmpty }

    /// The node owning `key`, or `nil` when there are no nodes.
    public func owner(of key: String) -> String? {
        var best: String?
        var bestScore: UInt64 = 0
        for node in nodes {
            let score = Self.score(node: node, key: key)
            if best == nil || score > bestScore || (score == bestScore && node < best!) {
                best = node
                bestScore = score
            }
        }
        return best
    }

    /// A well-mixed 64-bit score: FNV-1a over "node NUL key", finished with the
    /// SplitMix64 finaliser so that similar names give unrelated scores.
    public static func score(node: String, key: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in node.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        hash = (hash ^ 0) &* 0x0000_0100_0000_01b3
        for byte in key.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        hash ^= hash >> 30
        hash = hash &* 0xbf58_476d_1ce4_e5b9
        hash ^= hash >> 27
        hash = hash &* 0x94d0_49bb_1331_11eb
        hash ^= hash >> 31
        return hash
    }
}
