import ArgumentParser
import Foundation
import NIOCore
import XMPPDiscovery
import XMPPStream

/// `conclave-bench`: load for any XMPP server's Multi-User Chat, with the numbers an
/// operator compares servers on (docs/benchmarks.md).
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conclave-bench",
        abstract: "Measure an XMPP server's Multi-User Chat: fan-out throughput and time to deliver.",
        subcommands: [Fanout.self, Kick.self, Accounts.self, LoginCost.self]
    )

    static func main() async {
        // One file descriptor per client: take the hard limit on open files.
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        await main(nil)
    }
}

/// Where the clients connect and how they log in (shared by the workloads).
struct ConnectionOptions: ParsableArguments {
    @Option(name: .customLong("server"), help: "HOST:PORT of a server or node (repeatable; clients go round robin). Without it: DNS SRV of --domain.")
    var servers: [String] = []

    @Option(help: "The users' domain.")
    var domain = "localhost"

    @Option(help: "The Multi-User Chat service (default: conference.<domain>).")
    var mucDomain: String?

    @Option(help: "HOST[:PORT] of the DNS server for SRV lookups (without --server).")
    var dnsServer: String?

    @Option(help: "Users are PREFIX1@domain … PREFIXn@domain.")
    var userPrefix = "bench"

    @Option(help: "Their password (create them first: conclave-bench accounts --count N | conclave user add-from-file -).")
    var password = "bench"

    @Option(help: "SASL mechanisms in order of preference (comma-separated).")
    var mechanisms = "SCRAM-SHA-1,SCRAM-SHA-256,PLAIN"

    @Option(help: "TLS: starttls, direct or none.")
    var tls = "starttls"

    @Option(name: .customLong("source"), help: "Local address to connect from (repeatable, e.g. 127.0.0.2, for more than ~28,000 connections).")
    var sources: [String] = []

    @Option(help: "Connections opened at the same time while logging in.")
    var loginConcurrency = 32

    var muc: String { mucDomain ?? "conference.\(domain)" }

    func clientOptions() throws -> XMPPClient.Options {
        var options = XMPPClient.Options()
        switch tls {
        case "starttls": options.tls = .starttls(required: false)
        case "direct": options.tls = .direct
        case "none": options.tls = .none
        default: throw ValidationError("--tls takes starttls, direct or none")
        }
        options.trust = .noVerification
        options.timeout = .seconds(30)
        return options
    }
}

/// `conclave-bench accounts --count N`: the accounts a run uses, as `jid<TAB>password`.
struct Accounts: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the accounts a run uses ('jid<TAB>password' lines), for 'conclave user add-from-file -' or another server's tools."
    )
    @Option(help: "How many.") var count: Int
    @Option(help: "The users' domain.") var domain = "localhost"
    @Option(help: "Users are PREFIX1@domain … PREFIXn@domain.") var userPrefix = "bench"
    @Option(help: "Their password.") var password = "bench"

    func run() throws {
        var text = ""
        for index in 1...max(1, count) { text += "\(userPrefix)\(index)@\(domain)\t\(password)\n" }
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}
