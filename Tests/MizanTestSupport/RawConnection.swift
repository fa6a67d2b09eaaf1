import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A plain TCP connection to a loopback port, for tests that speak HTTP byte by byte (broken
/// framing, half-sent heads, slow bodies) and watch when the server closes.
public final class RawConnection: Sendable {
    private let channel: any Channel
    private let collector: Collector

    private init(channel: any Channel, collector: Collector) {
        self.channel = channel
        self.collector = collector
    }

    /// Connects to `127.0.0.1:port`, from `source` (another loopback address, e.g. `127.0.1.7`) when given.
    public static func open(port: Int, from source: String? = nil) async throws -> RawConnection {
        let collector = Collector()
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
        if let source { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
        let channel = try await bootstrap.connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, collector: collector)
    }

    /// Sends text as is; fails once the server has closed the connection.
    public func send(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text))
    }

    /// Everything received so far.
    public var received: String { collector.text }

    /// Whether the server has closed the connection.
    public var isClosed: Bool { !channel.isActive }

    /// Waits until the server closes the connection or `timeout` passes.
    /// - Returns: Whether it closed.
    public func waitForClose(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !channel.isActive { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return !channel.isActive
    }

    /// Waits until the received text contains `text` or `timeout` passes.
    /// - Returns: Whether it arrived.
    public func waitFor(_ text: String, timeout: Duration = .seconds(10)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if received.contains(text) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return received.contains(text)
    }

    /// Closes the connection from this side.
    public func close() {
        channel.close(promise: nil)
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        private let bytes = NIOLockedValueBox([UInt8]())

        var text: String { String(decoding: bytes.withLockedValue { $0 }, as: UTF8.self) }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            bytes.withLockedValue { $0.append(contentsOf: buffer.readableBytesView) }
        }
    }
}
