/// The room's clock and stanza-id counter: moved only by the input, so runs replay.
/// Used from one thread (one fuzz input at a time), which makes `@unchecked` sound.
final class FuzzClock: @unchecked Sendable {
    static let start = 1_700_000_000.0
    private var time = FuzzClock.start
    private var ids = 0

    func now() -> Double { time }

    func advance(by seconds: Double) { time += seconds }

    func nextID() -> String {
        ids += 1
        return "sid-\(ids)"
    }
}
