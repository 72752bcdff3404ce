import ConclaveFuzzing
import LibFuzzerDriver

/// libFuzzer's entry point for one input (see ConclaveFuzzing's `fuzzRoundTrip`).
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzRoundTrip(fuzzBytes(data, size))
    return 0
}

/// The executable's entry point, as SwiftPM names it (see `runLibFuzzer`).
@_cdecl("FuzzRoundTrip_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv, testOneInput)
}
