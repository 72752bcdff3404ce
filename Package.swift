// swift-tools-version: 6.1
import PackageDescription

let upcoming: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Conclave",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "conclave", targets: ["conclave"]),
        .executable(name: "conclave-spec", targets: ["conclave-spec"]),
        .executable(name: "conclave-bench", targets: ["conclave-bench"]),
        .executable(name: "conclave-chaos", targets: ["conclave-chaos"]),
        .executable(name: "conclave-diff", targets: ["conclave-diff"]),
        // For the allocation benchmarks in Benchmarks/ (a nested package).
        .library(name: "ConclaveBenchmarkTargets", targets: ["XMPPCore", "XMPPXMLParser", "XMPPStream", "MUC", "Cluster"]),
        // For the libFuzzer targets in Fuzz/ (a nested package): NIO-free, so the
        // instrumented build stays small.
        .library(name: "ConclaveFuzzTargets", targets: ["ConclaveFuzzing"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.0.0"..<"5.0.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibXML2",
            pkgConfig: "libxml-2.0",
            providers: [.apt(["libxml2-dev"])]
        ),
        .target(name: "XMPPCore", swiftSettings: upcoming),
        .target(
            name: "XMPPXMLParser",
            dependencies: ["XMPPCore", "CLibXML2"],
            swiftSettings: upcoming
        ),
        .target(
            name: "XMPPStream",
            dependencies: [
                "XMPPCore", "XMPPXMLParser", "Storage",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "XMPPDiscovery",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: upcoming
        ),
        .target(name: "MUC", dependencies: ["XMPPCore"], swiftSettings: upcoming),
        .target(
            name: "ConclaveFuzzing",
            dependencies: ["XMPPCore", "XMPPXMLParser", "MUC"],
            swiftSettings: upcoming
        ),
        .target(
            name: "MUCService",
            dependencies: [
                "MUC", "XMPPCore", "XMPPXMLParser", "Storage",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "Scansion",
            dependencies: ["XMPPCore", "XMPPXMLParser"],
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "conclave-spec",
            dependencies: [
                "Scansion", "XMPPCore", "XMPPXMLParser", "XMPPStream", "XMPPDiscovery",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: upcoming
        ),
        // The differential tester: generated scenarios against a reference server and
        // Conclave, compared stanza by stanza (docs/muc.md).
        .target(
            name: "Differential",
            dependencies: ["XMPPCore", "Scansion", "ConclaveFuzzing"],
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "conclave-diff",
            dependencies: [
                "Differential", "Scansion", "XMPPCore", "XMPPStream",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "conclave-bench",
            dependencies: [
                "XMPPCore", "XMPPStream", "XMPPDiscovery", "ServerRuntime",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: upcoming
        ),
        // What the churn harness and the multi-process tests share: PostgreSQL URLs, SQL on
        // short connections, child processes, number runs for messages.
        .target(
            name: "ClusterTestSupport",
            dependencies: [
                "Storage",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        // The churn harness (`make chaos`): real nodes started, stopped, killed, paused and
        // drained over one reused database while clients talk; checks after every step.
        .executableTarget(
            name: "conclave-chaos",
            dependencies: [
                "ClusterTestSupport", "XMPPCore", "XMPPStream",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "Storage",
            dependencies: ["XMPPCore"],
            swiftSettings: upcoming
        ),
        .target(
            name: "StoragePostgres",
            dependencies: [
                "Storage", "XMPPCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "Cluster",
            dependencies: [
                "XMPPCore", "XMPPXMLParser",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "AdminHTTP",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "ServerRuntime",
            dependencies: [
                "XMPPCore", "XMPPXMLParser", "XMPPStream", "Storage", "StoragePostgres", "MUC", "MUCService", "Cluster", "AdminHTTP",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "conclave",
            dependencies: [
                "ServerRuntime", "Storage", "StoragePostgres", "XMPPCore", "XMPPStream", "Scansion", "Cluster",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "XMPPCoreTests",
            dependencies: ["XMPPCore"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "XMPPXMLParserTests",
            dependencies: ["XMPPXMLParser", "XMPPCore"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "Cluster", "XMPPCore",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "XMPPDiscoveryTests",
            dependencies: [
                "XMPPDiscovery",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "MUCTests",
            dependencies: ["MUC", "XMPPCore"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "FuzzCorpusTests",
            dependencies: ["ConclaveFuzzing"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "ScansionTests",
            dependencies: ["Scansion", "XMPPCore"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "DifferentialTests",
            dependencies: ["Differential", "Scansion", "XMPPCore"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "XMPPStreamTests",
            dependencies: [
                "XMPPStream", "XMPPCore", "XMPPXMLParser", "Storage",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "ClusterProcessTests",
            dependencies: [
                "ClusterTestSupport", "XMPPStream", "XMPPCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "ClusterTestSupport", "ServerRuntime", "XMPPStream", "XMPPCore", "Storage", "StoragePostgres", "Cluster", "MUC", "MUCService",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: upcoming
        ),
    ],
    swiftLanguageModes: [.v6]
)
