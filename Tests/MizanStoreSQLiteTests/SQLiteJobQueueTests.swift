import Foundation
import MizanCore
import MizanStore
import MizanStoreSQLite
import Testing

@Suite("SQLite job queue", .timeLimit(.minutes(1)))
struct SQLiteJobQueueTests {
    /// A job queue on a fresh file, with one registered node of model m1 (`slots` slots).
    func withQueue(slots: Int = 8, _ body: (SQLiteJobQueue, Node, SQLiteFile) async throws -> Void) async throws {
        try await withSQLiteFile { file, _ in
            let nodes = SQLiteNodeRegistry(connections: file.connections)
            let queue = SQLiteJobQueue(connections: file.connections, nodes: nodes)
            let now = Date()
            _ = try await nodes.createNode(Node(name: "n", createdAt: now), registrationTokenHash: Data([1]))
            let node = try await nodes.registerNode(
                registrationTokenHash: Data([1]), nodeTokenHash: Data([2]), report: NodeReport(models: ["m1"], maxConcurrency: slots),
                now: now)
            try await body(queue, node, file)
        }
    }

    func job(priority: Int = 0, key: String? = nil, deadline: TimeInterval = 600) -> Job {
        Job(
            requestID: "r", model: "m1", body: Data(#"{"model":"m1"}"#.utf8), deadline: Date() + deadline, priority: priority,
            idempotencyKey: key)
    }

    @Test func anIdempotencyKeyInsertsOnceAndFindsItsJob() async throws {
        try await withQueue { queue, _, _ in
            let first = try await queue.insert(job(key: "k"))
            let second = try await queue.insert(job(key: "k"))
            #expect(first.inserted && !second.inserted && second.job.id == first.job.id)
            #expect(try await queue.queueDepth() == ["m1": 1])
            // A job without a key whose id is taken is a conflict.
            let plain = try await queue.insert(job()).job
            await #expect(throws: MizanError.self) { _ = try await queue.insert(plain) }
        }
    }

    @Test func aLeaseTakesTheBestJobsUpToTheNodesSlotsAndKeepsThemForTheirCompletion() async throws {
        try await withQueue(slots: 2) { queue, node, file in
            let low = try await queue.insert(job(priority: 0)).job
            let high = try await queue.insert(job(priority: 5)).job
            _ = try await queue.insert(job(priority: 1))
            let now = Date()
            let leased = try await queue.lease(nodeID: node.id, limit: 10, now: now)
            #expect(leased.map(\.job.priority) == [5, 1], "the best two, best first")
            #expect(leased.allSatisfy { $0.job.state == .leased && $0.job.nodeID == node.id && $0.job.leasedAt == now })
            #expect(try await queue.lease(nodeID: node.id, limit: 10, now: now).isEmpty, "the node is full")
            #expect(try await queue.leasedJobs(nodeID: node.id).map(\.id).sorted() == leased.map(\.job.id).sorted())
            // The kept job's success is one statement, and reads nothing back.
            let before = file.connections.statements.value
            let done = try await queue.complete(
                leased[0].lease, with: .succeeded(result: Data("{}".utf8), usage: nil), now: now + 1)
            #expect(file.connections.statements.value - before == 1)
            #expect(done.id == high.id && done.state == .succeeded && done.finishedAt == now + 1)
            #expect(try await queue.job(high.id) == done, "the job returned is the stored one")
            #expect(try await queue.jobs(matching: JobFilter(state: .accepted), limit: 10).map(\.id) == [low.id])
        }
    }

    @Test func aRetryableFailureRequeuesAndAnotherFailsTheJob() async throws {
        try await withQueue { queue, node, _ in
            _ = try await queue.insert(job())
            let now = Date()
            let first = try #require(try await queue.lease(nodeID: node.id, limit: 1, now: now).first)
            let requeued = try await queue.complete(
                first.lease, with: .failed(code: "bad_output", message: "x", retryable: true), now: now + 1)
            #expect(requeued.state == .accepted && requeued.attempt == 2 && requeued.earlierAttempts.count == 1)
            // The first lease is over: its completion is refused.
            await #expect(throws: MizanError.self) {
                _ = try await queue.complete(first.lease, with: .succeeded(result: Data("{}".utf8), usage: nil), now: now + 2)
            }
            let second = try #require(try await queue.lease(nodeID: node.id, limit: 1, now: now + 2).first)
            let failed = try await queue.complete(
                second.lease, with: .failed(code: "bad_output", message: "x", retryable: false), now: now + 3)
            #expect(failed.state == .failed && failed.errorCode == "bad_output")
        }
    }

