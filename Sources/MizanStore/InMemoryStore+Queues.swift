import Foundation
import MizanCore
import Synchronization

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
