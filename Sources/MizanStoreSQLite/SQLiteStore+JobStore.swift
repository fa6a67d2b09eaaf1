import Foundation
import MizanCore
import MizanStore

/// The jobs, answered by the job queue (``SQLiteJobQueue``).
extension SQLiteStore {
    /// Inserts an accepted job with its fair tag, unless its idempotency key is taken (then the
    /// job that holds it) or its key's queue is full.
    public func insert(_ job: Job, maxQueued: Int?) async throws -> JobInsertion {
        try await jobQueue.insert(job, maxQueued: maxQueued)
    }

    /// Leases up to `limit` of the jobs the node may take, best first.
    public func lease(nodeID: NodeID, limit: Int, now: Date, headroom: LeaseHeadroom?) async throws -> [LeasedJob] {
        try await jobQueue.lease(nodeID: nodeID, limit: limit, now: now, headroom: headroom)
    }

    /// Applies one completion under its lease.
    public func complete(_ lease: Lease, with completion: JobCompletion, now: Date) async throws -> Job {
        try await jobQueue.complete(lease, with: completion, now: now)
    }

    /// Applies a batch of completions in one write; each applies or is refused alone.
    public func complete(_ completions: [LeaseCompletion], now: Date) async throws -> [Result<Job, MizanError>] {
        try await jobQueue.complete(completions, now: now)
    }

    /// Cancels a live job.
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

    /// Times out a live job.
    public func timeOut(_ id: JobID, now: Date) async throws -> Job {
        try await jobQueue.timeOut(id, now: now)
    }

    /// Times out the live jobs whose deadline has passed.
    public func timeOutExpired(now: Date) async throws -> [Job] {
        try await jobQueue.timeOutExpired(now: now)
    }

    /// Takes back the leases of nodes lost, revoked or unseen since `staleBefore`.
    public func recoverLeases(staleBefore: Date, now: Date) async throws -> [Job] {
        try await jobQueue.recoverLeases(staleBefore: staleBefore, now: now)
    }

    /// The job with `id`.
    public func job(_ id: JobID) async throws -> Job? {
        try await jobQueue.job(id)
    }

    /// The jobs with these ids (those that exist).
    public func jobs(_ ids: [JobID]) async throws -> [Job] {
        try await jobQueue.jobs(ids)
    }

    /// The newest jobs that match `filter`, at most `limit`.
    public func jobs(matching filter: JobFilter, limit: Int) async throws -> [Job] {
        try await jobQueue.jobs(matching: filter, limit: limit)
    }

    /// How many jobs are queued, by model.
    public func queueDepth() async throws -> [String: Int] {
        try await jobQueue.queueDepth()
    }

    /// The jobs leased to a node, oldest first.
    public func leasedJobs(nodeID: NodeID) async throws -> [Job] {
        try await jobQueue.leasedJobs(nodeID: nodeID)
    }
}
