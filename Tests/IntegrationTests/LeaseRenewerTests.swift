import Cluster
import Foundation
import NIOPosix
import PostgresNIO
@testable import ServerRuntime
import Synchronization
import Testing

/// The lease is renewed on a connection of its own; a beat that PostgreSQL does not
/// answer (here: its row is locked by another transaction) fails within the renewer's
/// timeout instead of holding every later beat back until the lease runs out, and the
/// next beat, on a new connection, renews as usual.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(1)))
struct LeaseRenewerTests {
    @Test func aBeatWithoutAnAnswerFailsWithinTheTimeoutAndTheNextOneRenews() async throws {
        let configuration = try DatabaseURL.connectionConfiguration(try #require(TestEnvironment.databaseURL))
        let holder = try await PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration, id: 1, logger: TestEnvironment.logger)
        let table = "renewer_" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        _ = try await holder.query(PostgresQuery(unsafeSQL: "CREATE TABLE \(table) (id int PRIMARY KEY, beats int NOT NULL)"), logger: TestEnvironment.logger).collect()
        _ = try await holder.query(PostgresQuery(unsafeSQL: "INSERT INTO \(table) VALUES (1, 0)"), logger: TestEnvironment.logger).collect()
        // Another transaction holds the row: the renewer's statement waits on it.
        _ = try await holder.query("BEGIN", logger: TestEnvironment.logger).collect()
        _ = try await holder.query(PostgresQuery(unsafeSQL: "SELECT 1 FROM \(table) WHERE id = 1 FOR UPDATE"), logger: TestEnvironment.logger).collect()

        let results = Mutex<[Bool?]>([])  // true/false: a row or none; nil: failed
        let renewer = LeaseRenewer(configuration: configuration, logger: TestEnvironment.logger)
        renewer.start(every: .milliseconds(50), timeout: .milliseconds(300)) {
            PostgresQuery(unsafeSQL: "UPDATE \(table) SET beats = beats + 1 WHERE id = 1 RETURNING 1")
        } done: { result, _ in
            results.withLock { $0.append(try? result.get()) }
        }
        try await until("a beat failed") { results.withLock { $0.contains { $0 == nil } } }
        #expect(!results.withLock { $0.contains { $0 == true } }, "nothing renewed while the row is held")

        // The lock goes: the next beat renews.
        _ = try await holder.query("COMMIT", logger: TestEnvironment.logger).collect()
        try await until("a beat renewed") { results.withLock { $0.contains { $0 == true } } }
        await renewer.stop()
        _ = try await holder.query(PostgresQuery(unsafeSQL: "DROP TABLE \(table)"), logger: TestEnvironment.logger).collect()
        try await holder.close()
    }

    func until(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting until \(what)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
