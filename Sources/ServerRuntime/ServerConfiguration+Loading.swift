import Cluster
import Foundation
import Logging
import MUC
import Yams
import XMPPStream

/// A configuration problem, with the key or file it is about.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension ServerConfiguration {
    /// The YAML file's shape: every key optional, snake_case.
    private struct File: Decodable {
        var domain: String?
        var muc_domain: String?
        var node_name: String?
        var database_url: String?
        var migrations_directory: String?
        var log_level: String?
        var log_format: String?
        var muc_admins: [String]?
        var muc_restrict_room_creation: Bool?
        var muc_limits: MUCLimitsFile?
        var c2s: C2SFile?
        var tls: TLSFile?
        var limits: LimitsFile?
        var auth: AuthFile?
        var cluster: ClusterFile?
        var http: HTTPFile?

        struct MUCLimitsFile: Decodable {
            var room_name_bytes: Int?
            var jid_bytes: Int?
            var nick_bytes: Int?
            var reason_bytes: Int?
            var affiliations: Int?
            var subject_bytes: Int?
            var configuration_field_bytes: Int?
            var presence_updates_per_second: Int?
            var presence_update_burst: Int?
            var history_bytes: Int?
            var rooms_per_user: Int?
            var disco_items_max: Int?
        }

        struct HTTPFile: Decodable {
            var host: String?
            var port: Int?
        }

        struct ClusterFile: Decodable {
            var link_host: String?
            var link_port: Int?
            var advertise_host: String?
            var secret: String?
            var secret_file: String?
            var tls_ca: String?
            var tls_certificate: String?
            var tls_key: String?
            var lease_seconds: Double?
            var heartbeat_seconds: Double?
            var room_input_timeout_seconds: Double?
            var tls_verify_names: Bool?
            var link_auth_timeout_seconds: Double?
            var link_preauth_bytes: Int?
            var link_max_unauthenticated: Int?
            var link_max_unauthenticated_per_address: Int?
            var link_queue_bytes: Int?
            var link_max_frame_bytes: Int?
        }

        struct C2SFile: Decodable {
            var host: String?
            var port: Int?
            var direct_tls_port: Int?
            var allow_plaintext_on_loopback: Bool?
            var idle_timeout_seconds: Int?
            var negotiation_timeout_seconds: Int?
        }
        struct TLSFile: Decodable {
            var certificate: String?
            var key: String?
        }
        struct LimitsFile: Decodable {
            var max_stanza_bytes: Int?
            var max_depth: Int?
            var max_elements_per_stanza: Int?
            var max_attributes_per_element: Int?
            var max_header_bytes: Int?
            var max_pre_auth_bytes: Int?
            var max_unsent_bytes: Int?
            var max_unauthenticated_connections: Int?
            var max_unauthenticated_connections_per_address: Int?
            var max_connections: Int?
            var offline_messages: Int?
            var offline_bytes: Int?
            var session_bytes_per_second: Int?
            var session_burst_bytes: Int?
            var session_stanzas_per_second: Int?
            var session_burst_stanzas: Int?
            var session_max_held_stanzas: Int?
            var room_writer_backlog_bytes: Int?
            var max_memory_bytes: Int?
            var yield_after_bytes: Int?
        }
        struct AuthFile: Decodable {
            var max_failures_per_connection: Int?
            var failures_before_delay: Int?
            var scram_iterations: Int?
            var channel_binding: Bool?
            var max_parallel_per_address: Int?
            var failures_before_delay_per_address: Int?
            var max_password_bytes: Int?
        }
    }

    /// Loads `path` (YAML) over the defaults, then applies `environment` overrides.
    public static func load(path: String?, environment: [String: String]) throws -> ServerConfiguration {
        var configuration = ServerConfiguration()
        if let path {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ConfigurationError("cannot read configuration file \(path)")
            }
            try configuration.apply(yaml: text, source: path)
        }
        try configuration.apply(environment: environment)
        return configuration
    }

    /// The keys the file may have, per section ("" for the top level): the names of
    /// `File`'s properties.
    private static let knownKeys: [String: Set<String>] = {
        func names(_ value: Any) -> Set<String> { Set(Mirror(reflecting: value).children.compactMap(\.label)) }
        return [
            "": names(File()), "c2s": names(File.C2SFile()), "tls": names(File.TLSFile()),
            "limits": names(File.LimitsFile()), "auth": names(File.AuthFile()), "cluster": names(File.ClusterFile()),
            "http": names(File.HTTPFile()), "muc_limits": names(File.MUCLimitsFile()),
        ]
    }()

    /// A misspelt key would otherwise be ignored without a word (and, say, links stay
    /// unencrypted because `cluster.tls_ca` was written `cluster.tlsca`).
    private static func checkKeys(_ text: String, source: String) throws {
        guard let root = try? Yams.compose(yaml: text), let mapping = root.mapping else { return }
        for (key, value) in mapping {
            let name = key.string ?? "\(key)"
            guard knownKeys[""]!.contains(name) else {
                throw ConfigurationError("\(source): unknown key '\(name)' (docs/configuration.md lists every key)")
            }
            if let section = knownKeys[name], let inner = value.mapping {
                for (innerKey, _) in inner where !section.contains(innerKey.string ?? "") {
                    throw ConfigurationError(
                        "\(source): unknown key '\(name).\(innerKey.string ?? "\(innerKey)")' (docs/configuration.md lists every key)"
                    )
                }
            }
        }
    }

    mutating func apply(yaml text: String, source: String) throws {
        let file: File
        do {
            file = try YAMLDecoder().decode(File.self, from: text)
        } catch {
            throw ConfigurationError("\(source): \(error)")
        }
        try Self.checkKeys(text, source: source)
        if let value = file.domain {
            let derivedMUC = mucDomain == "conference." + domain
            domain = value
            if derivedMUC { mucDomain = "conference." + value }
        }
        if let value = file.muc_domain { mucDomain = value }
        if let value = file.node_name { nodeName = value }
        if let value = file.database_url { databaseURL = value }
        if let value = file.migrations_directory { migrationsDirectory = value }
        if let value = file.log_level { logLevel = try Self.level(value, key: "log_level") }
        if let value = file.log_format { logFormat = try Self.format(value, key: "log_format") }
        if let value = file.muc_admins { mucAdmins = value }
        if let value = file.muc_restrict_room_creation { mucRestrictRoomCreation = value }
        if let limits = file.muc_limits {
            if let value = limits.room_name_bytes { mucLimits.roomNameBytes = value }
            if let value = limits.jid_bytes { mucLimits.jidBytes = value }
            if let value = limits.nick_bytes { mucLimits.nickBytes = value }
            if let value = limits.reason_bytes { mucLimits.reasonBytes = value }
            if let value = limits.affiliations { mucLimits.affiliations = value }
            if let value = limits.subject_bytes { mucLimits.subjectBytes = value }
            if let value = limits.configuration_field_bytes { mucLimits.configurationFieldBytes = value }
            if let value = limits.presence_updates_per_second { mucLimits.presenceUpdatesPerSecond = value }
            if let value = limits.presence_update_burst { mucLimits.presenceUpdateBurst = value }
            if let value = limits.history_bytes { mucLimits.historyBytes = value }
            if let value = limits.rooms_per_user { mucLimits.roomsPerUser = value }
            if let value = limits.disco_items_max { mucLimits.discoItemsMax = value }
            try validateMUCLimits()
        }
        if let c2s = file.c2s {
            if let value = c2s.host { self.c2s.host = value }
            if let value = c2s.port { self.c2s.port = value }
            if let value = c2s.direct_tls_port { self.c2s.directTLSPort = value < 0 ? nil : value }
            if let value = c2s.allow_plaintext_on_loopback { self.c2s.allowPlaintextOnLoopback = value }
            if let value = c2s.idle_timeout_seconds { self.c2s.idleTimeoutSeconds = value }
            if let value = c2s.negotiation_timeout_seconds { self.c2s.negotiationTimeoutSeconds = value }
        }
        if let tls = file.tls {
            if let value = tls.certificate { self.tls.certificate = value }
            if let value = tls.key { self.tls.key = value }
        }
        if let limits = file.limits {
            if let value = limits.max_stanza_bytes { self.limits.maxStanzaBytes = value }
            if let value = limits.max_depth { self.limits.maxDepth = value }
            if let value = limits.max_elements_per_stanza { self.limits.maxElementsPerStanza = value }
            if let value = limits.max_attributes_per_element { self.limits.maxAttributesPerElement = value }
            if let value = limits.max_header_bytes { self.limits.maxHeaderBytes = value }
            if let value = limits.max_pre_auth_bytes { self.limits.maxPreAuthBytes = value }
            if let value = limits.max_unsent_bytes { self.limits.maxUnsentBytes = value }
            if let value = limits.max_unauthenticated_connections { self.limits.maxUnauthenticatedConnections = value }
            if let value = limits.max_unauthenticated_connections_per_address {
                self.limits.maxUnauthenticatedConnectionsPerAddress = value
            }
            if let value = limits.max_connections { self.limits.maxConnections = value }
            if let value = limits.offline_messages { self.limits.offlineMessages = value }
            if let value = limits.offline_bytes { self.limits.offlineBytes = value }
            if let value = limits.session_bytes_per_second { self.limits.sessionBytesPerSecond = value }
            if let value = limits.session_burst_bytes { self.limits.sessionBurstBytes = value }
            if let value = limits.session_stanzas_per_second { self.limits.sessionStanzasPerSecond = value }
            if let value = limits.session_burst_stanzas { self.limits.sessionBurstStanzas = value }
            if let value = limits.session_max_held_stanzas { self.limits.sessionMaxHeldStanzas = value }
            if let value = limits.room_writer_backlog_bytes { self.limits.roomWriterBacklogBytes = value }
            if let value = limits.max_memory_bytes { self.limits.maxMemoryBytes = value }
            if let value = limits.yield_after_bytes { self.limits.yieldAfterBytes = value }
        }
        if let auth = file.auth {
            if let value = auth.max_failures_per_connection { self.auth.maxFailuresPerConnection = value }
            if let value = auth.failures_before_delay { self.auth.failuresBeforeDelay = value }
            if let value = auth.scram_iterations { self.auth.scramIterations = value }
            if let value = auth.channel_binding { self.auth.channelBinding = value }
            if let value = auth.max_parallel_per_address { self.auth.maxParallelPerAddress = value }
            if let value = auth.failures_before_delay_per_address { self.auth.failuresBeforeDelayPerAddress = value }
            if let value = auth.max_password_bytes { self.auth.maxPasswordBytes = value }
        }
        if let cluster = file.cluster {
            if let value = cluster.link_host { self.cluster.linkHost = value }
            if let value = cluster.link_port { self.cluster.linkPort = value }
            if let value = cluster.advertise_host { self.cluster.advertiseHost = value }
            if let value = cluster.secret { self.cluster.secret = value }
            if let value = cluster.secret_file { self.cluster.secretFile = value }
            if let value = cluster.tls_ca { self.cluster.tlsCA = value }
            if let value = cluster.tls_certificate { self.cluster.tlsCertificate = value }
            if let value = cluster.tls_key { self.cluster.tlsKey = value }
            if let value = cluster.lease_seconds { self.cluster.leaseSeconds = value }
            if let value = cluster.heartbeat_seconds { self.cluster.heartbeatSeconds = value }
            if let value = cluster.room_input_timeout_seconds { self.cluster.roomInputTimeoutSeconds = value }
            if let value = cluster.tls_verify_names { self.cluster.tlsVerifyNames = value }
            if let value = cluster.link_auth_timeout_seconds { self.cluster.linkAuthTimeoutSeconds = value }
            if let value = cluster.link_preauth_bytes { self.cluster.linkPreAuthBytes = value }
            if let value = cluster.link_max_unauthenticated { self.cluster.linkMaxUnauthenticated = value }
            if let value = cluster.link_max_unauthenticated_per_address {
                self.cluster.linkMaxUnauthenticatedPerAddress = value
            }
            if let value = cluster.link_queue_bytes { self.cluster.linkQueueBytes = value }
            if let value = cluster.link_max_frame_bytes { self.cluster.linkMaxFrameBytes = value }
        }
        if let http = file.http {
            if let value = http.host { self.http.host = value }
            if let value = http.port { self.http.port = value }
        }
        try validateOfflineLimits()
        try validateCluster()
    }

    func validateMUCLimits() throws {
        let limits = mucLimits
        let values = [
            limits.roomNameBytes, limits.jidBytes, limits.nickBytes, limits.reasonBytes, limits.affiliations,
            limits.subjectBytes, limits.configurationFieldBytes, limits.presenceUpdatesPerSecond,
            limits.presenceUpdateBurst, limits.historyBytes, limits.discoItemsMax,
        ]
        guard values.allSatisfy({ $0 > 0 }) else {
            throw ConfigurationError("muc_limits: every limit must be positive (rooms_per_user may be 0: no limit)")
        }
        guard limits.roomsPerUser >= 0 else {
            throw ConfigurationError("muc_limits: rooms_per_user must not be negative (0: no limit)")
        }
    }

    func validateOfflineLimits() throws {
        guard limits.offlineMessages >= 0, limits.offlineBytes >= 0 else {
            throw ConfigurationError("limits.offline_messages and limits.offline_bytes must not be negative (0: keep none)")
        }
        guard limits.maxConnections >= 0 else {
            throw ConfigurationError("limits.max_connections must not be negative (0: no budget)")
        }
        guard limits.roomWriterBacklogBytes >= 64 * 1024 else {
            throw ConfigurationError("limits.room_writer_backlog_bytes must be at least 65536")
        }
        guard limits.yieldAfterBytes >= 0 else {
            throw ConfigurationError("limits.yield_after_bytes must not be negative (0: never yield)")
        }
        guard limits.maxMemoryBytes >= 0 else {
            throw ConfigurationError("limits.max_memory_bytes must not be negative (0: no budget)")
        }
        if let problem = limits.shaping.problem {
            throw ConfigurationError("limits.session_*: \(problem)")
        }
    }

    func validateCluster() throws {
        guard cluster.leaseSeconds > 0, cluster.heartbeatSeconds > 0, cluster.heartbeatSeconds < cluster.leaseSeconds else {
            throw ConfigurationError("cluster: heartbeat_seconds must be positive and shorter than lease_seconds")
        }
        guard cluster.roomInputTimeoutSeconds > 0, cluster.roomInputTimeoutSeconds <= 3600 else {
            throw ConfigurationError("cluster: room_input_timeout_seconds must be more than 0 and at most 3600")
        }
        let limits = [
            cluster.linkPreAuthBytes, cluster.linkMaxUnauthenticated, cluster.linkMaxUnauthenticatedPerAddress,
            cluster.linkQueueBytes, cluster.linkMaxFrameBytes,
        ]
        guard cluster.linkAuthTimeoutSeconds > 0, limits.allSatisfy({ $0 > 0 }) else {
            throw ConfigurationError("cluster: the link_* limits must be positive")
        }
        guard cluster.linkMaxFrameBytes <= cluster.linkQueueBytes else {
            throw ConfigurationError("cluster: link_max_frame_bytes must not exceed link_queue_bytes")
        }
        // A frame's length is 4 bytes; the smallest frames (an acknowledged barrier) take 17.
        guard (1024...LinkFrameCodec.largestFrame).contains(cluster.linkMaxFrameBytes) else {
            throw ConfigurationError("cluster: link_max_frame_bytes must be between 1024 and \(LinkFrameCodec.largestFrame)")
        }
    }

    /// `CONCLAVE_*` variables override the file; see docs/configuration.md.
    mutating func apply(environment: [String: String]) throws {
        func int(_ key: String) throws -> Int? {
            guard let text = environment[key] else { return nil }
            guard let value = Int(text) else { throw ConfigurationError("\(key) must be a number, not '\(text)'") }
            return value
        }
        func bool(_ key: String) throws -> Bool? {
            guard let text = environment[key]?.lowercased() else { return nil }
            switch text {
            case "1", "true", "yes", "on": return true
            case "0", "false", "no", "off": return false
            default: throw ConfigurationError("\(key) must be true or false, not '\(text)'")
            }
        }
        if let value = environment["CONCLAVE_DOMAIN"] {
            let derivedMUC = mucDomain == "conference." + domain
            domain = value
            if derivedMUC { mucDomain = "conference." + value }
        }
        if let value = environment["CONCLAVE_MUC_DOMAIN"] { mucDomain = value }
        if let value = environment["CONCLAVE_NODE_NAME"] { nodeName = value }
        if let value = environment["CONCLAVE_DATABASE_URL"] { databaseURL = value }
        if let value = environment["CONCLAVE_MIGRATIONS_DIRECTORY"] { migrationsDirectory = value }
        if let value = environment["CONCLAVE_LOG_LEVEL"] { logLevel = try Self.level(value, key: "CONCLAVE_LOG_LEVEL") }
        if let value = environment["CONCLAVE_LOG_FORMAT"] { logFormat = try Self.format(value, key: "CONCLAVE_LOG_FORMAT") }
        if let value = environment["CONCLAVE_MUC_ADMINS"] {
            mucAdmins = value.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
        }
        if let value = try bool("CONCLAVE_MUC_RESTRICT_ROOM_CREATION") { mucRestrictRoomCreation = value }
        if let value = try int("CONCLAVE_MUC_LIMITS_ROOM_NAME_BYTES") { mucLimits.roomNameBytes = value }
        if let value = try int("CONCLAVE_MUC_LIMITS_JID_BYTES") { mucLimits.jidBytes = value }
        if let value = try int("CONCLAVE_MUC_LIMITS_NICK_BYTES") { mucLimits.nickBytes = value }
        if let value = try int("CONCLAVE_MUC_LIMITS_REASON_BYTES") { mucLimits.reasonBytes = value }
        if let value = try int("CONCLAVE_MUC_LIMITS_AFFILIATIONS") { mucLimits.affiliations = value }
        if let value = try int("CONCLAVE_MUC_LIMITS_SUBJECT_BYTES") { mucLimits.subjectBytes = value }
        if let value = try int("CONCLAVE_MUC_LIMITS_CONFIGURATION_FIELD_BYTES") {
            mucLimits.configurationFieldBytes = value
        }
        if let value = try int("CONCLAVE_MUC_LIMITS_PRESENCE_UPDATES_PER_SECOND") {
            mucLimits.presenceUpdatesPerSecond = value
        }
        if let value = try int("CONCLAVE_MUC_LIMITS_PRESENCE_UPDATE_BURST") { mucLimits.presenceUpdateBurst = value }
        if let value = try int("CONCLAVE_MUC_LIMITS_HISTORY_BYTES") { mucLimits.historyBytes = value }
        if let value = try int("CONCLAVE_MUC_LIMITS_ROOMS_PER_USER") { mucLimits.roomsPerUser = value }
        if let value = try int("CONCLAVE_MUC_LIMITS_DISCO_ITEMS_MAX") { mucLimits.discoItemsMax = value }
        try validateMUCLimits()
        if let value = environment["CONCLAVE_C2S_HOST"] { c2s.host = value }
        if let value = try int("CONCLAVE_C2S_PORT") { c2s.port = value }
        if let value = try int("CONCLAVE_C2S_DIRECT_TLS_PORT") { c2s.directTLSPort = value < 0 ? nil : value }
        if let value = try bool("CONCLAVE_C2S_ALLOW_PLAINTEXT_ON_LOOPBACK") { c2s.allowPlaintextOnLoopback = value }
        if let value = try int("CONCLAVE_C2S_IDLE_TIMEOUT_SECONDS") { c2s.idleTimeoutSeconds = value }
        if let value = environment["CONCLAVE_TLS_CERTIFICATE"] { tls.certificate = value }
        if let value = environment["CONCLAVE_TLS_KEY"] { tls.key = value }
        if let value = try int("CONCLAVE_LIMITS_MAX_STANZA_BYTES") { limits.maxStanzaBytes = value }
        if let value = try int("CONCLAVE_LIMITS_MAX_DEPTH") { limits.maxDepth = value }
        if let value = try int("CONCLAVE_LIMITS_MAX_ELEMENTS_PER_STANZA") { limits.maxElementsPerStanza = value }
        if let value = try int("CONCLAVE_LIMITS_MAX_ATTRIBUTES_PER_ELEMENT") { limits.maxAttributesPerElement = value }
        if let value = try int("CONCLAVE_LIMITS_MAX_HEADER_BYTES") { limits.maxHeaderBytes = value }
        if let value = try int("CONCLAVE_LIMITS_MAX_PRE_AUTH_BYTES") { limits.maxPreAuthBytes = value }
        if let value = try int("CONCLAVE_LIMITS_MAX_UNSENT_BYTES") { limits.maxUnsentBytes = value }
        if let value = try int("CONCLAVE_LIMITS_MAX_UNAUTHENTICATED_CONNECTIONS") { limits.maxUnauthenticatedConnections = value }
        if let value = try int("CONCLAVE_LIMITS_MAX_CONNECTIONS") { limits.maxConnections = value }
        if let value = try int("CONCLAVE_LIMITS_MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS") {
            limits.maxUnauthenticatedConnectionsPerAddress = value
        }
        if let value = try int("CONCLAVE_LIMITS_OFFLINE_MESSAGES") { limits.offlineMessages = value }
        if let value = try int("CONCLAVE_LIMITS_OFFLINE_BYTES") { limits.offlineBytes = value }
        if let value = try int("CONCLAVE_LIMITS_SESSION_BYTES_PER_SECOND") { limits.sessionBytesPerSecond = value }
        if let value = try int("CONCLAVE_LIMITS_SESSION_BURST_BYTES") { limits.sessionBurstBytes = value }
        if let value = try int("CONCLAVE_LIMITS_SESSION_STANZAS_PER_SECOND") { limits.sessionStanzasPerSecond = value }
        if let value = try int("CONCLAVE_LIMITS_SESSION_BURST_STANZAS") { limits.sessionBurstStanzas = value }
        if let value = try int("CONCLAVE_LIMITS_SESSION_MAX_HELD_STANZAS") { limits.sessionMaxHeldStanzas = value }
        if let value = try int("CONCLAVE_LIMITS_ROOM_WRITER_BACKLOG_BYTES") { limits.roomWriterBacklogBytes = value }
        if let value = try int("CONCLAVE_LIMITS_MAX_MEMORY_BYTES") { limits.maxMemoryBytes = value }
        if let value = try int("CONCLAVE_LIMITS_YIELD_AFTER_BYTES") { limits.yieldAfterBytes = value }
        if let value = try int("CONCLAVE_C2S_NEGOTIATION_TIMEOUT_SECONDS") { c2s.negotiationTimeoutSeconds = value }
        if let value = try int("CONCLAVE_AUTH_MAX_PARALLEL_PER_ADDRESS") { auth.maxParallelPerAddress = value }
        if let value = try int("CONCLAVE_AUTH_FAILURES_BEFORE_DELAY_PER_ADDRESS") { auth.failuresBeforeDelayPerAddress = value }
        if let value = try int("CONCLAVE_AUTH_MAX_PASSWORD_BYTES") { auth.maxPasswordBytes = value }
        if let value = try int("CONCLAVE_AUTH_MAX_FAILURES_PER_CONNECTION") { auth.maxFailuresPerConnection = value }
        if let value = try int("CONCLAVE_AUTH_FAILURES_BEFORE_DELAY") { auth.failuresBeforeDelay = value }
        if let value = try int("CONCLAVE_AUTH_SCRAM_ITERATIONS") { auth.scramIterations = value }
        if let value = try bool("CONCLAVE_AUTH_CHANNEL_BINDING") { auth.channelBinding = value }
        func double(_ key: String) throws -> Double? {
            guard let text = environment[key] else { return nil }
            guard let value = Double(text) else { throw ConfigurationError("\(key) must be a number, not '\(text)'") }
            return value
        }
        if let value = environment["CONCLAVE_HTTP_HOST"] { http.host = value }
        if let value = try int("CONCLAVE_HTTP_PORT") { http.port = value }
        if let value = environment["CONCLAVE_CLUSTER_LINK_HOST"] { cluster.linkHost = value }
        if let value = try int("CONCLAVE_CLUSTER_LINK_PORT") { cluster.linkPort = value }
        if let value = environment["CONCLAVE_CLUSTER_ADVERTISE_HOST"] { cluster.advertiseHost = value }
        if let value = environment["CONCLAVE_CLUSTER_SECRET"] { cluster.secret = value }
        if let value = environment["CONCLAVE_CLUSTER_SECRET_FILE"] { cluster.secretFile = value }
        if let value = environment["CONCLAVE_CLUSTER_TLS_CA"] { cluster.tlsCA = value }
        if let value = environment["CONCLAVE_CLUSTER_TLS_CERTIFICATE"] { cluster.tlsCertificate = value }
        if let value = environment["CONCLAVE_CLUSTER_TLS_KEY"] { cluster.tlsKey = value }
        if let value = try double("CONCLAVE_CLUSTER_LEASE_SECONDS") { cluster.leaseSeconds = value }
        if let value = try double("CONCLAVE_CLUSTER_HEARTBEAT_SECONDS") { cluster.heartbeatSeconds = value }
        if let value = try double("CONCLAVE_CLUSTER_ROOM_INPUT_TIMEOUT_SECONDS") { cluster.roomInputTimeoutSeconds = value }
        if let value = try bool("CONCLAVE_CLUSTER_TLS_VERIFY_NAMES") { cluster.tlsVerifyNames = value }
        if let value = try double("CONCLAVE_CLUSTER_LINK_AUTH_TIMEOUT_SECONDS") { cluster.linkAuthTimeoutSeconds = value }
        if let value = try int("CONCLAVE_CLUSTER_LINK_PREAUTH_BYTES") { cluster.linkPreAuthBytes = value }
        if let value = try int("CONCLAVE_CLUSTER_LINK_MAX_UNAUTHENTICATED") { cluster.linkMaxUnauthenticated = value }
        if let value = try int("CONCLAVE_CLUSTER_LINK_MAX_UNAUTHENTICATED_PER_ADDRESS") {
            cluster.linkMaxUnauthenticatedPerAddress = value
        }
        if let value = try int("CONCLAVE_CLUSTER_LINK_QUEUE_BYTES") { cluster.linkQueueBytes = value }
        if let value = try int("CONCLAVE_CLUSTER_LINK_MAX_FRAME_BYTES") { cluster.linkMaxFrameBytes = value }
        try validateOfflineLimits()
        try validateCluster()
    }

    static func format(_ text: String, key: String) throws -> LogFormat {
        guard let format = LogFormat(rawValue: text) else {
            throw ConfigurationError("\(key): '\(text)' is not a log format (text, json)")
        }
        return format
    }

    static func level(_ text: String, key: String) throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: text.lowercased()) else {
            throw ConfigurationError("\(key): unknown log level '\(text)' (trace, debug, info, notice, warning, error)")
        }
        return level
    }

    /// The database URL to use: the configured one, else the embedded database
    /// recorded under `.conclave/` in the working directory.
    public func resolvedDatabaseURL() throws -> String {
        if let databaseURL { return databaseURL }
        let file = ".conclave/database-url"
        if let text = try? String(contentsOfFile: file, encoding: .utf8) {
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        throw ConfigurationError(
            "no database: pass --database-url, set CONCLAVE_DATABASE_URL, or run 'make db-start' in the repository"
        )
    }

    /// The migrations directory to use.
    /// The cluster secret: configured, read from `cluster.secret_file`, or from
    /// `.conclave/cluster-secret`; `nil` when there is none (then this node can only
    /// be a cluster of one).
    public func resolvedClusterSecret() throws -> String? {
        if let secret = cluster.secret { return secret }
        let path = cluster.secretFile ?? ".conclave/cluster-secret"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            if cluster.secretFile != nil { throw ConfigurationError("cannot read cluster.secret_file \(path)") }
            return nil
        }
        let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !secret.isEmpty else { throw ConfigurationError("the cluster secret in \(path) is empty") }
        return secret
    }

    public func resolvedMigrationsDirectory() throws -> String {
        var candidates: [String] = []
        if let migrationsDirectory { candidates.append(migrationsDirectory) }
        candidates.append("migrations")
        // Next to a binary in .build/<config>/ of the repository.
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = executable.deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(directory.appendingPathComponent("migrations").path)
            directory = directory.deletingLastPathComponent()
        }
        for candidate in candidates {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), isDirectory.boolValue {
                return candidate
            }
            if candidate == migrationsDirectory {
                throw ConfigurationError("migrations directory \(candidate) does not exist")
            }
        }
        throw ConfigurationError("no migrations directory found (tried \(candidates.joined(separator: ", ")))")
    }
}

extension ServerConfiguration.Limits {
    /// The `limits.session_*` keys as a session's shaper takes them.
    var shaping: SessionShaper.Limits {
        var shaping = SessionShaper.Limits()
        shaping.bytesPerSecond = sessionBytesPerSecond
        shaping.burstBytes = sessionBurstBytes
        shaping.stanzasPerSecond = sessionStanzasPerSecond
        shaping.burstStanzas = sessionBurstStanzas
        shaping.maxHeldStanzas = sessionMaxHeldStanzas
        return shaping
    }
}
