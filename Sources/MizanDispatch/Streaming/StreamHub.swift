import Foundation
import MizanCore
import Synchronization

/// Hands the events an agent streams for a job to the client request waiting for them, in
/// this gateway process.
final class StreamHub: Sendable {
    private let subscribers = Mutex<[JobID: AsyncStream<JobStreamEvent>.Continuation]>([:])

    /// Starts listening for a job's events; leaving the stream unsubscribes.
    func subscribe(_ id: JobID) -> (AsyncStream<JobStreamEvent>, AsyncStream<JobStreamEvent>.Continuation) {
        let (stream, continuation) = AsyncStream<JobStreamEvent>.makeStream()
        subscribers.withLock { $0[id] = continuation }
        continuation.onTermination = { [weak self] _ in
            self?.subscribers.withLock { _ = $0.removeValue(forKey: id) }
        }
        return (stream, continuation)
    }

    /// Delivers a message to the job's listener.
    /// - Returns: Whether someone is listening (a client that went away is not).
    @discardableResult
    func publish(_ id: JobID, _ message: JobStreamEvent) -> Bool {
        guard let continuation = subscribers.withLock({ $0[id] }) else { return false }
        if case .terminated = continuation.yield(message) { return false }
        return true
    }
}
