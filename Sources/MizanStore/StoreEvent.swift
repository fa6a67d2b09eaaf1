import MizanCore
import Synchronization

/// A change other parts of the system wait on. Stores publish these after the change is
/// durable; a store shared by several processes delivers the other processes' events too.
public enum StoreEvent: Sendable, Equatable {
    /// `count` jobs for `model` became available to lease (new or requeued).
    case jobsAvailable(model: String, count: Int)
    /// A job reached a terminal state.
    case jobFinished(id: JobID, state: JobState)
    /// Events may have been missed (a shared store's listener reconnected): every waiter
    /// should look at the store again.
    case resync
    /// Server-sent event data of a streaming job, relayed from the gateway instance its node
    /// streams to, to the instance where its client waits; `end` closes the stream.
    case streamed(id: JobID, data: [String], end: Bool)
}

extension StoreEvent {
    /// The events announcing that `jobs` changed: one finish per terminal job, and per model
    /// one availability event counting the jobs back in the queue.
    /// - Parameter jobs: Jobs after a write.
    /// - Returns: The events, finishes first.
    public static func describing(_ jobs: [Job]) -> [StoreEvent] {
        var events: [StoreEvent] = []
        var available: [String: Int] = [:]
        for job in jobs {
            if job.state == .accepted {
                available[job.model, default: 0] += 1
            } else if job.state.isTerminal {
                events.append(.jobFinished(id: job.id, state: job.state))
            }
        }
        return events + available.sorted { $0.key < $1.key }.map { .jobsAvailable(model: $0.key, count: $0.value) }
    }
}

/// A list of event handlers that a store calls after each change.
///
/// Handlers run on the thread that made the change, outside any store lock; they must
/// return quickly (resume a continuation, not await).
public final class StoreEventHub: Sendable {
    private let handlers = Mutex<[@Sendable (StoreEvent) -> Void]>([])

    /// Creates an empty hub.
    public init() {}

    /// Adds a handler called for every later event.
    /// - Parameter handler: The handler.
    public func add(_ handler: @escaping @Sendable (StoreEvent) -> Void) {
        handlers.withLock { $0.append(handler) }
    }

    /// Delivers events to every handler.
    /// - Parameter events: The events, in order.
    public func publish(_ events: [StoreEvent]) {
        guard !events.isEmpty else { return }
        let current = handlers.withLock { $0 }
        for event in events {
            for handler in current { handler(event) }
        }
    }

    /// Delivers one event to every handler.
    /// - Parameter event: The event.
    public func publish(_ event: StoreEvent) { publish([event]) }
}
