import Foundation
import Logging
import ServerRuntime
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
    ])
    func badValuesAreRefusedWithTheirName(yaml: String, environment: [String: String]) throws {
        let path = try file(yaml)
        #expect(throws: ConfigurationError.self) { try ServerConfiguration.load(path: path, environment: environment) }
    }

    @Test func aMissingFileIsAnError() {
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.load(path: "/nonexistent/conclave.yaml", environment: [:])
        }
    }
}
