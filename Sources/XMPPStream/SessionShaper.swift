public import NIOCore

/// Traffic shaping of one bound session's input: bytes and stanzas a second, each with a
/// burst, as token buckets on the event loop's clock (refilled by the time elapsed when
/// asked; no timer of its own).
///
/// Bytes are shaped by delaying the next read: what one read brought is handled, and the
/// bucket may go into debt, which the next read waits off. Stanzas are shaped one by one:
/// a stanza for which there is no token waits (with everything read after it) until there
/// is one. `C2SConnection` carries the waits out.
public struct SessionShaper: Sendable {
    public struct Limits: Sendable, Hashable {
        /// Bytes a second a session may send; 0: not shaped by bytes.
        public var bytesPerSecond = 1 << 20
        /// Bytes a session may send at once before the rate applies.
        public var burstBytes = 2 << 20
        /// Stanzas a second a session may send; 0: not shaped by stanzas.
        public var stanzasPerSecond = 1000
        /// Stanzas a session may send at once before the rate applies.
        public var burstStanzas = 2000
        /// Stanzas read but held back by the shaper; one more ends the stream with
        /// `<policy-violation/>` (a client that sends far ahead of its rate in one go).
        public var maxHeldStanzas = 5000

        public init() {}

        /// Why these limits cannot be used, or `nil`.
        public var problem: String? {
            if bytesPerSecond < 0 || stanzasPerSecond < 0 { return "rates must not be negative (0: not shaped)" }
            if bytesPerSecond > 0 && burstBytes < 1 { return "the byte burst must be positive" }
            if stanzasPerSecond > 0 && burstStanzas < 1 { return "the stanza burst must be positive" }
            if maxHeldStanzas < 1 { return "the held stanzas' bound must be positive" }
            return nil
        }
    }

    public let limits: Limits
    /// Tokens left (may be negative for bytes: a debt); `nil`: a full bucket.
    private var bytes: Double?
    private var stanzas: Double?
    private var updated: NIODeadline?

    public init(limits: Limits) {
        self.limits = limits
    }

    private mutating func refill(now: NIODeadline) {
        let elapsed = updated.map { Double(max(0, (now - $0).nanoseconds)) / 1e9 } ?? 0
        updated = now
        if limits.bytesPerSecond > 0 {
            let burst = Double(limits.burstBytes)
            bytes = bytes.map { min(burst, $0 + elapsed * Double(limits.bytesPerSecond)) } ?? burst
        }
        if limits.stanzasPerSecond > 0 {
            let burst = Double(limits.burstStanzas)
            stanzas = stanzas.map { min(burst, $0 + elapsed * Double(limits.stanzasPerSecond)) } ?? burst
        }
    }

    /// Counts `count` bytes read at `now`; returns how long the next read waits, or `nil`.
    public mutating func read(_ count: Int, now: NIODeadline) -> TimeAmount? {
        guard limits.bytesPerSecond > 0 else { return nil }
        refill(now: now)
        let left = (bytes ?? 0) - Double(count)
        bytes = left
        guard left < 0 else { return nil }
        return Self.wait(-left / Double(limits.bytesPerSecond))
    }

    /// Takes a token for one stanza at `now`: `nil` when it may be handled now, otherwise
    /// how long until it may (nothing taken).
    public mutating func stanza(now: NIODeadline) -> TimeAmount? {
        guard limits.stanzasPerSecond > 0 else { return nil }
        refill(now: now)
        let left = stanzas ?? 0
        // A token refilled over several waits may fall short of 1 by a rounding error.
        guard left < 1 - 1e-9 else {
            stanzas = max(0, left - 1)
            return nil
        }
        return Self.wait((1 - left) / Double(limits.stanzasPerSecond))
    }

    /// At least a millisecond: a wait rounded down to nothing would spin.
    private static func wait(_ seconds: Double) -> TimeAmount {
        .nanoseconds(max(1_000_000, Int64((seconds * 1e9).rounded(.up))))
    }
}
