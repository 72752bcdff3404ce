/// A token bucket on the room's clock: it holds at most `burst` tokens, gains `rate`
/// of them a second, and each event takes one. It bounds how often one occupant can
/// make the room broadcast to everyone (presence updates), without a timer: the bucket
/// is refilled by the time elapsed whenever it is asked.
public struct TokenBucket: Sendable, Hashable {
    /// Tokens left after the last event; `nil` until the first one (a full bucket).
    public private(set) var tokens: Double?
    /// When `tokens` was last brought up to date (seconds, the room's clock).
    public private(set) var updated: Double = 0

    public init() {}

    /// Takes one token at `now` if there is one. `rate`: tokens gained a second;
    /// `burst`: the most the bucket holds.
    public mutating func take(now: Double, rate: Double, burst: Double) -> Bool {
        let elapsed = Swift.max(0, now - updated)
        var available = tokens.map { Swift.min(burst, $0 + elapsed * rate) } ?? burst
        updated = now
        guard available >= 1 else {
            tokens = available
            return false
        }
        available -= 1
        tokens = available
        return true
    }
}
