import Foundation
import NIOCore
import Scansion
import XMPPDiscovery
import XMPPCore
import XMPPStream

/// Runs one script: its clients connect, send and receive in script order.
final class ScriptRunner {
    struct Options {
        var timeout: TimeAmount = .seconds(5)
        var nothingWindow: TimeAmount = .milliseconds(500)
        var settle: TimeAmount = .milliseconds(100)
        var strictOrder = false
        var verbose = false
        var tls: XMPPClient.TLSMode = .starttls(required: false)
        var trust: XMPPClient.Trust = .noVerification
    }

    /// A step that failed, with the reason to print.
    struct StepFailure: Error {
        var reason: String
    }

    private struct Connection {
        var client: XMPPClient
        var fullJID: JID
        var closed = false
    }

    let script: ScansionScript
    let nodes: [NodeAddress]
    let options: Options
    let finder: EndpointFinder?
    private var connections: [String: Connection] = [:]
    private var nextNode = 0
    /// SRV targets (host names) this script's clients connected to.
    private var usedEndpoints: Set<String> = []
    private var matcher = StanzaMatcher()
    private let started = ContinuousClock.now

    init(script: ScansionScript, nodes: [NodeAddress], options: Options, finder: EndpointFinder? = nil) {
        self.script = script
        self.nodes = nodes
        self.options = options
        self.finder = finder
    }

    func run() async -> ScriptResult.Outcome {
        for (index, action) in script.actions.enumerated() {
            do {
                try await perform(action)
                if case .sends = action.kind, options.settle > .zero,
                    index + 1 < script.actions.count, script.actions[index + 1].client != action.client
                {
                    // Another client acts next without waiting for an answer: give the
                    // server time to see the two in script order (SCANSION.md).
                    try? await Task.sleep(nanoseconds: UInt64(options.settle.nanoseconds))
                }
            } catch let failure as StepFailure {
                await closeAll()
                return .failed(step: index + 1, line: action.line, reason: "\(action.client) \(action.verb): \(failure.reason)")
            } catch {
                await closeAll()
                return .failed(step: index + 1, line: action.line, reason: "\(action.client) \(action.verb): \(error)")
            }
        }
        await closeAll()
        return .passed
    }

    private func closeAll() async {
        for (name, connection) in connections where !connection.closed {
            await connection.client.close(timeout: .seconds(2))
            connections[name]?.closed = true
        }
    }

    // MARK: - Actions

    private func perform(_ action: Action) async throws {
        switch action.kind {
        case .connects:
            try await connect(action.client)
        case .sends(let text):
            let connection = try connected(action.client)
            for element in try elements(text, action: action).map(StanzaTemplate.plain) {
                log(action.client, "→", element.serialized(parentNamespace: Namespace.client))
                connection.client.send(element)
            }
        case .receives(let text):
            let connection = try connected(action.client)
            for expected in try elements(text, action: action) {
                try await receive(expected, on: connection.client, name: action.client)
            }
        case .receivesNothing:
            let connection = try connected(action.client)
            try await receiveNothing(on: connection.client, name: action.client)
        case .disconnects:
            let connection = try connected(action.client)
            log(action.client, "→", "</stream:stream>")
            await connection.client.close(timeout: options.timeout)
            connections[action.client]?.closed = true
        }
    }

    private func connect(_ name: String) async throws {
        guard let definition = script.client(named: name) else { throw StepFailure(reason: "no client \(name)") }
        if let existing = connections[name], !existing.closed {
            throw StepFailure(reason: "\(name) is already connected")
        }
        let jid: JID
        do {
            jid = try JID(definition.jid)
        } catch {
            throw StepFailure(reason: "the client's jid is invalid: \(error)")
        }
        guard let username = jid.localpart else { throw StepFailure(reason: "the client's jid has no localpart") }
        var clientOptions = XMPPClient.Options()
        clientOptions.tls = options.tls
        clientOptions.trust = options.trust
        clientOptions.timeout = options.timeout
        var client: XMPPClient?
        var target = ""
        if let fixed = self.target(for: definition, jid: jid) {
            target = fixed.description
            log(name, "…", "connecting to \(target) as \(jid)")
            do {
                client = try await XMPPClient.connect(
                    host: fixed.host, port: fixed.port, domain: jid.domainpart, options: clientOptions
                )
            } catch {
                throw StepFailure(reason: "cannot connect to \(target): \(error)")
            }
        } else if let finder {
            // DNS SRV (RFC 6120 §3.2.1): each endpoint in order until one accepts.
            do {
                let (connected, candidate) = try await finder.connect(to: jid.domainpart, order: spread) { candidate -> XMPPClient? in
                    let endpoint = candidate.endpoint
                    if endpoint.directTLS {
                        guard options.tls != .none else { return nil }
                        clientOptions.tls = .direct
                    } else {
                        clientOptions.tls = options.tls
                    }
                    log(name, "…", "connecting to \(candidate) as \(jid)")
                    do {
                        return try await XMPPClient.connect(
                            host: candidate.address, port: endpoint.port, domain: jid.domainpart, options: clientOptions
                        )
                    } catch {
                        log(name, "…", "\(candidate) failed (\(error)); trying the next record")
                        throw error
                    }
                }
                client = connected
                target = "\(candidate)"
                usedEndpoints.insert(candidate.endpoint.host)
            } catch {
                throw StepFailure(reason: "\(error)")
            }
        }
        guard let client else { throw StepFailure(reason: "no address to connect to") }
        do {
            try await client.authenticate(username: username, password: definition.password)
            let full = try await client.bind(resource: definition.resource ?? jid.resourcepart)
            connections[name] = Connection(client: client, fullJID: full)
            log(name, "…", "bound \(full)")
        } catch {
            await client.disconnect()
            throw StepFailure(reason: "cannot log in as \(jid) at \(target): \(error)")
        }
    }

