import Foundation
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix

/// A DNS server to ask, `HOST[:PORT]` (port 53 by default).
public struct DNSServerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int = 53) {
        self.host = host
        self.port = port
    }

    /// `127.0.0.1:5353`, `127.0.0.1`, `[::1]:53`, `::1`.
    public init(parsing text: String) throws {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                self.init(host: host)
                return
            }
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (1...65535).contains(port) else {
                throw DNSError.invalidName(text)
            }
            self.init(host: host, port: port)
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1:
            guard !text.isEmpty else { throw DNSError.invalidName(text) }
            self.init(host: text)
        case 2:
            guard !parts[0].isEmpty, let port = Int(parts[1]), (1...65535).contains(port) else {
                throw DNSError.invalidName(text)
            }
            self.init(host: String(parts[0]), port: port)
        default:
            self.init(host: text)  // a bare IPv6 address
        }
    }

    /// The first `nameserver` of /etc/resolv.conf (the system's resolver), if any.
    public static func system(resolvConf path: String = "/etc/resolv.conf") -> DNSServerAddress? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(whereSeparator: \.isNewline) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.count >= 2, words[0] == "nameserver" {
                var host = String(words[1])
                if let zone = host.firstIndex(of: "%") { host = String(host[..<zone]) }
                return DNSServerAddress(host: host)
            }
        }
        return nil
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Asks one DNS server over UDP. Each query uses its own socket and a random id, and
/// is sent again when no answer came within `timeout`, up to `attempts` times. A
/// truncated answer is used as far as it goes (SRV answers for a handful of nodes fit
/// in one datagram; there is no TCP retry).
public struct DNSClient: Sendable {
    public let server: DNSServerAddress
    public var timeout: TimeAmount
    public var attempts: Int
    let group: any EventLoopGroup

    public init(
        server: DNSServerAddress,
        timeout: TimeAmount = .milliseconds(1500),
        attempts: Int = 2,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.server = server
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.group = group
    }

    public func query(_ name: String, type: DNSRecordType) async throws -> DNSResponse {
        let address = try SocketAddress.makeAddressResolvingHost(server.host, port: server.port)
        var lastError: any Error = DNSError.timeout
        for _ in 0..<attempts {
            let id = UInt16.random(in: 0...UInt16.max)
            let packet = try DNSMessage.query(id: id, name: name, type: type)
            do {
                let bytes = try await exchange(packet, id: id, with: address)
                let response = try DNSMessage.parse(bytes)
                if response.responseCode != 0, response.responseCode != 3 {
                    throw DNSError.serverFailure(responseCode: response.responseCode)
                }
                return response
            } catch DNSError.timeout {
                lastError = DNSError.timeout
                continue
            }
        }
        throw lastError
    }

    private func exchange(_ packet: [UInt8], id: UInt16, with address: SocketAddress) async throws -> [UInt8] {
        let loop = group.next()
        let promise = loop.makePromise(of: [UInt8].self)
        let completed = NIOLockedValueBox(false)
        @Sendable func finish(_ result: Result<[UInt8], any Error>) {
            guard completed.withLockedValue({ done in defer { done = true }; return !done }) else { return }
            promise.completeWith(result)
        }
        let bindHost = address.protocol == .inet6 ? "::" : "0.0.0.0"
        let channel = try await DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        AnswerHandler(id: id, server: address) { bytes in finish(.success(bytes)) }
                    )
                }
            }
            .bind(host: bindHost, port: 0).get()
        let timer = loop.scheduleTask(in: timeout) { finish(.failure(DNSError.timeout)) }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        var buffer = channel.allocator.buffer(capacity: packet.count)
        buffer.writeBytes(packet)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: buffer)).whenFailure { error in
            finish(.failure(error))
        }
        return try await promise.futureResult.get()
    }

    /// Passes on the first datagram from the server that answers this query's id.
    private final class AnswerHandler: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let id: UInt16
        let server: SocketAddress
        let answered: ([UInt8]) -> Void

        init(id: UInt16, server: SocketAddress, answered: @escaping ([UInt8]) -> Void) {
            self.id = id
            self.server = server
            self.answered = answered
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let bytes = Array(envelope.data.readableBytesView)
            guard envelope.remoteAddress == server, bytes.count >= 2, UInt16(bytes[0]) << 8 | UInt16(bytes[1]) == id else {
                return  // a stray datagram: not our answer
            }
            answered(bytes)
        }
    }
}
