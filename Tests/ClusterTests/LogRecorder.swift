import Logging
import Synchronization

/// The messages a node logged, for tests that wait until the node has reacted to
/// something (refused a handshake, dropped a frame) instead of sleeping.
final class LogRecorder: Sendable {
    let messages = Mutex<[String]>([])
    private let signal = Signal()

    var logger: Logger {
        var logger = Logger(label: "test") { _ in Handler(recorder: self) }
        logger.logLevel = .debug
        return logger
    }

    /// Waits until a message containing `part` was logged; whether it was.
    func wait(for part: String, within limit: Duration = .seconds(15)) async -> Bool {
        await signal.wait(within: limit) { self.count(part) > 0 }
    }

    func count(_ part: String) -> Int { messages.withLock { $0.filter { $0.contains(part) }.count } }

    struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        var metadataProvider: Logger.MetadataProvider?

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let details = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            let line = ([event.message.description] + details).joined(separator: " ")
            recorder.messages.withLock { $0.append(line) }
            recorder.signal.notify()
        }
    }
}