    /// The client's own connect_host/port; else round robin over `--node`, in the
    /// order clients first connect; else nil: DNS SRV (or, without a finder, the
    /// domain on 5222).
    private func target(for definition: ClientDefinition, jid: JID) -> NodeAddress? {
        if definition.connectHost != nil || definition.connectPort != nil {
            return NodeAddress(host: definition.connectHost ?? jid.domainpart, port: definition.connectPort ?? 5222)
        }
        if !nodes.isEmpty {
            defer { nextNode += 1 }
            return nodes[nextNode % nodes.count]
        }
        return finder == nil ? NodeAddress(host: jid.domainpart, port: 5222) : nil
    }

    /// The SRV order, except that within a priority the targets (hosts) no client of
    /// this script uses yet come first: a script's clients land on different nodes as
    /// long as there are unused ones (the weights still decide which, and the order
    /// among the used ones).
    private func spread(_ candidates: [EndpointFinder.Candidate]) -> [EndpointFinder.Candidate] {
        guard finder?.spread == true else { return candidates }
        var result: [EndpointFinder.Candidate] = []
        var index = 0
        while index < candidates.count {
            let priority = candidates[index].endpoint.priority
            var band: [EndpointFinder.Candidate] = []
            while index < candidates.count, candidates[index].endpoint.priority == priority {
                band.append(candidates[index])
                index += 1
            }
            let used = { (candidate: EndpointFinder.Candidate) in
                self.usedEndpoints.contains(candidate.endpoint.host)
            }
            result += band.filter { !used($0) } + band.filter(used)
        }
        return result
    }

    private func connected(_ name: String) throws -> Connection {
        guard let connection = connections[name] else { throw StepFailure(reason: "\(name) has not connected") }
        guard !connection.closed else { throw StepFailure(reason: "\(name) has disconnected") }
        return connection
    }

    private func elements(_ text: String, action: Action) throws -> [XMLElement] {
        do {
            let substituted = try StanzaTemplate.substitute(text) { name, full in
                if full { return connections[name]?.fullJID.description }
                guard let definition = script.client(named: name) else { return nil }
                return (try? JID(definition.jid))?.bare.description
            }
            return try StanzaTemplate.elements(substituted)
        } catch {
            throw StepFailure(reason: "in the block at line \(action.blockLine): \(error)")
        }
    }

    // MARK: - Receiving

    private func receive(_ expected: XMLElement, on client: XMPPClient, name: String) async throws {
        let deadline = NIODeadline.now() + options.timeout
        var passedOver: [(XMLElement, StanzaMatcher.Mismatch)] = []
        while true {
            let remaining = deadline - .now()
            let event = remaining > .zero ? await client.next(timeout: remaining) : nil
            switch event {
            case nil:
                throw StepFailure(reason: report("nothing matching arrived within \(seconds(options.timeout))", expected, passedOver))
            case .element(let element):
                log(name, "←", element.serialized(parentNamespace: Namespace.client))
                if let mismatch = matcher.match(expected: expected, received: element) {
                    passedOver.append((element, mismatch))
                    if options.strictOrder {
                        throw StepFailure(reason: report("the next stanza did not match (--strict-order)", expected, passedOver))
                    }
                } else {
                    return
                }
            case .streamClosed, .disconnected:
                log(name, "←", "(stream closed)")
                throw StepFailure(reason: report("the server closed the stream", expected, passedOver))
            case .parseError(let message):
                throw StepFailure(reason: report("the server sent unparsable XML: \(message)", expected, passedOver))
            case .streamOpened:
                continue
            }
        }
    }

    private func receiveNothing(on client: XMPPClient, name: String) async throws {
        for event in client.drain() {
            if case .element(let element) = event { log(name, "←", element.serialized(parentNamespace: Namespace.client) + " (dropped)") }
        }
        let deadline = NIODeadline.now() + options.nothingWindow
        while true {
            let remaining = deadline - .now()
            guard remaining > .zero, let event = await client.next(timeout: remaining) else { return }
            if case .element(let element) = event {
                log(name, "←", element.serialized(parentNamespace: Namespace.client))
                throw StepFailure(
                    reason: "expected nothing, received:\n    \(element.serialized(parentNamespace: Namespace.client))"
                )
            }
        }
    }

    private func report(
        _ headline: String,
        _ expected: XMLElement,
        _ passedOver: [(XMLElement, StanzaMatcher.Mismatch)]
    ) -> String {
        var text = headline + "\n    expected: " + StanzaTemplate.plain(expected).serialized(parentNamespace: Namespace.client)
        if passedOver.isEmpty {
            text += "\n    received: nothing"
        }
        for (element, mismatch) in passedOver {
            text += "\n    received: " + element.serialized(parentNamespace: Namespace.client)
            text += "\n      (no match \(mismatch))"
        }
        return text
    }

    private func seconds(_ amount: TimeAmount) -> String {
        String(format: "%.1fs", Double(amount.nanoseconds) / 1e9)
    }

    private func log(_ client: String, _ direction: String, _ text: String) {
        guard options.verbose else { return }
        let elapsed = ContinuousClock.now - started
        let (whole, fraction) = elapsed.components
        let stamp = String(format: "%7.3f", Double(whole) + Double(fraction) / 1e18)
        print("  [\(stamp)] \(client) \(direction) \(text)")
    }
}
