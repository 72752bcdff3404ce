import ArgumentParser
import Differential
import Foundation

/// `conclave-diff`: runs generated scenarios against a reference server (Prosody) and
/// a target (Conclave, one node or several), compares what every client received, and
/// writes each difference as a minimal `.scs` script.
@main
struct DiffCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conclave-diff",
        abstract: "Compare an XMPP MUC server's stanzas with a reference server's, scenario by scenario.",
        discussion: """
            Each scenario is generated from a seed (--seed, then seed+1, …): clients log in to the \
            accounts --account-prefix-a@DOMAIN, -b, … (password --password; they must exist on both \
            servers), join one room, and act at random: joins (passwords, history requests, nicks that \
            collide or fail validation), leaves, nick changes, messages, private messages, subjects, \
            configuration forms with valid and invalid values, affiliation and role changes by anyone, \
            admin lists, invitations, registrations, disco, presence probes, destruction. What each \
            client received after each step is normalised (addresses, generated ids, timestamps, \
            attribute order and the tolerated differences of docs/muc.md) and compared. A scenario that \
            differs is shrunk to the fewest actions that still show the same kind of difference and \
            written to --out as a scansion script expecting the reference's stanzas. Exit status 1 when \
            any scenario differed.
            """
    )

    @Option(help: "HOST:PORT of the reference server.")
    var reference: String

    @Option(name: .customLong("target"), help: "HOST:PORT of the server under test (repeat for the nodes of a cluster).")
    var targets: [String]

    @Option(help: "How many scenarios.")
    var scenarios: Int = 100

    @Option(help: "The first scenario's seed (default: random).")
    var seed: UInt64?

    @Option(help: "The clients' user domain.")
    var domain = "localhost"

    @Option(help: "The MUC service's domain.")
    var mucDomain = "conference.localhost"

    @Option(help: "Accounts are PREFIX-a@DOMAIN, PREFIX-b@DOMAIN, … (six of them).")
    var accountPrefix = "diff"

    @Option(help: "The accounts' password.")
    var password = "password"

    @Option(help: "Directory for the scripts of the differences found.")
    var out = ".conclave/diff"

    @Option(help: "Seconds a client waits for an answer.")
    var timeout: Double = 5

    @Flag(help: "Report differences without shrinking them.")
    var noShrink = false

    @Flag(help: "Print every scenario's actions.")
    var verbose = false

    func parse(_ address: String) throws -> (host: String, port: Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw ValidationError("'\(address)' is not HOST:PORT")
        }
        return (String(address[..<colon]), port)
    }

    func run() async throws {
        let reference = Server(name: "reference", addresses: [try parse(self.reference)])
        let target = Server(name: "target", addresses: try targets.map(parse))
        guard !target.addresses.isEmpty else { throw ValidationError("--target is required") }
        let accounts = ["a", "b", "c", "d", "e", "f"].map { "\(accountPrefix)-\($0)@\(domain)" }
        let generator = ScenarioGenerator(mucDomain: mucDomain, accounts: accounts)
        let first = seed ?? UInt64.random(in: 1...UInt64(UInt32.max))
        // Room names are new on every run: the target's database may keep earlier runs' rooms.
        let run = String(UInt64(Date().timeIntervalSince1970 * 1000) % 1_000_000_000, radix: 36)
        let timeout = Duration.milliseconds(Int64(self.timeout * 1000))
        let referenceRunner = ScenarioRunner(server: reference, password: password, timeout: timeout)
        let targetRunner = ScenarioRunner(server: target, password: password, timeout: timeout)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)

        print("conclave-diff: \(scenarios) scenario(s) from seed \(first); reference \(self.reference), target \(targets.joined(separator: ","))")
        var seen: [String: (count: Int, script: String)] = [:]
        var attempt = 0
        func room(_ seed: UInt64) -> String {
            attempt += 1
            return "diff-\(run)-\(seed)-\(attempt)@\(mucDomain)"
        }
        func compare(_ scenario: Scenario) async -> (Transcript, Difference?) {
            async let referenceTranscript = referenceRunner.run(scenario)
            async let targetTranscript = targetRunner.run(scenario)
            let (expected, got) = await (referenceTranscript, targetTranscript)
            return (expected, Comparison.firstDifference(reference: expected, target: got, clients: scenario.clients.map(\.name)))
        }
        var differing = 0
        var known: [String: Int] = [:]
        let started = ContinuousClock.now
        for index in 0..<scenarios {
            let scenarioSeed = first &+ UInt64(index)
            let scenario = generator.scenario(seed: scenarioSeed, room: room(scenarioSeed))
            if verbose { print("scenario \(scenarioSeed):\n" + scenario.actions.enumerated().map { "  \($0.offset + 1). \($0.element)" }.joined(separator: "\n")) }
            let (expected, difference) = await compare(scenario)
            if let failure = expected.failure, difference == nil {
                print("seed \(scenarioSeed): both servers stopped: \(failure)")
            }
            guard let difference else { continue }
            if difference.failure == nil, difference.step < scenario.actions.count, let tag = scenario.actions[difference.step].known {
                known[tag, default: 0] += 1
                if verbose { print("seed \(scenarioSeed): differs where Conclave deliberately does (\(tag))") }
                continue
            }
            differing += 1
            let signature = difference.signature
            if let known = seen[signature] {
                seen[signature] = (known.count + 1, known.script)
                print("seed \(scenarioSeed): differs as \(known.script) does")
                continue
            }
            // Shrink: the fewest actions that still differ the same way.
            var best = scenario
            var bestReference = expected
            var bestDifference = difference
            if !noShrink {
                var kept = Array(0...min(difference.step, scenario.actions.count - 1))
                best = scenario.keeping(kept)
                var changed = true
                while changed {
                    changed = false
                    for candidate in kept.reversed() {
                        // A client's connection stays while it is needed: its actions go first.
                        if case .connects = scenario.actions[candidate].kind,
                            kept.contains(where: { $0 > candidate && scenario.actions[$0].client == scenario.actions[candidate].client })
                        {
                            continue
                        }
                        let trial = kept.filter { $0 != candidate }
                        guard !trial.isEmpty else { continue }
                        var smaller = scenario.keeping(trial)
                        smaller.room = room(scenarioSeed)
                        smaller.actions = smaller.actions.map { action in
                            var copy = action
                            if case .sends(let xml) = action.kind {
                                copy.kind = .sends(xml.replacingOccurrences(of: scenario.room, with: smaller.room))
                            }
                            return copy
                        }
                        let (trialReference, trialDifference) = await compare(smaller)
                        if let trialDifference, trialDifference.signature == signature {
                            kept = trial
                            best = smaller
                            bestReference = trialReference
                            bestDifference = trialDifference
                            changed = true
                        }
                    }
                }
            }
            let name = "diff-\(scenarioSeed).scs"
            let path = (out as NSString).appendingPathComponent(name)
            let script = ScriptWriter.script(
                best, reference: bestReference, difference: bestDifference, password: password,
                title: "conclave-diff seed \(scenarioSeed): \(signature)",
                notes: ["Found by: conclave-diff --seed \(scenarioSeed) --scenarios 1 (\(best.actions.count) of \(scenario.actions.count) actions kept)"]
                    + bestDifference.description.split(separator: "\n").map(String.init))
            try script.write(toFile: path, atomically: true, encoding: .utf8)
            seen[signature] = (1, name)
            print("seed \(scenarioSeed): DIFFERS (\(best.actions.count) actions) → \(path)\n  \(signature)\n" + bestDifference.description.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        }
        let elapsed = ContinuousClock.now - started
        let knownCount = known.values.reduce(0, +)
        print(
            "\(scenarios) scenario(s), \(scenarios - differing - knownCount) alike, \(knownCount) differing where Conclave deliberately does"
                + (known.isEmpty ? "" : " (" + known.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + ")")
                + ", \(differing) differing otherwise in \(seen.count) way(s); \(elapsed.components.seconds) s")
        for (signature, entry) in seen.sorted(by: { $0.value.count > $1.value.count }) {
            print("  \(entry.count)× \(entry.script): \(signature)")
        }
        if differing > 0 { throw ExitCode(1) }
    }
}
