/// A random number generator that a seed fully determines (SplitMix64), so that a run
/// can be replayed: `--seed N` makes the same choices again.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The generator of one step. Each step draws from its own generator, so the choices
    /// of step k do not depend on how many draws earlier steps happened to make (a client
    /// that had to reconnect draws a node, one that did not, does not).
    static func step(_ step: Int, of seed: UInt64) -> SeededRandom {
        var mixer = SeededRandom(seed: seed ^ (UInt64(step) &* 0xD1B5_4A32_D192_ED03))
        return SeededRandom(seed: mixer.next())
    }

    /// True with probability `p`.
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }

    /// One of `choices`, each with its weight (weights ≤ 0 are never chosen).
    mutating func weighted<T>(_ choices: [(T, Int)]) -> T? {
        let total = choices.reduce(0) { $0 + max($1.1, 0) }
        guard total > 0 else { return nil }
        var pick = Int.random(in: 0..<total, using: &self)
        for (choice, weight) in choices where weight > 0 {
            if pick < weight { return choice }
            pick -= weight
        }
        return nil
    }
}
