// swift-tools-version: 6.1
// Allocation benchmarks for Conclave (ordo-one/benchmark). Run from the repository
// root with `make bench-alloc`, or here with `swift package benchmark`.
import PackageDescription

// The root package is a path dependency, so SwiftPM names it after its directory
// (lowercased), whatever that directory is called in this clone.
let rootIdentity: String = {
    let components = Context.packageDirectory.split(separator: "/", omittingEmptySubsequences: true)
    return components.dropLast().last.map { String($0).lowercased() } ?? "conclave"
}()

let conclave: Target.Dependency = .product(name: "ConclaveBenchmarkTargets", package: rootIdentity)
let benchmark: Target.Dependency = .product(name: "Benchmark", package: "benchmark")
let support: Target.Dependency = "AllocationBenchmarkSupport"
let plugin: Target.PluginUsage = .plugin(name: "BenchmarkPlugin", package: "benchmark")

let package = Package(
    name: "ConclaveBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(path: ".."),
        // MallocInterposer counts malloc calls without jemalloc; leaving the other
        // default trait (RuntimeInterposer) off keeps its extra package out.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        // Only for ByteBuffer: each delivered copy ends in one, as in C2SConnection.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
    ],
    targets: [
        .target(name: "AllocationBenchmarkSupport", dependencies: [benchmark], path: "Sources/AllocationBenchmarkSupport"),
        .executableTarget(
            name: "StanzaParsing",
            dependencies: [conclave, benchmark, support],
            path: "Benchmarks/StanzaParsing",
            plugins: [plugin]
        ),
        .executableTarget(
            name: "RoomFanout",
            dependencies: [conclave, benchmark, support, .product(name: "NIOCore", package: "swift-nio")],
            path: "Benchmarks/RoomFanout",
            plugins: [plugin]
        ),
        .executableTarget(
            name: "HashRingLookup",
            dependencies: [conclave, benchmark, support],
            path: "Benchmarks/HashRingLookup",
            plugins: [plugin]
        ),
    ],
    swiftLanguageModes: [.v6]
)
