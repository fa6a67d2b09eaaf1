import Foundation
import MizanCore
import Synchronization

/// A ``DispatchStore`` held in process memory: fast, and gone when the process ends.
/// It serves one gateway instance; several instances share ``DispatchStore``s backed by a database.
public final class InMemoryStore: DispatchStore, BatchStore {
    struct State {
        var jobs: [JobID: Job] = [:]
        var live: Set<JobID> = []
        /// The queue of each model on each endpoint.
        var queues: [QueueKey: JobQueueHeap] = [:]
        var queued: [String: Int] = [:]
        /// Each key's queued jobs, for its `maxQueued` (a job without a key under "").
        var queuedByKey: [String: Int] = [:]
        /// Each class's virtual time: the tag of the latest job leased there (it never goes back).
        var clocks: [ClassKey: Double] = [:]
        /// Each key's queued jobs per class and the latest tag among them.
        var keyTags: [KeyClassKey: (count: Int, last: Double)] = [:]
        var leasedByNode: [NodeID: Set<JobID>] = [:]
        var idempotency: [String: JobID] = [:]
        var nodes: [NodeID: Node] = [:]
        var registrationHashes: [Data: NodeID] = [:]
        var tokenHashes: [Data: NodeID] = [:]
        /// Finished jobs, oldest first, so the store keeps at most `maxFinishedJobs` of them.
        var finished = FinishedJobs()
        var maxFinishedJobs = 10_000
    }

    let state: Mutex<State>
    let access: Mutex<AccessState>
    let batchState = Mutex(BatchState())
    let hub = StoreEventHub()

    /// Creates an empty store.
    /// - Parameters:
    ///   - maxFinishedJobs: The most finished jobs kept (10,000, about 2 KB each); past it the
    ///     oldest finished job is dropped at once, before the sweeper's retention would.
    ///   - maxUsageRecords: The most recent usage records kept for queries by time and for
    ///     ``usageRecorded(requestID:createdAt:)`` (100,000, about 0.25 KB each; at least 1,000).
    ///     Past it the oldest tenth goes; the sums of ``usageSummary()`` cover every record.
    public init(maxFinishedJobs: Int = 10_000, maxUsageRecords: Int = 100_000) {
        var initial = State()
        initial.maxFinishedJobs = max(0, maxFinishedJobs)
        state = Mutex(initial)
        access = Mutex(AccessState(recentLimit: max(1_000, maxUsageRecords)))
    }

    public func addEventHandler(_ handler: @escaping @Sendable (StoreEvent) -> Void) {
        hub.add(handler)
    }

    // MARK: Jobs

    public func insert(_ job: Job, maxQueued: Int?) async throws -> JobInsertion {
        precondition(job.state == .accepted, "only accepted jobs are inserted")
        let insertion: JobInsertion = try state.withLock { state in
            if let key = job.idempotencyKey, let existing = state.idempotency[key], let found = state.jobs[existing] {
                return JobInsertion(job: found, inserted: false)
            }
            if let maxQueued, state.queuedByKey[job.apiKeyID ?? "", default: 0] >= maxQueued {
                throw JobErrorCode.queueFull(maxQueued)
            }
            guard state.jobs[job.id] == nil else { throw MizanError(.conflict, "A job with id \(job.id) exists.") }
            var job = job
            state.enqueueNew(&job)
            state.jobs[job.id] = job
            state.live.insert(job.id)
            if let key = job.idempotencyKey { state.idempotency[key] = job.id }
            return JobInsertion(job: job, inserted: true)
        }
        if insertion.inserted { hub.publish(.jobsAvailable(model: job.model, count: 1)) }
        return insertion
    }

    public func lease(nodeID: NodeID, limit: Int, now: Date, headroom: LeaseHeadroom?) async throws -> [LeasedJob] {
        try state.withLock { state in
            guard var node = state.nodes[nodeID] else {
                throw MizanError(.nodeNotFound, "No node with id \(nodeID).")
            }
            guard node.status != .revoked else { throw MizanError(.invalidNodeToken, "The node was revoked.") }
            node.lastSeen = now
            state.nodes[nodeID] = node
            guard node.canLease else { return [] }
            let held = state.leasedByNode[nodeID]?.count ?? 0
            var wanted = min(limit, node.maxConcurrency - held)
            let open = headroom?.open(of: node.maxConcurrency - held) ?? wanted
            var leased: [LeasedJob] = []
            while wanted > 0,
                let id = state.popBest(
                    models: node.models, endpoints: node.endpoints, node: nodeID, now: now,
                    minimumRank: leased.count < open ? nil : headroom?.minimumRank)
            {
                guard var job = state.jobs[id] else { continue }
                job.state = .leased
                job.nodeID = nodeID
                job.leasedAt = now
                job.updatedAt = now
                state.jobs[id] = job
                state.leasedByNode[nodeID, default: []].insert(id)
                leased.append(LeasedJob(job: job, lease: job.lease!))
                wanted -= 1
            }
            return leased
        }
    }

