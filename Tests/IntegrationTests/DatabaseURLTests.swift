import Foundation
import MUC
import PostgresNIO
import ServerRuntime
import Testing

/// The database URL's TLS parameters (libpq's names, so one URL serves `psql` and the
/// node), and the rooms' limits in the configuration.
@Suite struct DatabaseURLTests {
    @Test func withoutSSLModeTheConnectionIsPlain() throws {
        let security = try DatabaseURL.security("postgres://conclave:secret@db.example:5432/conclave")
        #expect(security.mode == .disable)
        #expect(!security.usesTLS)
    }

    @Test(arguments: [
        ("disable", false, false), ("allow", true, false), ("prefer", true, false), ("require", true, true),
        ("verify-ca", true, true), ("verify-full", true, true),
    ])
    func sslModes(mode: String, usesTLS: Bool, requiresTLS: Bool) throws {
        let url = "postgres://conclave@db.example/conclave?sslmode=\(mode)"
        let security = try DatabaseURL.security(url)
        #expect(security.mode.rawValue == mode)
        #expect(security.usesTLS == usesTLS)
        #expect(security.requiresTLS == requiresTLS)
        // The pool and the LISTEN connection are both built with it.
        _ = try DatabaseURL.configuration(url)
        let connection = try DatabaseURL.connectionConfiguration(url)
        #expect(connection.tls.isAllowed == usesTLS)
        #expect(connection.tls.isEnforced == requiresTLS)
    }

    @Test func rootAndClientCertificatesAreRead() throws {
        let certificate = TestEnvironment.certificate
        let url =
            "postgres://conclave@db.example/conclave?sslmode=verify-full&sslrootcert=\(certificate)"
            + "&sslcert=\(certificate)&sslkey=\(TestEnvironment.key)"
        let security = try DatabaseURL.security(url)
        #expect(security.mode == .verifyFull)
        #expect(security.rootCertificate == certificate)
        #expect(security.clientCertificate == certificate)
        #expect(security.clientKey == TestEnvironment.key)
        #expect(try DatabaseURL.connectionConfiguration(url).tls.isEnforced)
    }

    @Test func mistakesAreReportedNotIgnored() {
        #expect(throws: ConfigurationError.self) { try DatabaseURL.security("postgres://db/conclave?sslmode=required") }
        #expect(throws: ConfigurationError.self) {
            try DatabaseURL.configuration("postgres://db/conclave?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
        }
        #expect(throws: ConfigurationError.self) {
            try DatabaseURL.configuration(
                "postgres://db/conclave?sslmode=require&sslcert=\(TestEnvironment.certificate)")
        }
    }

    @Test func aUnixSocketNeverUsesTLS() throws {
        let connection = try DatabaseURL.connectionConfiguration(
            "postgres://conclave@/conclave?host=/tmp&sslmode=disable")
        #expect(connection.unixSocketPath == "/tmp/.s.PGSQL.5432")
        #expect(!connection.tls.isAllowed)
    }

    @Test func roomLimitsComeFromTheFileAndTheEnvironment() throws {
        let path = NSTemporaryDirectory() + "conclave-limits-\(UInt32.random(in: 0...UInt32.max)).yaml"
        try """
        muc_limits:
          room_name_bytes: 100
          jid_bytes: 500
          nick_bytes: 50
          reason_bytes: 200
          affiliations: 300
          subject_bytes: 400
          configuration_field_bytes: 600
        """.write(toFile: path, atomically: true, encoding: .utf8)
        let configuration = try ServerConfiguration.load(
            path: path, environment: ["CONCLAVE_MUC_LIMITS_AFFILIATIONS": "42", "CONCLAVE_MUC_LIMITS_NICK_BYTES": "64"]
        )
        var expected = RoomLimits()
        expected.roomNameBytes = 100
        expected.jidBytes = 500
        expected.nickBytes = 64
        expected.reasonBytes = 200
        expected.affiliations = 42
        expected.subjectBytes = 400
        expected.configurationFieldBytes = 600
        #expect(configuration.mucLimits == expected)
        #expect(try ServerConfiguration.load(path: nil, environment: [:]).mucLimits == RoomLimits())
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.load(path: nil, environment: ["CONCLAVE_MUC_LIMITS_JID_BYTES": "0"])
        }
    }
}
