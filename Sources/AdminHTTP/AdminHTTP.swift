public import Hummingbird
public import Logging

/// A node's operations endpoints (their own module, so the core builds without
/// Hummingbird): `/healthz` (the process answers), `/readyz` (PostgreSQL, LISTEN and the
/// ring are up) and `/metrics` (Prometheus text format).
public enum AdminHTTP {
    /// What `/readyz` reports: ready, or why not.
    public struct Readiness: Sendable {
        public var ready: Bool
        public var detail: String
        public init(ready: Bool, detail: String) {
            self.ready = ready
            self.detail = detail
        }
    }

    /// The HTTP application; `running` gets the bound port once it listens.
    public static func application(
        host: String,
        port: Int,
        logger: Logger,
        metrics: @escaping @Sendable () async -> String,
        readiness: @escaping @Sendable () async -> Readiness,
        running: @escaping @Sendable (Int) -> Void
    ) -> some ApplicationProtocol {
        let router = Router()
        router.get("healthz") { _, _ in "ok\n" }
        router.get("readyz") { _, _ -> Response in
            let state = await readiness()
            return Response(
                status: state.ready ? .ok : .serviceUnavailable,
                headers: [.contentType: "text/plain; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: state.detail + "\n"))
            )
        }
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: await metrics()))
            )
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "conclave"),
            onServerRunning: { channel in running(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }

    /// Prometheus text exposition of a few samples.
    public struct MetricsText: Sendable {
        private var text = ""
        public init() {}

        public mutating func add(_ name: String, _ kind: String, _ help: String, _ samples: [(labels: String, value: Double)]) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(kind)\n"
            for sample in samples {
                let value = sample.value == sample.value.rounded() ? String(Int64(sample.value)) : String(sample.value)
                text += sample.labels.isEmpty ? "\(name) \(value)\n" : "\(name){\(sample.labels)} \(value)\n"
            }
        }

        public mutating func add(_ name: String, _ kind: String, _ help: String, _ value: Double) {
            add(name, kind, help, [("", value)])
        }

        public var rendered: String { text }
    }
}