    public func complete(_ lease: Lease, with completion: JobCompletion, now: Date) async throws -> Job {
        let (job, events): (Job, [StoreEvent]) = try state.withLock { state in
            guard var job = state.jobs[lease.jobID] else {
                throw MizanError(.jobNotFound, "No job with id \(lease.jobID).")
            }
            if let refusal = LeaseCheck.refusal(for: lease, job: job) { throw refusal }
            state.release(job)
            switch completion {
            case .succeeded(let result, let usage):
                job.finish(.succeeded, now: now)
                job.result = result
                job.usage = usage
            case .failed(let code, let message, let retryable):
                if retryable, job.attempt < job.maxAttempts, job.deadline > now {
                    job.requeue(now: now, reason: code)
                    state.jobs[job.id] = job
                    state.enqueue(job)
                    return (job, [.jobsAvailable(model: job.model, count: 1)])
                }
                job.finish(.failed, now: now)
                job.errorCode = code
                job.errorMessage = message
            }
            state.jobs[job.id] = job
            state.retire(job.id)
            return (job, [.jobFinished(id: job.id, state: job.state)])
        }
        hub.publish(events)
        return job
    }

    public func cancel(_ id: JobID, now: Date) async throws -> Job {
        try finishLive(id, now: now, as: .failed, code: JobErrorCode.cancelled, message: "The client cancelled the request.")
    }

    public func withdraw(_ id: JobID, now: Date) async throws -> Job {
        let (job, changed): (Job, Bool) = try state.withLock { state in
            guard var job = state.jobs[id] else { throw MizanError(.jobNotFound, "No job with id \(id).") }
            guard job.state == .accepted else { return (job, false) }
            state.finishLive(
                &job, as: .failed, code: JobErrorCode.spilled, message: "No node took the job in time; a provider route served it.",
                now: now)
            return (job, true)
        }
        if changed { hub.publish(.jobFinished(id: job.id, state: job.state)) }
        return job
    }

    public func promote(waitingSince: Date, now: Date) async throws -> Int {
        state.withLock { $0.promote(waitingSince: waitingSince, now: now) }
    }

    public func timeOut(_ id: JobID, now: Date) async throws -> Job {
        try finishLive(id, now: now, as: .timedOut, code: JobErrorCode.deadlineExceeded, message: "The job's deadline passed.")
    }

    private func finishLive(_ id: JobID, now: Date, as target: JobState, code: String, message: String) throws -> Job {
        let (job, changed): (Job, Bool) = try state.withLock { state in
            guard var job = state.jobs[id] else { throw MizanError(.jobNotFound, "No job with id \(id).") }
            guard !job.state.isTerminal else { return (job, false) }
            state.finishLive(&job, as: target, code: code, message: message, now: now)
            return (job, true)
        }
        if changed { hub.publish(.jobFinished(id: job.id, state: job.state)) }
        return job
    }

    public func timeOutExpired(now: Date) async throws -> [Job] {
        let expired: [Job] = state.withLock { state in
            var expired: [Job] = []
            for id in state.live {
                guard var job = state.jobs[id], job.deadline <= now else { continue }
                state.finishLive(
                    &job, as: .timedOut, code: JobErrorCode.deadlineExceeded,
                    message: "The job's deadline passed.", now: now
                )
                expired.append(job)
            }
            return expired
        }
        hub.publish(expired.map { .jobFinished(id: $0.id, state: $0.state) })
        return expired
    }

    public func recoverLeases(staleBefore: Date, now: Date) async throws -> [Job] {
        let changed: [Job] = state.withLock { state in
            var changed: [Job] = []
            for nodeID in state.leasedByNode.keys {
                let node = state.nodes[nodeID]
                let gone = node == nil || node!.status == .revoked || (node!.lastSeen ?? .distantPast) < staleBefore
                guard gone else { continue }
                changed += state.takeBackLeases(of: nodeID, now: now)
            }
            return changed
        }
        hub.publish(StoreEvent.describing(changed))
        return changed
    }

    public func recoverLeases(of nodeID: NodeID, now: Date) async throws -> [Job] {
        let changed = state.withLock { $0.takeBackLeases(of: nodeID, now: now) }
        hub.publish(StoreEvent.describing(changed))
        return changed
    }

    public func prune(finishedBefore: Date) async throws -> Int {
        state.withLock { state in
            let old = state.jobs.values.filter { job in
                job.state.isTerminal && (job.finishedAt ?? .distantFuture) < finishedBefore
            }
            for job in old {
                state.jobs[job.id] = nil
                if let key = job.idempotencyKey, state.idempotency[key] == job.id { state.idempotency[key] = nil }
            }
            if !old.isEmpty { state.finished.removeAll { state.jobs[$0] == nil } }
            return old.count
        }
    }

    public func job(_ id: JobID) async throws -> Job? {
        state.withLock { $0.jobs[id] }
    }

    public func jobs(_ ids: [JobID]) async throws -> [Job] {
        state.withLock { state in ids.compactMap { state.jobs[$0] } }
    }

    public func jobs(matching filter: JobFilter, limit: Int) async throws -> [Job] {
        state.withLock { state in
            Array(state.jobs.values.filter(filter.matches).sorted { $0.id > $1.id }.prefix(max(0, limit)))
        }
    }

    public func leasedJobs(nodeID: NodeID) async throws -> [Job] {
        state.withLock { state in (state.leasedByNode[nodeID] ?? []).compactMap { state.jobs[$0] }.sorted { $0.id < $1.id } }
    }

    public func queueDepth() async throws -> [String: Int] {
        state.withLock { $0.queued.filter { $0.value > 0 } }
    }
}
