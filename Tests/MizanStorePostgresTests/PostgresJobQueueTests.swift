import Foundation
import MizanCore
import MizanPostgresTesting
import MizanStore
import MizanTestSupport
import PostgresNIO
import Testing

@testable import MizanStorePostgres

@Suite("PostgreSQL job queue", .timeLimit(.minutes(2)))
struct PostgresJobQueueTests {
    /// A queue on a fresh, migrated database, its statements counted.
    func withQueue(_ test: @Sendable (PostgresJobQueue, PostgresStoreContext, StatementCounter) async throws -> Void) async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let statements = StatementCounter()
            let context = makeContext(client, statements: statements)
            try await context.client.schema.migrate()
            try await test(PostgresJobQueue(context: context), context, statements)
        }
    }

    @Test func anInsertIsAnnouncedAndIdempotentByKey() async throws {
        try await withQueue { queue, context, statements in
            let log = EventLog(context.events)
            let job = testJob(idempotencyKey: "once")
            let first = try await queue.insert(job)
            #expect(first.inserted && first.job.id == job.id)
            #expect(statements.value == 1, "the insert and its notification are one statement")
            #expect(log.all == [.jobsAvailable(model: "m1", count: 1)], "announced at once on this instance")
            let again = try await queue.insert(testJob(idempotencyKey: "once"))
            #expect(!again.inserted && again.job.id == job.id, "the job stored under the key is answered")
            #expect(log.all.count == 1, "nothing new to announce")
            #expect(try await queue.queueDepth() == ["m1": 1])
        }
    }

    @Test func concurrentLeasesNeverShareAJob() async throws {
        try await withQueue { queue, context, _ in
            for _ in 0..<20 { _ = try await queue.insert(testJob()) }
            var nodes: [NodeID] = []
            for _ in 0..<4 { nodes.append(try await insertActiveNode(context, models: ["m1"], maxConcurrency: 5)) }
            // SKIP LOCKED lets a lease pass over rows another lease holds for the moment: a round
            // may leave some for the next. Rounds of concurrent leases until none is left (bounded).
            var leased: [(NodeID, [LeasedJob])] = []
            for _ in 0..<10 where leased.flatMap(\.1).count < 20 {
                let round = try await withThrowingTaskGroup(of: (NodeID, [LeasedJob]).self) { group in
                    for node in nodes { group.addTask { (node, try await queue.lease(nodeID: node, limit: 10, now: Date())) } }
                    return try await group.reduce(into: [(NodeID, [LeasedJob])]()) { $0.append($1) }
                }
                for (node, jobs) in round {
                    if let index = leased.firstIndex(where: { $0.0 == node }) {
                        leased[index].1 += jobs
                    } else {
                        leased.append((node, jobs))
                    }
                }
            }
            let ids = leased.flatMap { $0.1.map(\.job.id) }
            #expect(ids.count == 20 && Set(ids).count == 20, "every job leased once")
            for (node, jobs) in leased {
                #expect(jobs.count <= 5, "within the node's capacity")
                #expect(jobs.allSatisfy { $0.job.nodeID == node && $0.job.state == .leased })
                #expect(try await leasedCount(context, of: node) == jobs.count, "the node's count follows its leases")
            }
            #expect(try await queue.queueDepth().isEmpty)
        }
    }

    @Test func leasingRefusesUnknownAndRevokedNodes() async throws {
        try await withQueue { queue, context, _ in
            #expect(await mizanCode { try await queue.lease(nodeID: NodeID(), limit: 1, now: Date()) } == .nodeNotFound)
            let node = try await insertActiveNode(context, models: ["m1"], maxConcurrency: 1)
            try await context.client.run("UPDATE mizan_nodes SET status = 'revoked' WHERE id = \(node.uuid)", logger: context.logger)
            #expect(await mizanCode { try await queue.lease(nodeID: node, limit: 1, now: Date()) } == .invalidNodeToken)
        }
    }

    @Test func completionsAndRequeuesKeepTheNodesCountInStep() async throws {
        try await withQueue { queue, context, _ in
            let log = EventLog(context.events)
            let node = try await insertActiveNode(context, models: ["m1"], maxConcurrency: 2)
            _ = try await queue.insert(testJob())
            _ = try await queue.insert(testJob())
            let leased = try await queue.lease(nodeID: node, limit: 2, now: Date())
            #expect(leased.count == 2)
            let done = try await queue.complete(
                leased[0].lease, with: .succeeded(result: Data("{}".utf8), usage: TokenUsage(promptTokens: 1, completionTokens: 2)),
                now: Date())
            #expect(done.state == .succeeded && done.usage?.completionTokens == 2)
            let requeued = try await queue.complete(
                leased[1].lease, with: .failed(code: "provider_error", message: "boom", retryable: true), now: Date())
            #expect(requeued.state == .accepted && requeued.attempt == 2 && requeued.earlierAttempts.count == 1)
            #expect(try await leasedCount(context, of: node) == 0)
            #expect(log.all.contains(.jobFinished(id: done.id, state: .succeeded)))
            // A lease of an attempt that ended is refused.
            #expect(
                await mizanCode { try await queue.complete(leased[1].lease, with: .succeeded(result: Data(), usage: nil), now: Date()) }
                    == .leaseConflict)
        }
    }

    @Test func aBatchOfSuccessesIsOneStatement() async throws {
        try await withQueue { queue, context, statements in
            let node = try await insertActiveNode(context, models: ["m1"], maxConcurrency: 3)
            for _ in 0..<3 { _ = try await queue.insert(testJob()) }
            let leased = try await queue.lease(nodeID: node, limit: 3, now: Date())
            let before = statements.value
            let results = try await queue.complete(
                leased.map { LeaseCompletion(lease: $0.lease, completion: .succeeded(result: Data("{}".utf8), usage: nil)) }, now: Date())
            #expect(results.allSatisfy { (try? $0.get().state) == .succeeded })
            #expect(statements.value - before == 1, "jobs inserted here need no notification to other instances")
            #expect(try await leasedCount(context, of: node) == 0)
        }
    }

    @Test func cancelAndTimeOutFinishLiveJobsOnly() async throws {
        try await withQueue { queue, context, _ in
            let node = try await insertActiveNode(context, models: ["m1"], maxConcurrency: 1)
            let queued = try await queue.insert(testJob()).job
            let leasedJob = try await queue.insert(testJob()).job
            _ = try await queue.lease(nodeID: node, limit: 1, now: Date())
            let cancelled = try await queue.cancel(queued.id, now: Date())
            #expect(cancelled.state == .failed && cancelled.errorCode == JobErrorCode.cancelled)
            let timedOut = try await queue.timeOut(leasedJob.id, now: Date())
            #expect(timedOut.state == .timedOut)
            #expect(try await leasedCount(context, of: node) == 0, "a leased job that ends frees its node's slot")
            #expect(try await queue.cancel(timedOut.id, now: Date()).state == .timedOut, "a finished job is answered as it is")
            #expect(await mizanCode { try await queue.cancel(JobID(), now: Date()) } == .jobNotFound)
        }
    }

    @Test func sweepsTimeOutRecoverAndPrune() async throws {
        try await withQueue { queue, context, _ in
            let now = Date()
            let lost = try await insertActiveNode(context, models: ["m1"], maxConcurrency: 1, lastSeen: now.addingTimeInterval(-600))
            // Queued first, so leased first (the lease, dated when the node was last seen, could take either).
            let onLost = try await queue.insert(testJob()).job
            let expired = try await queue.insert(testJob(deadline: now.addingTimeInterval(-1))).job
            let leased = try await queue.lease(nodeID: lost, limit: 1, now: now.addingTimeInterval(-600))
            #expect(leased.map(\.job.id) == [onLost.id])
            #expect(try await queue.timeOutExpired(now: now).map(\.id) == [expired.id])
            let recovered = try await queue.recoverLeases(staleBefore: now.addingTimeInterval(-60), now: now)
            #expect(recovered.map(\.id) == [onLost.id] && recovered.first?.state == .accepted)
            #expect(try await leasedCount(context, of: lost) == 0)
            #expect(try await queue.recoverLeases(staleBefore: now.addingTimeInterval(-60), now: now).isEmpty, "each lease recovered once")
            #expect(try await queue.prune(finishedBefore: now.addingTimeInterval(60)) == 1, "the timed-out job is pruned")
            #expect(try await queue.job(expired.id) == nil)
            #expect(try await queue.jobs(matching: JobFilter(state: .accepted), limit: 10).map(\.id) == [onLost.id])
        }
    }

    @Test func aGoneNodesLeasesAreRequeued() async throws {
        try await withQueue { queue, context, _ in
            let node = try await insertActiveNode(context, models: ["m1"], maxConcurrency: 2)
            _ = try await queue.insert(testJob())
            _ = try await queue.insert(testJob(maxAttempts: 1))
            let leased = try await queue.lease(nodeID: node, limit: 2, now: Date())
            #expect(try await queue.leasedJobs(nodeID: node).count == 2)
            let recovered = try await queue.recoverLeases(of: node, now: Date())
            #expect(Set(recovered.map(\.id)) == Set(leased.map(\.job.id)))
            #expect(Set(recovered.map(\.state)) == [.accepted, .failed], "requeued while attempts are left, failed after")
            #expect(try await queue.leasedJobs(nodeID: node).isEmpty)
            #expect(try await leasedCount(context, of: node) == 0)
        }
    }
}
