import NIOCore
import NIOPosix
import Synchronization

/// One end of a plain TCP connection driven by a test, playing a hostile or broken peer
/// of a node link: it sends what the test says and records what it receives.
final class RawConnection: Sendable {
    let channel: any Channel
    private let recorder: Recorder

    private init(channel: any Channel, recorder: Recorder) {
        self.channel = channel
        self.recorder = recorder
    }

    /// Everything received so far.
    var text: String { recorder.text.withLock { $0 } }

    static func connect(port: Int) async throws -> RawConnection {
        let recorder = Recorder()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(recorder) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, recorder: recorder)
    }

    func send(_ text: String) async throws {
        try await channel.writeAndFlush(channel.allocator.buffer(string: text)).get()
    }

    func send(bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)).get()
    }

    /// Waits until the received text contains `part`; `nil` if the connection closed first.
    func wait(for part: String) async -> String? {
        let channel = self.channel
        _ = await recorder.signal.wait { self.text.contains(part) || !channel.isActive }
        let text = self.text
        return text.contains(part) ? text : nil
    }

    /// Whether the other side closed the connection within `limit` (a bound for a test
    /// that fails, not a pause: a close that happens returns at once). Closes it otherwise.
    func closedByPeer(within limit: Duration) async -> Bool {
        let channel = self.channel
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                try? await channel.closeFuture.get()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                guard channel.isActive else { return true }
                try? await channel.close()
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    /// A listening socket whose accepted connections the test drives: a fake node.
    final class Server: Sendable {
        let channel: any Channel
        let accepted: AsyncStream<RawConnection>

        init() async throws {
            let (stream, continuation) = AsyncStream.makeStream(of: RawConnection.self)
            accepted = stream
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let recorder = Recorder()
                        try channel.pipeline.syncOperations.addHandler(recorder)
                        continuation.yield(RawConnection(channel: channel, recorder: recorder))
                    }
                }
                .bind(host: "127.0.0.1", port: 0).get()
        }

        var port: Int { channel.localAddress?.port ?? 0 }

        /// The next connection a node opened to this server.
        func next() async -> RawConnection? {
            for await connection in accepted { return connection }
            return nil
        }

        func close() async { try? await channel.close() }
    }

    final class Recorder: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let text = Mutex("")
        let signal = Signal()

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            let part = buffer.readString(length: buffer.readableBytes) ?? ""
            text.withLock { $0 += part }
            signal.notify()
        }

        func channelInactive(context: ChannelHandlerContext) {
            context.fireChannelInactive()
            signal.notify()
        }
    }
}
