/// A broken invariant: what a fuzz target found wrong with the code under test.
///
/// The targets throw it rather than trap, so that the corpus tests (`make test`) can
/// name the input that broke; the libFuzzer entry points (`fuzzStreamParser` …) turn
/// it into a trap, which is what libFuzzer records as a crash.
public struct FuzzFinding: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }

    /// Throws `message` unless `condition` holds.
    static func check(_ condition: Bool, _ message: @autoclosure () -> String) throws(FuzzFinding) {
        if !condition { throw FuzzFinding(message()) }
    }
}
