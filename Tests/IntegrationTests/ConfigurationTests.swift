import Foundation
import Logging
import ServerRuntime
import Synchronization
import Testing

/// The YAML file, then CONCLAVE_* variables, each overriding the one before
/// (docs/configuration.md).
@Suite struct ConfigurationTests {
    func file(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "conclave-config-\(UInt32.random(in: 0...UInt32.max)).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func defaultsWithoutAFile() throws {
        let configuration = try ServerConfiguration.load(path: nil, environment: [:])
        #expect(configuration.domain == "localhost")
        #expect(configuration.mucDomain == "conference.localhost")
        #expect(configuration.c2s.port == 5222)
        #expect(configuration.c2s.directTLSPort == 5223)
        #expect(!configuration.c2s.allowPlaintextOnLoopback)
        #expect(configuration.limits.maxStanzaBytes == 256 * 1024)
        #expect(!configuration.auth.channelBinding)
    }

    @Test func theFileSetsEveryKindOfKey() throws {
        let path = try file(
            """
            domain: example.org
            node_name: node7
            database_url: postgres://u:p@db:5432/conclave
            log_level: debug
            muc_admins: [admin@example.org]
            muc_restrict_room_creation: true
            c2s:
              port: 15222
              direct_tls_port: -1
              allow_plaintext_on_loopback: true
            tls:
              certificate: /etc/c.crt
              key: /etc/c.key
            limits:
              max_stanza_bytes: 1000
            auth:
              channel_binding: true
            """
        )
        let configuration = try ServerConfiguration.load(path: path, environment: [:])
        #expect(configuration.domain == "example.org")
        #expect(configuration.mucDomain == "conference.example.org", "the MUC domain follows the domain")
        #expect(configuration.nodeName == "node7")
        #expect(configuration.databaseURL == "postgres://u:p@db:5432/conclave")
        #expect(configuration.logLevel == .debug)
        #expect(configuration.mucAdmins == ["admin@example.org"])
        #expect(configuration.mucRestrictRoomCreation)
        #expect(configuration.c2s.port == 15222)
        #expect(configuration.c2s.directTLSPort == nil)
        #expect(configuration.c2s.allowPlaintextOnLoopback)
        #expect(configuration.tls.certificate == "/etc/c.crt")
        #expect(configuration.limits.maxStanzaBytes == 1000)
        #expect(configuration.auth.channelBinding)
    }

