import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTPTypes

/// Watches one client connection for the client going away (its input closing or the
/// connection dropping) and cancels the work registered for it, while keeping the connection
/// reusable for the next request (keep-alive) when the client stays.
///
/// It also closes a connection whose request was answered before its body was read (a 401
/// before an 8 MB upload, or any request with `Connection: close`): the response goes out,
/// the gateway's side of the connection is shut, and the connection is closed soon after,
/// instead of leaving the client blocked on a body nobody reads.
final class ConnectionWatcher: ChannelDuplexHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private struct State {
        var closed = false
        var nextID = 0
        var onClose: [Int: @Sendable () -> Void] = [:]
        /// Request heads read, request ends read, and responses ended on this connection.
        /// A client may send its next request before the last response's end was written (it
        /// has the whole body by its length), so requests are matched to responses by number.
        var headsRead = 0
        var endsRead = 0
        var responsesEnded = 0
        /// The number of the first request that asked for `Connection: close`.
        var closeAfterResponse: Int?
        /// The number of the response whose head said `Connection: close`.
        var closingResponse: Int?

        /// Whether the next response ends the connection: its request's body was not read
        /// (yet) or the request asked to close.
        var nextResponseCloses: Bool {
            let request = responsesEnded + 1
            return endsRead < request || closeAfterResponse == request || closingResponse == request
        }
    }

    private let state = NIOLockedValueBox(State())
    /// How long a connection answered early stays open for the client to read the answer.
    private let lingerTime: TimeAmount

    init(lingerTime: TimeAmount = .seconds(2)) {
        self.lingerTime = lingerTime
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            let close = head.headerFields[.connection].map { $0.lowercased().contains("close") } ?? false
            state.withLockedValue { state in
                state.headsRead += 1
                if close, state.closeAfterResponse == nil { state.closeAfterResponse = state.headsRead }
            }
        case .end:
            state.withLockedValue { $0.endsRead += 1 }
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.kind != .informational:
            // A response that will end the connection says so in its head, so that the client
            // does not send its next request on a connection about to close.
            let closes = state.withLockedValue { state in
                guard state.nextResponseCloses else { return false }
                state.closingResponse = state.responsesEnded + 1
                return true
            }
            guard closes else { break }
            head.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(head)), promise: promise)
            return
        case .end:
            break
        default:
            context.write(data, promise: promise)
            return
        }
        guard case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        let closeAfter = state.withLockedValue { state in
            defer { state.responsesEnded += 1 }
            return state.nextResponseCloses
        }
        guard closeAfter else {
            context.write(data, promise: promise)
            return
        }
        // Answered before the body was read, or asked to close: send the answer, shut our
        // side, and close the connection once the client had time to read it.
        let channel = context.channel
        let linger = lingerTime
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.cascade(to: promise)
        written.futureResult.whenComplete { _ in
            channel.close(mode: .output, promise: nil)
            channel.eventLoop.scheduleTask(in: linger) { channel.close(promise: nil) }
        }
        context.writeAndFlush(data, promise: written)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { clientWentAway() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        clientWentAway()
        context.fireChannelInactive()
    }

    private func clientWentAway() {
        let handlers = state.withLockedValue { state -> [@Sendable () -> Void] in
            state.closed = true
            defer { state.onClose = [:] }
            return Array(state.onClose.values)
        }
        for handler in handlers { handler() }
    }

    /// Runs `operation`, cancelling it if the client goes away first.
    func cancellingOnClose<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let (gone, goneContinuation) = AsyncStream<Void>.makeStream()
        let id = state.withLockedValue { state -> Int? in
            guard !state.closed else { return nil }
            state.nextID += 1
            state.onClose[state.nextID] = { goneContinuation.finish() }
            return state.nextID
        }
        guard let id else { throw CancellationError() }
        defer {
            _ = state.withLockedValue { $0.onClose.removeValue(forKey: id) }
            goneContinuation.finish()
        }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                for await _ in gone {}
                return nil
            }
            group.addTask { try await operation() }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let value = result { return value }
                // The client went away: cancel the operation and report it.
                group.cancelAll()
                throw CancellationError()
            }
            throw CancellationError()
        }
    }
}

extension GatewayRequestContext {
    /// Runs `operation`, cancelling it when this request's client goes away; the connection
    /// stays open for the client's next request otherwise.
    func cancellingOnDisconnect<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        guard let channel, let watcher = try? await channel.pipeline.handler(type: ConnectionWatcher.self).get() else {
            return try await operation()
        }
        return try await watcher.cancellingOnClose(operation)
    }
}
