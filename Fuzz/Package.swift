// swift-tools-version: 6.1
// libFuzzer targets for Conclave (docs/fuzzing.md). Run from the repository root with
// `make fuzz`; the build needs the sanitizer flags:
//   swift build -c release --package-path Fuzz --scratch-path .build-fuzz \
//       -Xswiftc -sanitize=fuzzer,address
import PackageDescription

// The root package is a path dependency, so SwiftPM names it after its directory
// (lowercased), whatever that directory is called in this clone.
let rootIdentity: String = {
    let components = Context.packageDirectory.split(separator: "/", omittingEmptySubsequences: true)
    return components.dropLast().last.map { String($0).lowercased() } ?? "conclave"
}()

let targets: Target.Dependency = .product(name: "ConclaveFuzzTargets", package: rootIdentity)

let package = Package(
    name: "ConclaveFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(path: "..")],
    targets: [
        .target(name: "LibFuzzerDriver", path: "Sources/LibFuzzerDriver"),
        .executableTarget(
            name: "FuzzStreamParser", dependencies: [targets, "LibFuzzerDriver"], path: "Sources/FuzzStreamParser"),
        .executableTarget(
            name: "FuzzRoundTrip", dependencies: [targets, "LibFuzzerDriver"], path: "Sources/FuzzRoundTrip"),
        .executableTarget(name: "FuzzRoom", dependencies: [targets, "LibFuzzerDriver"], path: "Sources/FuzzRoom"),
    ],
    swiftLanguageModes: [.v6]
)
