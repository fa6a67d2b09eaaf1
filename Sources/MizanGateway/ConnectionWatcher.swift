import Hummingbird
import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTPTypes

/// Watches one client connection for the client going away (its input closing or the
/// connection dropping) and cancels the work registered for it, while keeping the connection
/// reusable for the next request (keep-alive) when the client stays.
final class ConnectionWatcher: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private struct State {
        var closed = false
        var nextID = 0
        var onClose: [Int: @Sendable () -> Void] = [:]
    }

    private let state = NIOLockedValueBox(State())

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
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
