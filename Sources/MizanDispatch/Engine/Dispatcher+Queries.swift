import Foundation
import MizanCore
import MizanStore

extension Dispatcher {
    /// Checks that the store answers (for a readiness probe).
    /// - Throws: The store's error when it does not.
    public func ping() async throws {
        try await store.ping()
    }

    /// A job as the store has it now.
    /// - Parameter id: The job.
    /// - Returns: The job, or `nil` when there is none (or it was pruned).
    public func job(_ id: JobID) async throws -> Job? {
        try await store.job(id)
    }

    /// Jobs, newest first.
    /// - Parameters:
    ///   - state: Only jobs in this state, or all.
    ///   - limit: The most to return.
    /// - Returns: The jobs.
    public func jobs(state: JobState? = nil, limit: Int) async throws -> [Job] {
        try await store.jobs(matching: JobFilter(state: state), limit: limit)
    }

    /// Jobs that match a filter (a state, a model, older than a job), newest first.
    /// - Parameters:
    ///   - filter: Which jobs.
    ///   - limit: The most to return.
    /// - Returns: The jobs.
    public func jobs(matching filter: JobFilter, limit: Int) async throws -> [Job] {
        try await store.jobs(matching: filter, limit: limit)
    }

    /// The number of jobs waiting for a node, per model (models with none are left out).
    /// - Returns: Model to queued count.
    public func queueDepth() async throws -> [String: Int] {
        try await store.queueDepth()
    }

    /// Whether a node counts as capacity now: its ``condition(of:now:)`` is healthy (active,
    /// connected, heard from within ``Configuration/nodeStaleAfter``, its local server answering).
    /// - Parameters:
    ///   - node: The node.
    ///   - now: The current time.
    /// - Returns: Whether requests may count on it.
    public func isHealthy(_ node: Node, now: Date? = nil) -> Bool {
        condition(of: node, now: now).takesRequests
    }

    /// The nodes that count as capacity now (see ``isHealthy(_:now:)``), as the store has them.
    /// - Returns: The healthy nodes, oldest first.
    public func healthyNodes() async throws -> [Node] {
        let now = now()
        return try await nodes().filter { isHealthy($0, now: now) }
    }
}
