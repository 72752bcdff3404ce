/// The three fuzz targets as libFuzzer calls them: any finding traps, with its message.
///
/// `Fuzz/` (a nested package) links these into libFuzzer executables; the corpus tests
/// call the targets' `run` directly. See docs/fuzzing.md.

/// The stream parser fed arbitrary bytes in arbitrary pieces (`StreamParserTarget`).
public func fuzzStreamParser(_ data: UnsafeRawBufferPointer) {
    trapOnFinding { () throws(FuzzFinding) in try StreamParserTarget.run(Array(data)) }
}

/// parse → serialize → parse for every stanza the bytes give (`RoundTripTarget`).
public func fuzzRoundTrip(_ data: UnsafeRawBufferPointer) {
    trapOnFinding { () throws(FuzzFinding) in try RoundTripTarget.run(Array(data)) }
}

/// A room fed stanzas from several senders, chosen by the bytes (`RoomTarget`).
public func fuzzRoom(_ data: UnsafeRawBufferPointer) {
    trapOnFinding { () throws(FuzzFinding) in try RoomTarget.run(Array(data)) }
}

public func fuzzStreamParser(_ data: [UInt8]) {
    data.withUnsafeBytes { fuzzStreamParser($0) }
}

public func fuzzRoundTrip(_ data: [UInt8]) {
    data.withUnsafeBytes { fuzzRoundTrip($0) }
}

public func fuzzRoom(_ data: [UInt8]) {
    data.withUnsafeBytes { fuzzRoom($0) }
}

private func trapOnFinding(_ body: () throws(FuzzFinding) -> Void) {
    do {
        try body()
    } catch {
        fatalError("fuzz finding: \(error.description)")
    }
}
