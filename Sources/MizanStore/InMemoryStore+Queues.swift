import Foundation
import MizanCore
import Synchronization

/// A queue: one model's jobs on one endpoint.
struct QueueKey: Hashable, Sendable {
    var model: String
    var endpoint: Endpoint
}

/// One class of one model's queue, whose fair tags are compared.
struct ClassKey: Hashable, Sendable {
    var model: String
    var priority: Int
}

/// One key's jobs in one class of one model's queue.
struct KeyClassKey: Hashable, Sendable {
    var queue: ClassKey
    var apiKeyID: String?
}

extension InMemoryStore.State {
    /// Queues a new job: its fair tag follows its key's latest queued job in its class, or the
    /// class's virtual time (the tag of the latest job leased there).
    mutating func enqueueNew(_ job: inout Job) {
        let queue = ClassKey(model: job.model, priority: job.priority)
        let clock = clocks[queue] ?? 0
        let previous = keyTags[KeyClassKey(queue: queue, apiKeyID: job.apiKeyID)]
        job.scheduling.fairTag = max(clock, previous.map { $0.last + job.scheduling.increment } ?? clock)
        enqueue(job)
    }

    /// Queues a job with the tag it has (a requeue keeps its place).
    mutating func enqueue(_ job: Job) {
        queues[QueueKey(model: job.model, endpoint: job.endpoint), default: JobQueueHeap()].push(
            .init(priority: job.priority, tag: job.scheduling.fairTag, id: job.id))
        queued[job.model, default: 0] += 1
        queuedByKey[job.apiKeyID ?? "", default: 0] += 1
        let key = KeyClassKey(queue: ClassKey(model: job.model, priority: job.priority), apiKeyID: job.apiKeyID)
        let held = keyTags[key]
        keyTags[key] = (count: (held?.count ?? 0) + 1, last: max(held?.last ?? job.scheduling.fairTag, job.scheduling.fairTag))
    }

    /// Counts a queued job out of its queue (leased, finished or promoted).
    mutating func dequeued(_ job: Job) {
        queued[job.model, default: 1] -= 1
        let owner = job.apiKeyID ?? ""
        queuedByKey[owner, default: 1] -= 1
        if queuedByKey[owner] == 0 { queuedByKey[owner] = nil }
        let key = KeyClassKey(queue: ClassKey(model: job.model, priority: job.priority), apiKeyID: job.apiKeyID)
        if let held = keyTags[key] {
            keyTags[key] = held.count > 1 ? (held.count - 1, held.last) : nil
        }
    }

    /// Raises the queued jobs in their class since `cut` or earlier by one class.
    mutating func promote(waitingSince cut: Date, now: Date) -> Int {
        var risen = 0
        // Each class's head, read once: a job promoted into it takes the head's tag, so the head
        // stays where it was.
        var heads: [ClassKey: Double] = [:]
        for id in live {
            guard var job = jobs[id], job.state == .accepted, let higher = job.priorityClass.promoted,
                (job.scheduling.classSince ?? job.createdAt) <= cut
            else { continue }
            dequeued(job)
            job.priority = higher.rank
            job.scheduling.classSince = now
            // It has waited longest: the head of its new class.
            let queue = ClassKey(model: job.model, priority: job.priority)
            let head = heads[queue] ?? headTag(queue) ?? clocks[queue] ?? 0
            heads[queue] = head
            job.scheduling.fairTag = head
            job.updatedAt = now
            jobs[id] = job
            enqueue(job)
            risen += 1
        }
        return risen
    }

    /// The lowest tag queued in one class of a model's queue.
    func headTag(_ queue: ClassKey) -> Double? {
        var lowest: Double?
        for (key, heap) in queues where key.model == queue.model {
            for entry in heap.entries where entry.priority == queue.priority {
                guard let job = jobs[entry.id], entry.isCurrent(for: job) else { continue }
                lowest = min(lowest ?? entry.tag, entry.tag)
            }
        }
        return lowest
    }

    /// Removes a leased job from its holder's set.
    mutating func release(_ job: Job) {
        guard let nodeID = job.nodeID else { return }
        leasedByNode[nodeID]?.remove(job.id)
        if leasedByNode[nodeID]?.isEmpty == true { leasedByNode[nodeID] = nil }
    }

    /// Takes back every job leased to a node: requeued while attempts and time allow, else failed.
    mutating func takeBackLeases(of nodeID: NodeID, now: Date) -> [Job] {
        var changed: [Job] = []
        for id in leasedByNode[nodeID] ?? [] {
            guard var job = jobs[id] else { continue }
            release(job)
            if job.attempt < job.maxAttempts, job.deadline > now {
                job.requeue(now: now, reason: JobErrorCode.nodeLost)
                jobs[id] = job
                enqueue(job)
            } else {
                finishLive(
                    &job, as: .failed, code: JobErrorCode.nodeLost, message: "The node running the job was lost and no attempt is left.",
                    now: now)
            }
            changed.append(job)
        }
        leasedByNode[nodeID] = nil
        return changed
    }

    /// Moves a live job to a terminal state and records it.
    mutating func finishLive(_ job: inout Job, as target: JobState, code: String, message: String, now: Date) {
        if job.state == .accepted { dequeued(job) }
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

    /// Pops the best accepted, unexpired job among `models` that `node` may take, dropping
    /// stale heap entries (jobs offered first to another node stay queued).
    mutating func popBest(models: [String], endpoints: [Endpoint], node: NodeID, now: Date, minimumRank: Int? = nil) -> JobID? {
        var offeredElsewhere: [(QueueKey, JobQueueHeap.Entry)] = []
        defer { for (key, entry) in offeredElsewhere { queues[key]?.push(entry) } }
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
            // The best job is below the rank a kept slot takes: so is every other.
            if let minimumRank, let best, best.priority < minimumRank { return nil }
            let entry = queues[key]!.popFirst()!
            guard let job = jobs[entry.id], entry.isCurrent(for: job) else { continue }
            if job.deadline <= now {
                // Left for the sweeper to time out; it no longer competes for nodes.
                continue
            }
            guard job.scheduling.allows(node, now: now) else {
                offeredElsewhere.append((key, entry))
                continue
            }
            dequeued(job)
            let queue = ClassKey(model: job.model, priority: job.priority)
            clocks[queue] = max(clocks[queue] ?? 0, job.scheduling.fairTag)
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

    /// Puts a leased job back in its queue for another attempt, keeping the one that ended.
    mutating func requeue(now: Date, reason: String) {
        earlierAttempts.append(
            JobAttempt(attempt: attempt, leasedAt: leasedAt, nodeID: nodeID, endedAt: now, reason: JobAttempt.storedReason(reason)))
        state = .accepted
        attempt += 1
        nodeID = nil
        updatedAt = now
    }
}
