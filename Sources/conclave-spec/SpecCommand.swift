import ArgumentParser
import Foundation
import NIOCore
import Scansion
import XMPPDiscovery
import XMPPStream

/// `conclave-spec`: runs scansion scripts against one node, a cluster, or any XMPP server.
@main
struct SpecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conclave-spec",
        abstract: "Run scansion spec scripts (.scs) against an XMPP server or a Conclave cluster.",
        discussion: """
            A client connects to its connect_host/connect_port when the script gives one; else to the \
            --node addresses, assigned round robin in the order of their first 'connects' (so the clients \
            of a script spread over a cluster); else to what the DNS SRV records of its JID's domain (or \
            of --domain) name: _xmpps-client._tcp (Direct TLS) and _xmpp-client._tcp (STARTTLS), lower \
            priority first, a weighted random choice within a priority, Direct TLS first at equal \
            priority, the next record when one fails, and the domain on port 5222 when there are no \
            records. Within a priority, the endpoints no other client of the script uses come first \
            (--no-spread: every connection chooses on its own). Names under localhost are only looked up \
            with --dns-server. The accounts named in the scripts must exist: 'conclave user \
            add-from-scripts FILE…' creates them on a Conclave database.
            """
    )

    @Argument(help: "Script files, or directories whose *.scs files are run.")
    var scripts: [String]

    @Option(name: .customLong("node"), help: "HOST:PORT of a node (repeatable).")
    var nodes: [String] = []

    @Option(help: "Look up the SRV records of this domain instead of each client's JID domain.")
    var domain: String?

    @Option(help: "HOST[:PORT] of the DNS server for SRV lookups (default: the first nameserver of /etc/resolv.conf).")
    var dnsServer: String?

    @Option(help: "Seed for the weighted random choice among SRV records (repeatable runs).")
    var srvSeed: UInt64?

    @Flag(help: "Every connection makes its own weighted SRV choice, even onto a node another client of the script uses.")
    var noSpread = false

    @Option(help: "Verify the servers' certificates against this PEM CA file (default: accept any certificate).")
    var caFile: String?

    @Flag(help: "Fail unless the server offers STARTTLS.")
    var requireTLS = false

    @Flag(help: "Never use TLS (for servers that allow plaintext).")
    var noTLS = false

    @Option(help: "Seconds a 'receives' waits for its stanza.")
    var timeout: Double = 5

    @Option(help: "Seconds 'receives: nothing' watches for unexpected stanzas.")
    var nothingWindow: Double = 0.5

    @Option(help: "Seconds to pause after a 'sends' that another client's action follows (0: off).")
    var settle: Double = 0.1

    @Flag(help: "Fail on the first received stanza that does not match, instead of passing over it.")
    var strictOrder = false

    @Flag(name: .shortAndLong, help: "Print the traffic, with timestamps and client names.")
    var verbose = false

    @Option(help: "Write a JUnit XML report to this file.")
    var junit: String?

    @Option(help: "Run only scripts with one of these tags (comma-separated).")
    var onlyTags: String?

    @Option(help: "Skip scripts with one of these tags (comma-separated).")
    var skipTags: String?

    @Flag(help: "Print each account the scripts use (JID and password, tab-separated) and exit.")
    var printAccounts = false

    func run() async throws {
        let files: [String]
        do {
            files = try ScansionFiles.expand(scripts)
        } catch {
            throw ValidationError("\(error)")
        }
        guard !files.isEmpty else { throw ValidationError("no .scs scripts found in \(scripts.joined(separator: " "))") }
        if printAccounts {
            var seen = Set<String>()
            for file in files {
                for client in try ScansionFiles.load(file).clients where seen.insert(client.account).inserted {
                    print("\(client.account)\t\(client.password)")
                }
            }
            return
        }
        let targets = try nodes.map(NodeAddress.init(parsing:))
        if !targets.isEmpty, domain != nil || dnsServer != nil {
            throw ValidationError("--node connects to fixed addresses; --domain and --dns-server are for SRV lookups without --node")
        }
        var finder: EndpointFinder?
        if targets.isEmpty {
            let server: DNSServerAddress?
            do {
                server = try dnsServer.map(DNSServerAddress.init(parsing:))
            } catch {
                throw ValidationError("--dns-server takes HOST[:PORT], not '\(dnsServer ?? "")'")
            }
            finder = EndpointFinder(domain: domain, server: server, seed: srvSeed, spread: !noSpread)
        }
        var options = ScriptRunner.Options()
        options.timeout = .nanoseconds(Int64(timeout * 1e9))
        options.nothingWindow = .nanoseconds(Int64(nothingWindow * 1e9))
        options.settle = .nanoseconds(Int64(settle * 1e9))
        options.strictOrder = strictOrder
        options.verbose = verbose
        options.tls = noTLS ? .none : .starttls(required: requireTLS)
        options.trust = caFile.map { .caFile($0) } ?? .noVerification
        let only = Set(onlyTags?.split(separator: ",").map { String($0) } ?? [])
        let skip = Set(skipTags?.split(separator: ",").map { String($0) } ?? [])

        var results: [ScriptResult] = []
        for file in files {
            let started = ContinuousClock.now
            let result: ScriptResult
            do {
                let script = try ScansionFiles.load(file)
                for warning in script.warnings {
                    FileHandle.standardError.write(Data("warning: \(file):\(warning.line): \(warning.message)\n".utf8))
                }
                let tags = Set(script.tags.keys)
                if (!only.isEmpty && tags.isDisjoint(with: only)) || !tags.isDisjoint(with: skip) {
                    result = ScriptResult(path: file, title: script.title, outcome: .skipped, duration: .zero)
                } else {
                    let runner = ScriptRunner(script: script, nodes: targets, options: options, finder: finder)
                    let outcome = await runner.run()
                    result = ScriptResult(path: file, title: script.title, outcome: outcome, duration: .now - started)
                }
            } catch let error as ScansionParseError {
                result = ScriptResult(
                    path: file, title: file, outcome: .failed(step: 0, line: error.line, reason: error.message),
                    duration: .zero
                )
            } catch {
                result = ScriptResult(
                    path: file, title: file, outcome: .failed(step: 0, line: 0, reason: "\(error)"), duration: .zero
                )
            }
            print(result.line)
            results.append(result)
        }
        let passed = results.filter { $0.outcome == .passed }.count
        let failed = results.filter { if case .failed = $0.outcome { true } else { false } }.count
        let skipped = results.filter { $0.outcome == .skipped }.count
        if let finder {
            let lines = await finder.summary()
            if !lines.isEmpty {
                print("connections by endpoint (DNS server \(await finder.serverDescription)):")
                for line in lines { print(line) }
            }
            for problem in await finder.problems { print("  DNS: \(problem)") }
        }
        print("\(passed) passed, \(failed) failed" + (skipped > 0 ? ", \(skipped) skipped" : ""))
        if let junit {
            try JUnitReport(results: results).xml.write(toFile: junit, atomically: true, encoding: .utf8)
        }
        if failed > 0 { throw ExitCode(1) }
    }
}

/// `HOST:PORT` (or `[v6]:PORT`).
struct NodeAddress: Sendable, Hashable, CustomStringConvertible {
    var host: String
    var port: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    init(parsing text: String) throws {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else {
            throw ValidationError("--node takes HOST:PORT, not '\(text)'")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.init(host: host, port: port)
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
