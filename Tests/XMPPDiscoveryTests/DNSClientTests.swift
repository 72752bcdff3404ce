import NIOCore
import NIOPosix
import Testing
import XMPPDiscovery

/// A DNS server on a real loopback UDP socket: answers each query with what `answer`
/// returns for its id and name (nil: stays silent).
final class LoopbackDNSServer: Sendable {
    let channel: any Channel
    var address: DNSServerAddress { DNSServerAddress(host: "127.0.0.1", port: channel.localAddress!.port!) }

    init(answer: @escaping @Sendable (_ id: UInt16, _ name: String, _ type: UInt16) -> [[UInt8]]) async throws {
        channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Handler(answer: answer))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func stop() async { try? await channel.close() }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let answer: @Sendable (UInt16, String, UInt16) -> [[UInt8]]
        init(answer: @escaping @Sendable (UInt16, String, UInt16) -> [[UInt8]]) { self.answer = answer }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let bytes = Array(envelope.data.readableBytesView)
            let id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
            var labels: [String] = []
            var index = 12
            while bytes[index] != 0 {
                let count = Int(bytes[index])
                labels.append(String(decoding: bytes[(index + 1)...(index + count)], as: UTF8.self))
                index += count + 1
            }
            let type = UInt16(bytes[index + 1]) << 8 | UInt16(bytes[index + 2])
            for datagram in answer(id, labels.joined(separator: "."), type) {
                let buffer = context.channel.allocator.buffer(bytes: datagram)
                context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: buffer)), promise: nil)
            }
        }
    }
}

@Suite("DNS over UDP")
struct DNSClientTests {
    @Test("SRV records of both services come back from a real UDP server; a stray answer with another id is ignored")
    func lookUp() async throws {
        let server = try await LoopbackDNSServer { id, name, type in
            var builder = ResponseBuilder(id: id, question: name, type: type)
            switch (name, type) {
            case ("_xmpps-client._tcp.example.test", 33):
                builder.srv(priority: 5, weight: 1, port: 5223, target: "node1.example.test")
            case ("_xmpp-client._tcp.example.test", 33):
                builder.srv(priority: 10, weight: 1, port: 5222, target: "node1.example.test")
                builder.srv(priority: 10, weight: 1, port: 5232, target: "node2.example.test")
            case ("node2.example.test", 1):
                builder.a([127, 0, 0, 2])
            default:
                builder.responseCode = 3
            }
            var stray = ResponseBuilder(id: id &+ 1, question: name, type: type)
            stray.srv(priority: 0, weight: 0, port: 1, target: "wrong.example")
            return [stray.message, builder.message]
        }
        defer { Task { await server.stop() } }
        let discovery = XMPPServiceDiscovery(client: DNSClient(server: server.address))
        let records = await discovery.records(for: "example.test")
        #expect(records.problems.isEmpty)
        #expect(records.directTLS == [SRVRecord(priority: 5, weight: 1, port: 5223, target: "node1.example.test")])
        #expect(Set(records.startTLS.map(\.port)) == [5222, 5232])
        #expect(await discovery.address(of: "node2.example.test") == "127.0.0.2")
        #expect(await discovery.address(of: "node9.example.test") == nil)

        let none = await discovery.records(for: "elsewhere.test")
        var generator = SeededGenerator(seed: 1)
        #expect(none.endpoints(domain: "elsewhere.test", using: &generator) == [XMPPEndpoint(host: "elsewhere.test", port: 5222, directTLS: false)])
        await server.stop()
    }

    @Test("a server that never answers: a timeout after every attempt, and the lookup falls back")
    func silentServer() async throws {
        let server = try await LoopbackDNSServer { _, _, _ in [] }
        let client = DNSClient(server: server.address, timeout: .milliseconds(200), attempts: 2)
        await #expect(throws: DNSError.timeout) { try await client.query("_xmpp-client._tcp.example.test", type: .srv) }
        let records = await XMPPServiceDiscovery(client: client).records(for: "example.test")
        #expect(records.problems.count == 2)
        var generator = SeededGenerator(seed: 1)
        #expect(records.endpoints(domain: "example.test", using: &generator).map(\.port) == [5222])
        await server.stop()
    }

    @Test("a server failure is an error; garbage from the server is an error, not a crash")
    func failures() async throws {
        let server = try await LoopbackDNSServer { id, name, type in
            if name.hasPrefix("fail") {
                var builder = ResponseBuilder(id: id, question: name, type: type)
                builder.responseCode = 2
                return [builder.message]
            }
            return [[UInt8(id >> 8), UInt8(id & 0xFF), 0x81, 0x80, 0, 1, 0, 9]]
        }
        let client = DNSClient(server: server.address, timeout: .milliseconds(500), attempts: 1)
        await #expect(throws: DNSError.serverFailure(responseCode: 2)) { try await client.query("fail.example.test", type: .srv) }
        await #expect(throws: DNSError.self) { try await client.query("garbage.example.test", type: .srv) }
        await server.stop()
    }

    @Test("server addresses: HOST, HOST:PORT, [v6]:PORT; the system's from resolv.conf")
    func serverAddresses() throws {
        #expect(try DNSServerAddress(parsing: "127.0.0.1:5353") == DNSServerAddress(host: "127.0.0.1", port: 5353))
        #expect(try DNSServerAddress(parsing: "10.0.0.1") == DNSServerAddress(host: "10.0.0.1", port: 53))
        #expect(try DNSServerAddress(parsing: "[::1]:5353") == DNSServerAddress(host: "::1", port: 5353))
        #expect(try DNSServerAddress(parsing: "::1") == DNSServerAddress(host: "::1", port: 53))
        #expect(throws: DNSError.self) { try DNSServerAddress(parsing: "127.0.0.1:99999") }
        #expect(throws: DNSError.self) { try DNSServerAddress(parsing: ":53") }
    }
}
