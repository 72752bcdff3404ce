/// A broken invariant: what a fuzz target found wrong with the code under test.
///
/// The targets throw it rather than trap, so that the corpus tests (`make test`) can
/// name the input that broke; the libFuzzer entry points (`fuzzStreamParser` …) turn
/// it into a trap, which is what libFuzzer records as a crash.
public struct FuzzFinding: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        // Long enough to show what broke, short enough to read (inputs reach megabytes).
        self.description = description.utf8.count > 4000 ? String(description.prefix(4000)) + "…" : description
    }

    /// Throws `message` unless `condition` holds.
    static func check(_ condition: Bool, _ message: @autoclosure () -> String) throws(FuzzFinding) {
        if !condition { throw FuzzFinding(message()) }
    }
}
