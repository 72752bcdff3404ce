import Storage
import XMPPCore

/// The key for unknown accounts' salts when the configuration gives none: random, so
/// stable for the process's life only.
private let processSaltKey: [UInt8] = {
    var generator = SystemRandomNumberGenerator()
    return (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
}()

/// The client stream's protocol (RFC 6120 §4–§7, §8.1.2): the stream header, STARTTLS,
/// SASL (PLAIN and SCRAM, with the throttle's attempts), resource binding, and the
/// checks on a bound session's stanzas, as a state machine with no I/O.
///
/// It is told what happened (`Input`: what the client sent, and the outcome of each
/// step it asked for) and answers with what to do (`Action`), in order. It never
/// waits: a step that takes time (an account lookup, a password check, the
/// throttle's delay, registering a bound session) is an action whose outcome comes
/// back later as an input. `C2SConnection` carries the actions out on its channel;
/// the protocol's decisions are all here, and testable without a channel.
struct C2SStreamMachine {
    enum Input {
        case streamOpened(header: XMLElement, defaultNamespace: String?)
        case element(XMLElement)
        /// The client's `</stream:stream>`.
        case streamClosed
        /// The throttle let the authentication attempt asked for by `beginAttempt` go
        /// on (after the delay it asked for).
        case attemptStarted
        /// The throttle refused the attempt: too many in progress.
        case attemptRefused
        /// The outcome of `lookUpCredentials`.
        case credentials(StoredCredentials?)
        /// The outcome of `checkPassword`.
        case passwordChecked(Bool)
        /// `lookUpCredentials` or `checkPassword` failed (the store did not answer).
        case lookupFailed
        /// End the stream with this error (a deadline, a limit, a shutdown, a conflict).
        case failed(StreamError)
        /// The connection is gone.
        case connectionLost
    }

    enum Action: Equatable {
        /// Text written and flushed at once: stream headers and the end of the stream.
        case write(String)
        /// An element for the client.
        case send(XMLElement)
        /// The stream ends with this error (the `write`s that end it follow).
        case streamError(StreamError)
        /// Put TLS first in the pipeline (the client's handshake comes next).
        case startTLS
        /// Forget the parser's state: the client starts a new stream (RFC 6120 §4.3.3).
        case restartStream
        /// Count an authentication attempt with the throttle; answer `attemptStarted`
        /// (after its delay) or `attemptRefused`.
        case beginAttempt(account: JID?)
        case authenticationFailed(account: JID?, SASLFailure)
        case authenticationSucceeded(account: JID?)
        /// Answer `credentials` or `lookupFailed`.
        case lookUpCredentials(JID)
        /// Check a PLAIN password against the stored keys; answer `passwordChecked` or
        /// `lookupFailed`.
        case checkPassword(JID, password: String)
        /// Register the session bound to this JID, then send `reply`.
        case bind(JID, reply: XMLElement)
        /// A bound session's stanza, its `from` stamped.
        case route(XMLElement)
        /// End the bound session (if one is bound), then do `then`.
        case endSession(then: AfterSession?)
        case close
    }

    enum AfterSession: Equatable {
        /// Close the connection.
        case close
        /// Answer the client's `</stream:stream>`, then close.
        case closeStream
    }

    private enum Phase {
        /// Waiting for a stream header (first, or after a restart).
        case awaitingHeader
        case negotiating
        case bound(JID)
        /// The client closed its stream; its session is ending.
        case ending
        case closed
    }

    /// An authentication waiting for the outcome of a step.
    private enum PendingAuthentication {
        case none
        case scramAttempt(SCRAMServerExchange, account: JID?)
        case scramCredentials(SCRAMServerExchange, account: JID)
        case plainAttempt(PlainCredentials, account: JID?)
        case plainCheck(account: JID)

        var awaitsAttempt: Bool {
            switch self {
            case .scramAttempt, .plainAttempt: true
            case .none, .scramCredentials, .plainCheck: false
            }
        }

        var awaitsLookup: Bool {
            switch self {
            case .scramCredentials, .plainCheck: true
            case .none, .scramAttempt, .plainAttempt: false
            }
        }
    }

    private let domain: JID
    private let options: C2SConfiguration.Options
    private let tlsAvailable: Bool
    /// `tls-server-end-point` data for SCRAM-PLUS, when TLS is available.
    private let channelBindingData: [UInt8]?
    private let plaintextAllowed: Bool

    private var phase = Phase.awaitingHeader
    private(set) var tlsActive: Bool
    private var headerSent = false
    private var ending = false
    private(set) var authenticated: JID?
    private(set) var streamID = ""
    /// The stream's default language (its header's `xml:lang`), given to the client's
    /// stanzas that name none (RFC 6120 §8.1.5).
    private var streamLanguage: String?
    private var pending = PendingAuthentication.none
    /// The SCRAM exchange waiting for the client's final message.
    private var scram: SCRAMServerExchange?
    private var authFailures = 0
    private var plusOffered = false

    init(
        domain: JID, options: C2SConfiguration.Options, tlsAvailable: Bool, channelBindingData: [UInt8]?,
        directTLS: Bool, plaintextAllowed: Bool
    ) {
        self.domain = domain
        self.options = options
        self.tlsAvailable = tlsAvailable
        self.channelBindingData = channelBindingData
        self.tlsActive = directTLS
        self.plaintextAllowed = plaintextAllowed
    }

    var isClosed: Bool {
        if case .closed = phase { return true }
        return false
    }

    /// The bound session's JID.
    var boundJID: JID? {
        if case .bound(let jid) = phase { return jid }
        return nil
    }

    /// The connection is closing for a reason of its own (TLS could not start).
    mutating func markClosed() {
        phase = .closed
    }

    mutating func handle(_ input: Input) -> [Action] {
        switch input {
        case .failed(let error):
            return fail(error)
        case .connectionLost:
            let bound = boundJID != nil
            phase = .closed
            return bound ? [.endSession(then: nil)] : []
        default:
            break
        }
        switch phase {
        case .closed, .ending:
            return []
        case .awaitingHeader, .negotiating, .bound:
            break
        }
        switch input {
        case .streamOpened(let header, let defaultNamespace):
            return openStream(header: header, defaultNamespace: defaultNamespace)
        case .element(let element):
            switch phase {
            case .awaitingHeader, .closed, .ending: return fail(StreamError(.notWellFormed))
            case .negotiating: return negotiate(element)
            case .bound(let jid): return stanza(element, from: jid)
            }
        case .streamClosed:
            phase = .ending
            return [.endSession(then: .closeStream)]
        case .attemptStarted:
            return attemptStarted()
        case .attemptRefused:
            guard pending.awaitsAttempt else { return [] }
            pending = .none
            return [.send(SASLFailure(.temporaryAuthFailure, text: "too many attempts in progress").element)]
        case .credentials(let credentials):
            return credentialsFound(credentials)
        case .passwordChecked(let verified):
            return passwordChecked(verified)
        case .lookupFailed:
            guard pending.awaitsLookup else { return [] }
            pending = .none
            return [.send(SASLFailure(.temporaryAuthFailure).element)]
        case .failed, .connectionLost:
            return []
        }
    }

    // MARK: - Stream header

    private mutating func openStream(header: XMLElement, defaultNamespace: String?) -> [Action] {
        streamID = randomNonce().filter { $0.isLetter || $0.isNumber }
        // A language tag (BCP 47: letters, digits and hyphens, short); anything else is ignored.
        streamLanguage = header[attribute: "xml:lang"].flatMap { lang in
            lang.count <= 35 && !lang.isEmpty
                && lang.utf8.allSatisfy {
                    $0 == UInt8(ascii: "-") || ($0 < 0x80 && Character(UnicodeScalar($0)).isLetter) || ($0 >= 0x30 && $0 <= 0x39)
                }
                ? lang : nil
        }
        let to = header[attribute: "to"].flatMap { try? JID($0) }
        var reply = "<?xml version='1.0'?><stream:stream xmlns='\(Namespace.client)' "
        reply += "xmlns:stream='\(Namespace.stream)' id='\(streamID)' "
        reply += "from='\(XMLEscaping.escapeAttribute(domain.description))' version='1.0' xml:lang='en'"
        if let from = header[attribute: "from"].flatMap({ try? JID($0) }) {
            reply += " to='\(XMLEscaping.escapeAttribute(from.description))'"
        }
        reply += ">"
        headerSent = true
        let actions = [Action.write(reply)]
        guard header.name == "stream", header.namespace == Namespace.stream else {
            return actions + fail(StreamError(.invalidNamespace, text: "expected a stream in \(Namespace.stream)"))
        }
        guard defaultNamespace == Namespace.client else {
            return actions + fail(StreamError(.invalidNamespace, text: "the stream's namespace must be jabber:client"))
        }
        guard let version = header[attribute: "version"], version.hasPrefix("1.") else {
            return actions + fail(StreamError(.unsupportedVersion, text: "XMPP 1.0 streams only"))
        }
        guard to == domain else {
            return actions + fail(StreamError(.hostUnknown, text: "this server serves \(domain)"))
        }
        phase = .negotiating
        return actions + [.send(features())]
    }

    private mutating func features() -> XMLElement {
        var features = XMLElement("features", namespace: Namespace.stream)
        if authenticated != nil {
            features.append(XMLElement("bind", namespace: Namespace.bind))
            features.append(
                XMLElement("session", namespace: Namespace.session, children: [XMLElement("optional", namespace: Namespace.session)])
            )
            return features
        }
        if !tlsActive, tlsAvailable {
            var starttls = XMLElement("starttls", namespace: Namespace.tls)
            if !plaintextAllowed { starttls.append(XMLElement("required", namespace: Namespace.tls)) }
            features.append(starttls)
        }
        if tlsActive || plaintextAllowed {
            var mechanisms = XMLElement("mechanisms", namespace: Namespace.sasl)
            for mechanism in offeredMechanisms() {
                mechanisms.append(XMLElement("mechanism", namespace: Namespace.sasl, text: mechanism.rawValue))
            }
            features.append(mechanisms)
            if plusOffered {
                let binding = XMLElement(
                    "channel-binding", namespace: Namespace.saslChannelBinding, ["type": "tls-server-end-point"]
                )
                features.append(XMLElement("sasl-channel-binding", namespace: Namespace.saslChannelBinding, children: [binding]))
            }
        }
        return features
    }

    private mutating func offeredMechanisms() -> [SASLMechanism] {
        let plus = tlsActive && tlsAvailable && options.offerChannelBinding
        plusOffered = plus
        return SASLMechanism.allCases.filter { !$0.usesChannelBinding || plus }
    }

    // MARK: - Negotiation

    private mutating func negotiate(_ element: XMLElement) -> [Action] {
        if authenticated != nil, element.namespace == Namespace.sasl {
            return [.send(SASLFailure(.malformedRequest, text: "already authenticated").element)]
        }
        switch (element.namespace, element.name) {
        case (Namespace.tls, "starttls"):
            return startTLS()
        case (Namespace.sasl, "auth"):
            return startAuthentication(element)
        case (Namespace.sasl, "response"):
            return continueAuthentication(element)
        case (Namespace.sasl, "abort"):
            scram = nil
            return [.send(SASLFailure(.aborted).element)]
        case (Namespace.client, "iq") where authenticated != nil:
            return negotiationIQ(element)
        default:
            if authenticated == nil {
                return fail(StreamError(.notAuthorized, text: "authenticate first"))
            }
            return fail(StreamError(.notAuthorized, text: "bind a resource first"))
        }
    }

    private mutating func startTLS() -> [Action] {
        guard tlsAvailable, !tlsActive, authenticated == nil else {
            phase = .closed
            return [.send(XMLElement("failure", namespace: Namespace.tls)), .write("</stream:stream>"), .close]
        }
        tlsActive = true
        // The client's TLS handshake follows `<proceed/>` at once; whatever plaintext
        // followed it is discarded with the parser's state.
        return [.send(XMLElement("proceed", namespace: Namespace.tls)), .startTLS] + restartStream()
    }

    private mutating func restartStream() -> [Action] {
        phase = .awaitingHeader
        return [.restartStream]
    }

    private mutating func startAuthentication(_ element: XMLElement) -> [Action] {
        guard tlsActive || plaintextAllowed else {
            return [.send(SASLFailure(.encryptionRequired).element)]
        }
        guard let name = element[attribute: "mechanism"], let mechanism = SASLMechanism(rawValue: name),
            offeredMechanisms().contains(mechanism)
        else {
            return [.send(SASLFailure(.invalidMechanism).element)]
        }
        let text = element.text.trimmingWhitespace()
        let initial: [UInt8]
        if text.isEmpty || text == "=" {
            initial = []
        } else if let decoded = Base64.decode(text) {
            initial = decoded
        } else {
            return [.send(SASLFailure(.incorrectEncoding).element)]
        }
        if mechanism == .plain {
            let plain: PlainCredentials
            do {
                plain = try PlainCredentials(initial)
            } catch {
                return authenticationFailed(error, account: nil)
            }
            let account = try? JID(localpart: plain.username, domainpart: domain.domainpart)
            pending = .plainAttempt(plain, account: account)
            return [.beginAttempt(account: account)]
        }
        var exchange = SCRAMServerExchange(mechanism: mechanism, channelBindingData: tlsActive ? channelBindingData : nil)
        let username: String
        do {
            username = try exchange.receiveClientFirst(initial)
        } catch {
            return authenticationFailed(error, account: nil)
        }
        let account = try? JID(localpart: username, domainpart: domain.domainpart)
        pending = .scramAttempt(exchange, account: account)
        return [.beginAttempt(account: account)]
    }

    /// The throttle's delay is over: the attempt goes on. The delay comes before the
    /// outcome is known, so a right password waits as long as a wrong one.
    private mutating func attemptStarted() -> [Action] {
        let waiting = pending
        pending = .none
        switch waiting {
        case .plainAttempt(let plain, let account):
            guard let account, plain.password.utf8.count <= options.maxPasswordBytes else {
                return authenticationFailed(SASLFailure(.notAuthorized), account: account)
            }
            if let authzid = plain.authzid, (try? JID(authzid)) != account {
                return authenticationFailed(SASLFailure(.invalidAuthzid), account: account)
            }
            pending = .plainCheck(account: account)
            return [.checkPassword(account, password: plain.password)]
        case .scramAttempt(let exchange, let account):
            guard let account else {
                return authenticationFailed(SASLFailure(.notAuthorized), account: nil)
            }
            if let authzid = exchange.authzid, (try? JID(authzid)) != account {
                return authenticationFailed(SASLFailure(.invalidAuthzid), account: account)
            }
            pending = .scramCredentials(exchange, account: account)
            return [.lookUpCredentials(account)]
        case .none, .scramCredentials, .plainCheck:
            pending = waiting
            return []
        }
    }

    private mutating func credentialsFound(_ credentials: StoredCredentials?) -> [Action] {
        guard case .scramCredentials(var exchange, _) = pending else { return [] }
        pending = .none
        // An unknown account gets a challenge as plausible as a known one's.
        let challenge = exchange.serverFirst(
            credentials: credentials,
            unknownAccountKey: options.unknownAccountSaltKey.isEmpty ? processSaltKey : options.unknownAccountSaltKey,
            unknownAccountIterations: options.unknownAccountIterations
        )
        scram = exchange
        return [.send(XMLElement("challenge", namespace: Namespace.sasl, text: Base64.encode(challenge)))]
    }

    private mutating func passwordChecked(_ verified: Bool) -> [Action] {
        guard case .plainCheck(let account) = pending else { return [] }
        pending = .none
        guard verified else {
            return authenticationFailed(SASLFailure(.notAuthorized), account: account)
        }
        authenticated = account
        return [.authenticationSucceeded(account: account), .send(XMLElement("success", namespace: Namespace.sasl))]
            + restartStream()
    }

    private mutating func continueAuthentication(_ element: XMLElement) -> [Action] {
        guard let exchange = scram else {
            return [.send(SASLFailure(.malformedRequest, text: "no exchange in progress").element)]
        }
        scram = nil
        guard let data = Base64.decode(element.text.trimmingWhitespace()) else {
            return [.send(SASLFailure(.incorrectEncoding).element)]
        }
        let account = try? JID(localpart: exchange.username, domainpart: domain.domainpart)
        do {
            let serverFinal = try exchange.receiveClientFinal(data)
            authenticated = account
            return [
                .authenticationSucceeded(account: account),
                .send(XMLElement("success", namespace: Namespace.sasl, text: Base64.encode(serverFinal))),
            ] + restartStream()
        } catch {
            return authenticationFailed(error, account: account)
        }
    }

    private mutating func authenticationFailed(_ failure: any Error, account: JID?) -> [Action] {
        let failure = failure as? SASLFailure ?? SASLFailure(.notAuthorized)
        authFailures += 1
        let actions: [Action] = [.authenticationFailed(account: account, failure), .send(failure.element)]
        guard authFailures < options.maxAuthFailuresPerConnection else {
            return actions + fail(StreamError(.policyViolation, text: "too many failed authentication attempts"))
        }
        return actions
    }

    // MARK: - Binding

    private mutating func negotiationIQ(_ iq: XMLElement) -> [Action] {
        guard iq.type == "set", let payload = iq.elements.first else {
            return fail(StreamError(.notAuthorized, text: "bind a resource first"))
        }
        switch (payload.namespace, payload.name) {
        case (Namespace.bind, "bind"):
            return bind(iq, payload: payload)
        case (Namespace.session, "session"):
            return [.send(iq.iqResult())]
        default:
            return fail(StreamError(.notAuthorized, text: "bind a resource first"))
        }
    }

    private mutating func bind(_ iq: XMLElement, payload: XMLElement) -> [Action] {
        guard let account = authenticated else { return [] }
        let requested = payload.child("resource", namespace: Namespace.bind)?.text.trimmingWhitespace()
        let jid: JID
        do {
            if let requested, !requested.isEmpty {
                jid = try account.with(resource: requested)
            } else {
                jid = try account.with(resource: "conclave-" + randomNonce().filter { $0.isLetter || $0.isNumber })
            }
        } catch {
            return [.send(iq.errorReply(StanzaError(.badRequest, text: "invalid resource")))]
        }
        phase = .bound(jid)
        var result = XMLElement("iq", namespace: Namespace.client, ["type": "result"])
        if let id = iq.id { result.id = id }
        result.append(
            XMLElement("bind", namespace: Namespace.bind, children: [XMLElement("jid", namespace: Namespace.bind, text: jid.description)])
        )
        return [.bind(jid, reply: result)]
    }

    // MARK: - Stanzas

    private mutating func stanza(_ element: XMLElement, from jid: JID) -> [Action] {
        guard element.stanzaKind != nil else {
            return fail(StreamError(.unsupportedStanzaType, text: "<\(element.name)/> in \(element.namespace)"))
        }
        var stanza = element
        if let from = element[attribute: "from"] {
            guard let claimed = try? JID(from), claimed == jid || claimed == jid.bare else {
                return fail(StreamError(.invalidFrom))
            }
        }
        stanza[attribute: "from"] = jid.description
        if let streamLanguage, stanza[attribute: "xml:lang"] == nil {
            stanza.attributes.append(XMLAttribute(name: "xml:lang", value: streamLanguage))
        }
        if element.name == "iq", element.type == "set", let payload = element.elements.first,
            payload.namespace == Namespace.session, payload.name == "session"
        {
            return [.send(element.iqResult())]
        }
        return [.route(stanza)]
    }

    // MARK: - Ending

    /// Ends the stream with `error`: the stream header first if none was sent, the
    /// error, the end of the stream; the session ends, then the connection closes.
    private mutating func fail(_ error: StreamError) -> [Action] {
        guard !isClosed, !ending else { return [] }
        ending = true
        var actions: [Action] = [.streamError(error)]
        if !headerSent {
            actions.append(
                .write(
                    "<?xml version='1.0'?><stream:stream xmlns='\(Namespace.client)' xmlns:stream='\(Namespace.stream)' "
                        + "id='\(randomNonce().filter { $0.isLetter })' from='\(domain)' version='1.0'>"
                )
            )
            headerSent = true
        }
        actions.append(.write(error.element.serialized(parentNamespace: Namespace.client) + "</stream:stream>"))
        actions.append(.endSession(then: .close))
        phase = .closed
        return actions
    }
}