    @Test func sweepsTimeOutExpiredJobsAndTakeBackALostNodesLeases() async throws {
        try await withQueue { queue, node, _ in
            let expired = try await queue.insert(job(deadline: -1)).job
            let leasedJob = try await queue.insert(job()).job
            let cancelled = try await queue.insert(job()).job
            _ = try await queue.cancel(cancelled.id, now: Date())
            let now = Date()
            let leased = try await queue.lease(nodeID: node.id, limit: 8, now: now)
            #expect(leased.map(\.job.id) == [leasedJob.id], "an expired job is not leased")
            let timedOut = try await queue.timeOutExpired(now: now + 2)
            #expect(timedOut.map(\.id) == [expired.id] && timedOut.first?.state == .timedOut)
            let recovered = try await queue.recoverLeases(of: node.id, now: now + 3)
            #expect(recovered.map(\.id) == [leasedJob.id] && recovered.first?.state == .accepted && recovered.first?.attempt == 2)
            #expect(try await queue.job(cancelled.id)?.state == .failed, "a cancelled job is finished")
            #expect(try await queue.jobs([expired.id, cancelled.id, JobID()]).count == 2)
        }
    }

    @Test func aBatchOfSuccessesIsOneUpdatePerKindPaddedToAPowerOfTwo() {
        let node = NodeID()
        let completions = (0..<5).map { _ in
            LeaseCompletion(
                lease: Lease(jobID: JobID(), attempt: 1, nodeID: node), completion: .succeeded(result: Data("{}".utf8), usage: nil))
        }
        let fences = CompletionBatch.fences(of: completions)
        #expect(fences.map(\.node) == Array(repeating: node.description, count: 5))
        // Two of them kept from their lease (by row number), the other three by id.
        var kept: [CompletionBatch.Kept?] = Array(repeating: nil, count: 5)
        kept[1] = CompletionBatch.Kept(job: job(), seq: 11)
        kept[3] = CompletionBatch.Kept(job: job(), seq: 13)
        let updates = CompletionBatch.succeededUpdates(completions, fences, kept: kept, refused: [:], now: Date())
        #expect(updates.map(\.lean) == [true, false])
        #expect(updates.map(\.indices) == [[1, 3], [0, 2, 4]])
        // The time, then seven binds per row: two rows, then three padded to four.
        #expect(updates.map(\.binds.count) == [1 + 2 * 7, 1 + 4 * 7])
        #expect(updates[0].binds[1] == .integer(11) && updates[1].binds[1] == .text(fences[0].job))
    }
}

@Suite("SQLite leased jobs")
struct LeasedJobsTests {
    func leased() -> (LeasedJob, seq: Int) {
        let node = NodeID()
        let job = Job(requestID: "r", model: "m1", body: Data("{}".utf8), deadline: Date() + 600)
        return (LeasedJob(job: job, lease: Lease(jobID: job.id, attempt: 1, nodeID: node)), seq: 7)
    }

    @Test func aKeptJobIsTakenByOneCompletionUntilReleased() {
        let kept = LeasedJobs()
        let item = leased()
        kept.keep([item])
        guard case .kept(let job, let seq) = kept.take(item.0.lease) else {
            Issue.record("the job is kept")
            return
        }
        #expect(job == item.0.job && seq == 7)
        guard case .completing = kept.take(item.0.lease) else {
            Issue.record("a second completion finds it being completed")
            return
        }
        kept.forget(item.0.job.id)
        guard case .completing = kept.take(item.0.lease) else {
            Issue.record("a job being completed is not forgotten")
            return
        }
        kept.release([item.0.lease])
        guard case .none = kept.take(item.0.lease) else {
            Issue.record("a released job is gone")
            return
        }
    }

    @Test func aJobUnderAnotherLeaseOrForgottenIsNotKept() {
        let kept = LeasedJobs()
        let item = leased()
        kept.keep([item])
        let other = Lease(jobID: item.0.job.id, attempt: 2, nodeID: item.0.lease.nodeID)
        guard case .none = kept.take(other) else {
            Issue.record("another lease of the job finds nothing")
            return
        }
        kept.forget(item.0.job.id)
        guard case .none = kept.take(item.0.lease) else {
            Issue.record("a forgotten job is gone")
            return
        }
    }
}
