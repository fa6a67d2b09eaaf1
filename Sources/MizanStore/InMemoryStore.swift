import Foundation
import MizanCore
import Synchronization

/// A ``DispatchStore`` held in process memory: fast, and gone when the process ends.
/// It serves one gateway instance; several instances share ``DispatchStore``s backed by a database.
public final class InMemoryStore: DispatchStore {
    struct State {
        var jobs: [JobID: Job] = [:]
        var live: Set<JobID> = []
        /// The queue of each model on each endpoint.
        var queues: [QueueKey: JobQueueHeap] = [:]
        var queued: [String: Int] = [:]
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
    let access = Mutex(AccessState())
    let hub = StoreEventHub()

    /// Creates an empty store.
    /// - Parameter maxFinishedJobs: The most finished jobs kept (10,000, about 2 KB each); past
    ///   it the oldest finished job is dropped at once, before the sweeper's retention would.
    public init(maxFinishedJobs: Int = 10_000) {
        var initial = State()
        initial.maxFinishedJobs = max(0, maxFinishedJobs)
        state = Mutex(initial)
    }

    public func addEventHandler(_ handler: @escaping @Sendable (StoreEvent) -> Void) {
        hub.add(handler)
    }

    // MARK: Jobs

    public func insert(_ job: Job) async throws -> JobInsertion {
        precondition(job.state == .accepted, "only accepted jobs are inserted")
        let insertion: JobInsertion = state.withLock { state in
            if let key = job.idempotencyKey, let existing = state.idempotency[key], let found = state.jobs[existing] {
                return JobInsertion(job: found, inserted: false)
            }
            state.jobs[job.id] = job
            state.live.insert(job.id)
            state.enqueue(job)
            if let key = job.idempotencyKey { state.idempotency[key] = job.id }
            return JobInsertion(job: job, inserted: true)
        }
        if insertion.inserted { hub.publish(.jobsAvailable(model: job.model, count: 1)) }
        return insertion
    }

    public func lease(nodeID: NodeID, limit: Int, now: Date) async throws -> [LeasedJob] {
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
            var leased: [LeasedJob] = []
            while wanted > 0, let id = state.popBest(models: node.models, endpoints: node.endpoints, now: now) {
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
                    job.requeue(now: now)
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
            for (nodeID, ids) in state.leasedByNode {
                let node = state.nodes[nodeID]
                let gone = node == nil || node!.status == .revoked || (node!.lastSeen ?? .distantPast) < staleBefore
                guard gone else { continue }
                for id in ids {
                    guard var job = state.jobs[id] else { continue }
                    state.release(job)
                    if job.attempt < job.maxAttempts, job.deadline > now {
                        job.requeue(now: now)
                        state.jobs[id] = job
                        state.enqueue(job)
                    } else {
                        state.finishLive(
                            &job, as: .failed, code: JobErrorCode.nodeLost,
                            message: "The node running the job was lost and no attempt is left.", now: now
                        )
                    }
                    changed.append(job)
                }
            }
            return changed
        }
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

    public func jobs(state wanted: JobState?, limit: Int) async throws -> [Job] {
        state.withLock { state in
            let all = wanted.map { wanted in state.jobs.values.filter { $0.state == wanted } } ?? Array(state.jobs.values)
            return Array(all.sorted { $0.id > $1.id }.prefix(max(0, limit)))
        }
    }

    public func leasedJobs(nodeID: NodeID) async throws -> [Job] {
        state.withLock { state in (state.leasedByNode[nodeID] ?? []).compactMap { state.jobs[$0] }.sorted { $0.id < $1.id } }
    }

    public func queueDepth() async throws -> [String: Int] {
        state.withLock { $0.queued.filter { $0.value > 0 } }
    }
}

/// A queue: one model's jobs on one endpoint.
struct QueueKey: Hashable, Sendable {
    var model: String
    var endpoint: Endpoint
}

extension InMemoryStore.State {
    mutating func enqueue(_ job: Job) {
        queues[QueueKey(model: job.model, endpoint: job.endpoint), default: JobQueueHeap()].push(.init(priority: job.priority, id: job.id))
        queued[job.model, default: 0] += 1
    }

    /// Removes a leased job from its holder's set.
    mutating func release(_ job: Job) {
        guard let nodeID = job.nodeID else { return }
        leasedByNode[nodeID]?.remove(job.id)
        if leasedByNode[nodeID]?.isEmpty == true { leasedByNode[nodeID] = nil }
    }

    /// Moves a live job to a terminal state and records it.
    mutating func finishLive(_ job: inout Job, as target: JobState, code: String, message: String, now: Date) {
        if job.state == .accepted { queued[job.model, default: 1] -= 1 }
        if job.state == .leased { release(job) }
        job.finish(target, now: now)
        job.errorCode = code
        job.errorMessage = message
        jobs[job.id] = job
        retire(job.id)
    }

    /// Records that a job has reached its terminal state, dropping the oldest finished jobs
    /// past the cap.
    mutating func retire(_ id: JobID) {
        live.remove(id)
        finished.append(id)
        while finished.count > maxFinishedJobs, let oldest = finished.popFirst() {
            guard let job = jobs[oldest], job.state.isTerminal else { continue }
            jobs[oldest] = nil
            if let key = job.idempotencyKey, idempotency[key] == oldest { idempotency[key] = nil }
        }
    }

    /// Pops the best accepted, unexpired job among `models`, dropping stale heap entries.
    mutating func popBest(models: [String], endpoints: [Endpoint], now: Date) -> JobID? {
        while true {
            var bestKey: QueueKey?
            var best: JobQueueHeap.Entry?
            for model in models {
                for endpoint in endpoints {
                    let key = QueueKey(model: model, endpoint: endpoint)
                    guard let top = queues[key]?.first else { continue }
                    if best == nil || top.precedes(best!) {
                        best = top
                        bestKey = key
                    }
                }
            }
            guard let key = bestKey else { return nil }
            let model = key.model
            let entry = queues[key]!.popFirst()!
            guard let job = jobs[entry.id], job.state == .accepted else { continue }
            if job.deadline <= now {
                // Left for the sweeper to time out; it no longer competes for nodes.
                continue
            }
            queued[model, default: 1] -= 1
            return entry.id
        }
    }
}

extension Job {
    /// Moves the job to a terminal state (the caller has checked the transition).
    mutating func finish(_ target: JobState, now: Date) {
        state = target
        finishedAt = now
        updatedAt = now
    }

    /// Puts a leased job back in its queue for another attempt.
    mutating func requeue(now: Date) {
        state = .accepted
        attempt += 1
        nodeID = nil
        updatedAt = now
    }
}
