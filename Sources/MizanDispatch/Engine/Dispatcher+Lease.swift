import Dispatch
import Foundation
import Logging
import MizanCore
import MizanStore

extension Dispatcher {
    /// Leases work for a node by long-poll: returns at once when jobs for its models are
    /// queued, otherwise waits for an availability event until `wait` passes.
    ///
    /// The store enforces the node's `maxConcurrency`; the node's own claim is not trusted.
    /// - Parameters:
    ///   - node: The authenticated node (from ``authenticateNode(token:)``).
    ///   - limit: The most jobs to take (capped by ``Configuration/maxLeaseBatch``).
    ///   - wait: How long to wait for work; `nil` uses the default, capped by the maximum.
    /// - Returns: The leased jobs, possibly none when the wait passed.
    /// - Throws: `MizanError` `unauthorized` for a revoked node, or a store error.
    public func lease(for node: Node, limit: Int, wait: Duration? = nil) async throws -> [LeasedJob] {
        // A node that leases is back (its channel dropped and it leases over HTTP, or again).
        if node.disconnectedAt != nil { try await markConnected(node.id) }
        let limit = min(max(0, limit), configuration.maxLeaseBatch)
        let waitFor = min(max(.zero, wait ?? configuration.defaultLeaseWait), configuration.maxLeaseWait)
        let until = ContinuousClock.now.advanced(by: waitFor)
        while true {
            let signal = Signal()
            waiters.waitForWork(models: node.models, signal)
            defer { waiters.stopWaitingForWork(models: node.models, signal) }
            let headroom = headroom(for: node)
            let leased = try await store.lease(nodeID: node.id, limit: limit, now: now(), headroom: headroom)
            if !leased.isEmpty {
                for job in leased { metrics.leased(job.job) }
                return leased
            }
            if limit == 0 || ContinuousClock.now >= until || Task.isCancelled { return [] }
            // While headroom is kept, a finished job wakes this wait too (``slotFreed(_:)``).
            _ = await signal.wait(until: until)
            if Task.isCancelled { return [] }
        }
    }

    /// The slots a lease for `node` keeps for live traffic: ``Configuration/Scheduling/liveHeadroom``
    /// while a request above the `batch` class came within ``Configuration/Scheduling/liveWindow``.
    func headroom(for node: Node) -> LeaseHeadroom? {
        let slots = configuration.scheduling.liveHeadroom
        guard slots > 0, node.maxConcurrency > slots else { return nil }
        let seen = liveSeen.load(ordering: .relaxed)
        guard seen != 0 else { return nil }
        let since = Duration.nanoseconds(Self.uptimeNanoseconds() - seen)
        guard since < configuration.scheduling.liveWindow else { return nil }
        return LeaseHeadroom(slots: slots, minimumRank: PriorityClass.standard.rank)
    }

    /// Nanoseconds on the uptime clock (never 0 once running).
    static func uptimeNanoseconds() -> Int64 {
        return Int64(DispatchTime.now().uptimeNanoseconds) | 1
    }

    /// Reports a job's result under the node's lease.
    /// - Parameters:
    ///   - lease: The lease, built from the authenticated node's id and the attempt it quotes.
    ///   - result: The response body.
    ///   - usage: Token usage, as the local provider reported it (or `nil`).
    /// - Returns: The succeeded job.
    /// - Throws: `MizanError` `leaseConflict` (409) when the lease is not current, `jobNotFound`.
    @discardableResult
    public func complete(_ lease: Lease, result: Data, usage: TokenUsage?) async throws -> Job {
        let job = try await store.complete(lease, with: .succeeded(result: result, usage: usage), now: now())
        waiters.deliver(CollectionOfOne(job))
        slotFreed(CollectionOfOne(job))
        return job
    }

    /// Wakes the leases waiting for the models of jobs that freed their slots, while headroom is
    /// kept: a kept slot opens to queued work when another of the node's slots frees, which queues
    /// nothing new that would wake them.
    func slotFreed(_ jobs: some Collection<Job>) {
        guard configuration.scheduling.liveHeadroom > 0, liveSeen.load(ordering: .relaxed) != 0,
            Duration.nanoseconds(Self.uptimeNanoseconds() - liveSeen.load(ordering: .relaxed)) < configuration.scheduling.liveWindow
        else { return }
        for model in Set(jobs.lazy.filter { $0.state != .accepted }.map(\.model)) {
            waiters.handle(.jobsAvailable(model: model, count: 1))
        }
    }

    /// Reports several jobs' results at once (an agent flushing finished work); the store may
    /// apply them in one write. Build each lease from the authenticated node's id.
    /// - Parameter completions: The leases and their results.
    /// - Returns: For each, the job after the write or why it was refused (409 for a stale lease).
    /// - Throws: A store error when the write as a whole fails.
    public func complete(_ completions: [LeaseCompletion]) async throws -> [Result<Job, MizanError>] {
        let results = try await store.complete(completions, now: now())
        let jobs = results.compactMap { try? $0.get() }
        waiters.deliver(jobs)
        slotFreed(jobs)
        return results
    }

    /// Reports a job's failure under the node's lease. A retryable failure (nothing was
    /// produced yet) is requeued for another node while attempts and the deadline allow.
    /// - Parameters:
    ///   - lease: The lease, built from the authenticated node's id and the attempt it quotes.
    ///   - code: A machine-readable code.
    ///   - message: A message for the client.
    ///   - retryable: Whether another node may try.
    /// - Returns: The job after the write (`accepted` again when requeued).
    /// - Throws: `MizanError` `leaseConflict` (409) when the lease is not current, `jobNotFound`.
    @discardableResult
    public func fail(_ lease: Lease, code: String, message: String, retryable: Bool) async throws -> Job {
        let job = try await store.complete(lease, with: .failed(code: code, message: message, retryable: retryable), now: now())
        waiters.deliver(CollectionOfOne(job))
        slotFreed(CollectionOfOne(job))
        if job.state == .accepted {
            logger.info(
                "job requeued after retryable failure", metadata: ["mizan.job.id": "\(lease.jobID)", "mizan.node.id": "\(lease.nodeID)"])
        }
        return job
    }
}
