import NIOCore
import Synchronization

/// Caps the connections a gateway holds open at once: past the cap a new connection is
/// closed as soon as it is accepted (the client may retry), so a flood of idle or slow
/// connections cannot use up the process's file descriptors.
final class ConnectionLimit: Sendable {
    /// The most connections open at once.
    let maximum: Int
    private let open = Atomic<Int>(0)

    init(maximum: Int) {
        self.maximum = maximum
    }

    /// Connections open now.
    var current: Int { open.load(ordering: .relaxed) }

    /// A handler for one new connection; it counts the connection while it is in the pipeline.
    func handler() -> Handler {
        Handler(limit: self)
    }

    /// Counts one connection; closes it at once when the cap is reached.
    final class Handler: ChannelInboundHandler, RemovableChannelHandler, Sendable {
        typealias InboundIn = NIOAny
        let limit: ConnectionLimit

        init(limit: ConnectionLimit) {
            self.limit = limit
        }

        func handlerAdded(context: ChannelHandlerContext) {
            let count = limit.open.wrappingAdd(1, ordering: .relaxed).newValue
            if count > limit.maximum { context.close(promise: nil) }
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            limit.open.wrappingSubtract(1, ordering: .relaxed)
        }
    }
}
