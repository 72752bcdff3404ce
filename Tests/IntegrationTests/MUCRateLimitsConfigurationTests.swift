import Foundation
import MUC
import ServerRuntime
import Testing

/// The `muc_limits` keys for rates, history bytes, rooms per user and the room list's
/// page size: from the file, overridden by CONCLAVE_MUC_LIMITS_*, validated.
@Suite struct MUCRateLimitsConfigurationTests {
    @Test func theDefaultsAreDocumented() throws {
        let limits = try ServerConfiguration.load(path: nil, environment: [:]).mucLimits
        #expect(limits.presenceUpdatesPerSecond == 10)
        #expect(limits.presenceUpdateBurst == 20)
        #expect(limits.historyBytes == 1_048_576)
        #expect(limits.roomsPerUser == 100)
        #expect(limits.discoItemsMax == 500)
    }

    @Test func theFileSetsThemAndTheEnvironmentOverrides() throws {
        let path = NSTemporaryDirectory() + "conclave-rate-limits-\(UInt32.random(in: 0...UInt32.max)).yaml"
        try """
        muc_limits:
          presence_updates_per_second: 3
          presence_update_burst: 6
          history_bytes: 65536
          rooms_per_user: 0
          disco_items_max: 50
        """.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fromFile = try ServerConfiguration.load(path: path, environment: [:]).mucLimits
        #expect(fromFile.presenceUpdatesPerSecond == 3)
        #expect(fromFile.presenceUpdateBurst == 6)
        #expect(fromFile.historyBytes == 65536)
        #expect(fromFile.roomsPerUser == 0, "0: no limit")
        #expect(fromFile.discoItemsMax == 50)

        let overridden = try ServerConfiguration.load(
            path: path,
            environment: [
                "CONCLAVE_MUC_LIMITS_PRESENCE_UPDATES_PER_SECOND": "4",
                "CONCLAVE_MUC_LIMITS_PRESENCE_UPDATE_BURST": "8",
                "CONCLAVE_MUC_LIMITS_HISTORY_BYTES": "1000",
                "CONCLAVE_MUC_LIMITS_ROOMS_PER_USER": "7",
                "CONCLAVE_MUC_LIMITS_DISCO_ITEMS_MAX": "9",
            ]
        ).mucLimits
        #expect(overridden.presenceUpdatesPerSecond == 4)
        #expect(overridden.presenceUpdateBurst == 8)
        #expect(overridden.historyBytes == 1000)
        #expect(overridden.roomsPerUser == 7)
        #expect(overridden.discoItemsMax == 9)
    }

    @Test(arguments: [
        "CONCLAVE_MUC_LIMITS_PRESENCE_UPDATES_PER_SECOND", "CONCLAVE_MUC_LIMITS_PRESENCE_UPDATE_BURST",
        "CONCLAVE_MUC_LIMITS_HISTORY_BYTES", "CONCLAVE_MUC_LIMITS_DISCO_ITEMS_MAX",
    ])
    func zeroIsRefusedWhereItWouldStopEverything(_ key: String) {
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.load(path: nil, environment: [key: "0"])
        }
    }

    @Test func aNegativeRoomsPerUserIsRefused() {
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.load(path: nil, environment: ["CONCLAVE_MUC_LIMITS_ROOMS_PER_USER": "-1"])
        }
    }
}
