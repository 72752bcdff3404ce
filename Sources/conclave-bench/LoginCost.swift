import ArgumentParser
import Foundation

/// `conclave-bench logins`: the server's CPU time per login, read from /proc (so from
/// outside the server): `--count` users log in and bind (with `--mechanisms PLAIN` the
/// server derives the password's SCRAM keys, PBKDF2), then log out; the CPU the server
/// processes spent meanwhile is divided by the logins.
struct LoginCost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logins",
        abstract: "The server's CPU time per login, measured from /proc."
    )

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Logins measured.") var count = 200
    @Option(name: .customLong("server-pid"), help: "A server process to read CPU time of (repeatable).") var serverPIDs: [Int32] = []

    func run() async throws {
        guard !serverPIDs.isEmpty else { throw ValidationError("name the server's process with --server-pid") }
        let logins = Logins(connection: connection, options: try connection.clientOptions())
        // One login first, so that the server's pools and caches are warm.
        await Logins.closeAll(try await logins.all(count: 1, counters: LiveCounters()))
        guard let before = ProcessSample.total(serverPIDs) else { throw ValidationError("cannot read /proc of the server") }
        let started = ContinuousClock.now
        let clients = try await logins.all(count: count, counters: LiveCounters())
        let elapsed = ContinuousClock.now - started
        guard let after = ProcessSample.total(serverPIDs) else { throw ValidationError("cannot read /proc of the server") }
        await Logins.closeAll(clients)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let cpu = after.cpuSeconds - before.cpuSeconds
        print(
            String(
                format: "%d logins (%@, tls %@) in %.2f s: %.0f/s; server CPU %.2f s, %.2f ms per login",
                count, connection.mechanisms, connection.tls, seconds, Double(count) / seconds, cpu, cpu * 1000 / Double(count)))
    }
}
