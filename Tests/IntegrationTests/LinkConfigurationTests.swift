import Foundation
import ServerRuntime
import Testing

/// The node-link limits (`cluster.link_*`, `cluster.tls_verify_names`): documented
/// defaults, set from the file, overridden by the environment, refused when nonsensical.
@Suite struct LinkConfigurationTests {
    func file(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "conclave-link-config-\(UInt32.random(in: 0...UInt32.max)).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func defaults() throws {
        let cluster = try ServerConfiguration.load(path: nil, environment: [:]).cluster
        #expect(cluster.tlsVerifyNames)
        #expect(cluster.linkAuthTimeoutSeconds == 5)
        #expect(cluster.linkPreAuthBytes == 4096)
        #expect(cluster.linkMaxUnauthenticated == 64)
        #expect(cluster.linkMaxUnauthenticatedPerAddress == 8)
        #expect(cluster.linkQueueBytes == 64 * 1024 * 1024)
        #expect(cluster.linkMaxFrameBytes == 16 * 1024 * 1024)
    }

    @Test func theFileSetsThemAndTheEnvironmentOverrides() throws {
        let path = try file(
            """
            cluster:
              tls_verify_names: false
              link_auth_timeout_seconds: 2.5
              link_preauth_bytes: 2048
              link_max_unauthenticated: 10
              link_max_unauthenticated_per_address: 3
              link_queue_bytes: 1048576
              link_max_frame_bytes: 65536
            """
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        let cluster = try ServerConfiguration.load(path: path, environment: [:]).cluster
        #expect(!cluster.tlsVerifyNames)
        #expect(cluster.linkAuthTimeoutSeconds == 2.5)
        #expect(cluster.linkPreAuthBytes == 2048)
        #expect(cluster.linkMaxUnauthenticated == 10)
        #expect(cluster.linkMaxUnauthenticatedPerAddress == 3)
        #expect(cluster.linkQueueBytes == 1_048_576)
        #expect(cluster.linkMaxFrameBytes == 65536)
        let overridden = try ServerConfiguration.load(
            path: path,
            environment: [
                "CONCLAVE_CLUSTER_TLS_VERIFY_NAMES": "true", "CONCLAVE_CLUSTER_LINK_AUTH_TIMEOUT_SECONDS": "1",
                "CONCLAVE_CLUSTER_LINK_PREAUTH_BYTES": "1024", "CONCLAVE_CLUSTER_LINK_MAX_UNAUTHENTICATED": "5",
                "CONCLAVE_CLUSTER_LINK_MAX_UNAUTHENTICATED_PER_ADDRESS": "1",
                "CONCLAVE_CLUSTER_LINK_QUEUE_BYTES": "2097152", "CONCLAVE_CLUSTER_LINK_MAX_FRAME_BYTES": "4096",
            ]
        ).cluster
        #expect(overridden.tlsVerifyNames)
        #expect(overridden.linkAuthTimeoutSeconds == 1)
        #expect(overridden.linkPreAuthBytes == 1024)
        #expect(overridden.linkMaxUnauthenticated == 5)
        #expect(overridden.linkMaxUnauthenticatedPerAddress == 1)
        #expect(overridden.linkQueueBytes == 2_097_152)
        #expect(overridden.linkMaxFrameBytes == 4096)
    }

    @Test(arguments: [
        "cluster:\n  link_preauth_bytes: 0\n", "cluster:\n  link_auth_timeout_seconds: -1\n",
        "cluster:\n  link_queue_bytes: 1024\n  link_max_frame_bytes: 4096\n",
        // A frame's length is 4 bytes: no frame beyond 4 GiB, and none too small to carry one.
        "cluster:\n  link_queue_bytes: 8589934592\n  link_max_frame_bytes: 4294967296\n",
        "cluster:\n  link_max_frame_bytes: 16\n",
    ])
    func nonsensicalLimitsAreRefused(_ text: String) throws {
        let path = try file(text)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: (any Error).self) { try ServerConfiguration.load(path: path, environment: [:]) }
    }
}