    @Test func linkTLSAndLogFormatFromTheFileAndTheEnvironment() throws {
        let path = try file(
            """
            log_format: json
            cluster:
              tls_ca: /etc/conclave/ca.crt
              tls_certificate: /etc/conclave/node1.crt
              tls_key: /etc/conclave/node1.key
            """
        )
        let configuration = try ServerConfiguration.load(path: path, environment: [:])
        #expect(configuration.logFormat == .json)
        #expect(configuration.cluster.tlsCA == "/etc/conclave/ca.crt")
        #expect(configuration.cluster.tlsCertificate == "/etc/conclave/node1.crt")
        #expect(configuration.cluster.tlsKey == "/etc/conclave/node1.key")
        let overridden = try ServerConfiguration.load(
            path: path, environment: ["CONCLAVE_LOG_FORMAT": "text", "CONCLAVE_CLUSTER_TLS_CA": "/other/ca.crt"]
        )
        #expect(overridden.logFormat == .text)
        #expect(overridden.cluster.tlsCA == "/other/ca.crt")
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.load(path: nil, environment: ["CONCLAVE_LOG_FORMAT": "xml"])
        }
    }

    @Test(arguments: [
        ("domian: example.org\n", "unknown key 'domian'"),
        ("cluster:\n  tlsca: /etc/ca.crt\n", "unknown key 'cluster.tlsca'"),
        ("c2s:\n  port: 5222\n  direct_tls: 5223\n", "unknown key 'c2s.direct_tls'"),
    ])
    func aMisspeltKeyIsAnErrorNamingIt(_ text: String, _ message: String) throws {
        let path = try file(text)
        let error = try #require(throws: ConfigurationError.self) { try ServerConfiguration.load(path: path, environment: [:]) }
        #expect(error.description.contains(message), "\(error)")
    }

    @Test func jsonLogLinesCarryTheMessageLevelAndMetadata() throws {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "conclave") { label in
            JSONLogHandler(label: label, level: .info) { line in lines.withLock { $0.append(line) } }
        }
        logger[metadataKey: "node"] = "node1"
        logger.debug("not logged")
        logger.info("room activated", metadata: ["room": "lobby@conference.localhost", "jid": "romeo@localhost/\"x\"\n"])
        let logged = lines.withLock { $0 }
        #expect(logged.count == 1)
        let line = try #require(logged.first)
        #expect(line.hasSuffix("}\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["msg"] == "room activated")
        #expect(object["level"] == "info")
        #expect(object["node"] == "node1")
        #expect(object["room"] == "lobby@conference.localhost")
        #expect(object["jid"] == "romeo@localhost/\"x\"\n")
        #expect(object["ts"]?.hasPrefix("20") == true)
    }

    /// The configuration files the repository ships (deploy/local for `make run`, the
    /// per-node examples of docs/deploy.md) load without an error.
    @Test func theShippedConfigurationFilesLoad() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let example = root.appendingPathComponent("deploy/example")
        let files = try FileManager.default.contentsOfDirectory(atPath: example.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files == ["node1.yaml", "node2.yaml", "node3.yaml"])
        for (index, name) in files.enumerated() {
            let configuration = try ServerConfiguration.load(path: example.appendingPathComponent(name).path, environment: [:])
            #expect(configuration.nodeName == "node\(index + 1)")
            #expect(configuration.domain == "example.org")
            #expect(configuration.cluster.tlsCA != nil, "the examples link over mutual TLS")
        }
        _ = try ServerConfiguration.load(path: root.appendingPathComponent("deploy/local/conclave.yaml").path, environment: [:])
    }

    @Test func environmentOverridesTheFile() throws {
        let path = try file("domain: example.org\nc2s:\n  port: 15222\n")
        let configuration = try ServerConfiguration.load(
            path: path,
            environment: [
                "CONCLAVE_C2S_PORT": "25222", "CONCLAVE_MUC_DOMAIN": "rooms.example.org",
                "CONCLAVE_MUC_ADMINS": "a@example.org, b@example.org", "CONCLAVE_AUTH_CHANNEL_BINDING": "yes",
            ]
        )
        #expect(configuration.domain == "example.org")
        #expect(configuration.c2s.port == 25222)
        #expect(configuration.mucDomain == "rooms.example.org")
        #expect(configuration.mucAdmins == ["a@example.org", "b@example.org"])
        #expect(configuration.auth.channelBinding)
    }

    @Test(arguments: [
        ("c2s:\n  port: many\n", [String: String]()),
        ("log_level: loud\n", [:]),
        ("", ["CONCLAVE_C2S_PORT": "x"]),
        ("", ["CONCLAVE_C2S_ALLOW_PLAINTEXT_ON_LOOPBACK": "perhaps"]),
        ("limits:\n  max_connections: -1\n", [:]),
        ("", ["CONCLAVE_LIMITS_MAX_CONNECTIONS": "-5"]),
        ("limits:\n  session_stanzas_per_second: -1\n", [:]),
        ("limits:\n  session_bytes_per_second: 100\n  session_burst_bytes: 0\n", [:]),
        ("", ["CONCLAVE_LIMITS_SESSION_MAX_HELD_STANZAS": "0"]),
        ("limits:\n  yield_after_bytes: -1\n", [:]),
        ("limits:\n  room_writer_backlog_bytes: 1000\n", [:]),
        ("", ["CONCLAVE_LIMITS_MAX_MEMORY_BYTES": "-1"]),
    ])
    func badValuesAreRefusedWithTheirName(yaml: String, environment: [String: String]) throws {
        let path = try file(yaml)
        #expect(throws: ConfigurationError.self) { try ServerConfiguration.load(path: path, environment: environment) }
    }

    @Test func theConnectionBudgetIsOffUnlessSet() throws {
        #expect(try ServerConfiguration.load(path: nil, environment: [:]).limits.maxConnections == 0)
        let path = try file("limits:\n  max_connections: 5000\n")
        #expect(try ServerConfiguration.load(path: path, environment: [:]).limits.maxConnections == 5000)
        let overridden = try ServerConfiguration.load(path: path, environment: ["CONCLAVE_LIMITS_MAX_CONNECTIONS": "7"])
        #expect(overridden.limits.maxConnections == 7)
    }

    /// Sessions are shaped by default; each rate, burst and the hard limit is a key, a
    /// rate of 0 turns its shaping off, and the environment overrides the file.
    @Test func sessionShapingHasDefaultsAndKeys() throws {
        let defaults = try ServerConfiguration.load(path: nil, environment: [:]).limits
        #expect(defaults.sessionBytesPerSecond == 1 << 20 && defaults.sessionBurstBytes == 2 << 20)
        #expect(defaults.sessionStanzasPerSecond == 1000 && defaults.sessionBurstStanzas == 2000)
        #expect(defaults.sessionMaxHeldStanzas == 5000)
        let path = try file(
            "limits:\n  session_bytes_per_second: 0\n  session_stanzas_per_second: 20\n  session_burst_stanzas: 40\n  session_max_held_stanzas: 100\n"
        )
        let loaded = try ServerConfiguration.load(path: path, environment: ["CONCLAVE_LIMITS_SESSION_BURST_STANZAS": "60"]).limits
        #expect(loaded.sessionBytesPerSecond == 0 && loaded.sessionStanzasPerSecond == 20)
        #expect(loaded.sessionBurstStanzas == 60 && loaded.sessionMaxHeldStanzas == 100)
        #expect(defaults.yieldAfterBytes == 16384 && defaults.roomWriterBacklogBytes == 8 << 20 && defaults.maxMemoryBytes == 0)
        let off = try ServerConfiguration.load(path: nil, environment: ["CONCLAVE_LIMITS_YIELD_AFTER_BYTES": "0"]).limits
        #expect(off.yieldAfterBytes == 0)
    }

    @Test func aMissingFileIsAnError() {
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.load(path: "/nonexistent/conclave.yaml", environment: [:])
        }
    }
}
