import Foundation
import NIOCore
import Testing
import XMPPCore
import XMPPStream

extension ClusterProcessTests {
    /// SIGHUP makes a running node load its certificate files again: new connections
    /// get the new certificate, the node keeps running, and a broken file changes nothing.
    @Suite(.timeLimit(.minutes(2)))
    struct CertificateReload {
        /// `make certs` into a directory of its own: a CA and one node certificate.
        static func makeCertificates(in directory: String) async throws {
            let result = try await runCommand(
                "/usr/bin/env", ["CONCLAVE_TLS_DIR=\(directory)", "/bin/bash", ClusterTestEnvironment.root + "/deploy/local/certs.sh", "1"],
                directory: directory
            )
            #expect(result.status == 0, "\(result)")
        }

        /// Whether a client that trusts only `ca` completes STARTTLS with the node.
        static func handshake(port: Int, trusting ca: String) async -> Bool {
            var options = XMPPClient.Options()
            options.tls = .starttls(required: true)
            options.trust = .caFile(ca)
            options.timeout = .seconds(5)
            guard let client = try? await XMPPClient.connect(host: "127.0.0.1", port: port, domain: "localhost", options: options)
            else { return false }
            await client.disconnect()
            return true
        }

        static func install(_ from: String, as live: String) throws {
            for suffix in ["crt", "key"] {
                let target = "\(live).\(suffix)"
                try? FileManager.default.removeItem(atPath: target)
                try FileManager.default.copyItem(atPath: "\(from)/node1.\(suffix)", toPath: target)
            }
        }

        @Test func sighupLoadsTheNewCertificateForNewConnections() async throws {
            try await Cluster.run(test: "reload", nodes: 0) { cluster in
                let old = cluster.directory + "/old"
                let new = cluster.directory + "/new"
                for path in [old, new] {
                    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                    try await Self.makeCertificates(in: path)
                }
                let live = cluster.directory + "/live"
                try Self.install(old, as: live)
                let node = try await cluster.start("node1", arguments: ["--tls-certificate", "\(live).crt", "--tls-key", "\(live).key"])
                #expect(await Self.handshake(port: node.port, trusting: "\(old)/ca.crt"))
                #expect(!(await Self.handshake(port: node.port, trusting: "\(new)/ca.crt")))

                // The renewed certificate, then SIGHUP.
                try Self.install(new, as: live)
                let offset = try String(contentsOfFile: node.logPath, encoding: .utf8).utf8.count
                node.signal(SIGHUP)
                _ = try await node.waitForLog("certificates reloaded", after: offset)
                #expect(await Self.handshake(port: node.port, trusting: "\(new)/ca.crt"))
                #expect(!(await Self.handshake(port: node.port, trusting: "\(old)/ca.crt")))
                try await cluster.addUser("romeo@localhost")
                _ = try await cluster.connect("romeo@localhost", to: "node1")

                // A broken file: the reload fails, the node keeps the certificate it has.
                try "not a certificate".write(toFile: "\(live).crt", atomically: true, encoding: .utf8)
                let before = try String(contentsOfFile: node.logPath, encoding: .utf8).utf8.count
                node.signal(SIGHUP)
                _ = try await node.waitForLog("certificate reload failed", after: before)
                #expect(await Self.handshake(port: node.port, trusting: "\(new)/ca.crt"))
                #expect(node.exit.value == nil, "the node is still running")
            }
        }
    }
}
