import Foundation
import MizanCore
import MizanStore

/// The jobs, kept by the ``PostgresJobQueue``; streamed output relayed by the ``PostgresEventChannel``.
extension PostgresStore: JobStore {
    /// Inserts an accepted job with its fair tag, or answers the job already stored under its
    /// idempotency key; refused when its key's queue is full.
    public func insert(_ job: Job, maxQueued: Int?) async throws -> JobInsertion {
        try await jobQueue.insert(job, maxQueued: maxQueued)
    }

    /// Leases up to `limit` queued jobs to a node, within its free capacity.
    public func lease(nodeID: NodeID, limit: Int, now: Date, headroom: LeaseHeadroom?) async throws -> [LeasedJob] {
        try await jobQueue.lease(nodeID: nodeID, limit: limit, now: now, headroom: headroom)
    }

    /// Ends a lease: the job succeeds, fails, or is requeued.
    public func complete(_ lease: Lease, with completion: JobCompletion, now: Date) async throws -> Job {
        try await jobQueue.complete(lease, with: completion, now: now)
    }

    /// Applies every success of the batch in one statement (one round trip, one commit);
    /// failures, which may requeue, go one by one.
    public func complete(_ completions: [LeaseCompletion], now: Date) async throws -> [Result<Job, MizanError>] {
        try await jobQueue.complete(completions, now: now)
    }

    /// Cancels a queued or leased job.
    public func cancel(_ id: JobID, now: Date) async throws -> Job {
        try await jobQueue.cancel(id, now: now)
    }

    /// Withdraws a queued job for a spill.
    public func withdraw(_ id: JobID, now: Date) async throws -> Job {
        try await jobQueue.withdraw(id, now: now)
    }

    /// Raises long-waiting queued jobs by one class.
    public func promote(waitingSince: Date, now: Date) async throws -> Int {
        try await jobQueue.promote(waitingSince: waitingSince, now: now)
    }

    /// Times out a queued or leased job.
    public func timeOut(_ id: JobID, now: Date) async throws -> Job {
        try await jobQueue.timeOut(id, now: now)
    }

    /// Times out every live job whose deadline has passed.
    public func timeOutExpired(now: Date) async throws -> [Job] {
        try await jobQueue.timeOutExpired(now: now)
    }

    /// Requeues (or fails) the jobs leased to nodes revoked or not seen since `staleBefore`.
    public func recoverLeases(staleBefore: Date, now: Date) async throws -> [Job] {
        try await jobQueue.recoverLeases(staleBefore: staleBefore, now: now)
    }

    /// Deletes jobs that finished before `finishedBefore`.
    public func prune(finishedBefore: Date) async throws -> Int {
        try await jobQueue.prune(finishedBefore: finishedBefore)
    }

    /// The job with `id`, if any.
    public func job(_ id: JobID) async throws -> Job? {
        try await jobQueue.job(id)
    }

    /// The jobs among `ids` that exist.
    public func jobs(_ ids: [JobID]) async throws -> [Job] {
        try await jobQueue.jobs(ids)
    }

    /// The newest jobs matching `filter`, newest first.
    public func jobs(matching filter: JobFilter, limit: Int) async throws -> [Job] {
        try await jobQueue.jobs(matching: filter, limit: limit)
    }

    /// Queued jobs per model.
    public func queueDepth() async throws -> [String: Int] {
        try await jobQueue.queueDepth()
    }

    /// The jobs leased to a node.
    public func leasedJobs(nodeID: NodeID) async throws -> [Job] {
        try await jobQueue.leasedJobs(nodeID: nodeID)
    }

    /// Relays a streaming job's event data to the other instances through `NOTIFY` (in order:
    /// each notification is sent after the previous one committed), split so every payload fits.
    public func relayStream(_ id: JobID, data: [String], end: Bool) async throws -> Bool {
        try await events.relay(id, data: data, end: end)
        return true
    }
}
