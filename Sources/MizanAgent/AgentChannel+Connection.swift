import Foundation
import MizanCore
import NIOCore
import Synchronization

extension AgentChannel {
    /// One open channel: its upload side and the calls waiting for replies.
    final class Connection: Sendable {
        let token: String
        private let upload: AsyncStream<ByteBuffer>.Continuation
        private struct Calls {
            var waiting: [Int: CheckedContinuation<AgentWire.ChannelFrame, any Error>] = [:]
            var early: [Int: AgentWire.ChannelFrame] = [:]
            var closed = false
        }
        private let calls = Mutex(Calls())
        private let encoder = AgentWire.encoder()

        init(token: String, upload: AsyncStream<ByteBuffer>.Continuation) {
            self.token = token
            self.upload = upload
        }

        var isClosed: Bool { calls.withLock { $0.closed } }

        /// Sends a frame.
        func send(_ frame: AgentWire.ChannelFrame) throws {
            guard !isClosed else { throw AgentClientError(.unreachable, message: "the channel to the gateway closed") }
            upload.yield(ByteBuffer(bytes: try frame.line(fallback: encoder)))
        }

        /// Waits for the reply to call `id` (sent, or about to be).
        func reply(to id: Int) async throws -> AgentWire.ChannelFrame {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    let ready: Result<AgentWire.ChannelFrame, any Error>? = calls.withLock { calls in
                        if let frame = calls.early.removeValue(forKey: id) { return .success(frame) }
                        if calls.closed { return .failure(AgentClientError(.unreachable, message: "the channel to the gateway closed")) }
                        if Task.isCancelled { return .failure(CancellationError()) }
                        calls.waiting[id] = continuation
                        return nil
                    }
                    if let ready { continuation.resume(with: ready) }
                }
            } onCancel: {
                calls.withLock { $0.waiting.removeValue(forKey: id) }?.resume(throwing: CancellationError())
                // The gateway stops waiting too (a lease that would take a job for nobody).
                try? send(AgentWire.ChannelFrame(.cancel, id: id))
            }
        }

        /// Hands a reply to its call (kept a moment when the call is not waiting yet).
        func deliver(_ frame: AgentWire.ChannelFrame) {
            let waiter = calls.withLock { calls in
                guard let waiter = calls.waiting.removeValue(forKey: frame.id) else {
                    if calls.early.count < 4096 { calls.early[frame.id] = frame }
                    return nil as CheckedContinuation<AgentWire.ChannelFrame, any Error>?
                }
                return waiter
            }
            waiter?.resume(returning: frame)
        }

        /// Ends the channel: every waiting call fails as unreachable (its caller retries).
        func close() {
            let waiters = calls.withLock { calls in
                calls.closed = true
                defer { calls.waiting = [:] }
                return Array(calls.waiting.values)
            }
            upload.finish()
            for waiter in waiters { waiter.resume(throwing: AgentClientError(.unreachable, message: "the channel to the gateway closed")) }
        }
    }
}
