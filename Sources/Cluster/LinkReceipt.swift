/// Held by whatever handles a frame of room input. The link acknowledges a frame to its
/// sender only once its receipt is released — once the room has handled the input (or
/// refused it, or passed it on) — so that input the receiving node took but never
/// handled (it was paused or killed first) is still the sender's to route again when
/// the receiver is declared gone.
public final class LinkReceipt: Sendable {
    private let released: @Sendable () -> Void

    /// The receipt of a frame that is handled when handed over (all but room input): one
    /// shared instance, never released, so that no frame pays for a receipt it does not need.
    static let unneeded = LinkReceipt(released: {})

    init(released: @escaping @Sendable () -> Void) {
        self.released = released
    }

    deinit { released() }
}
