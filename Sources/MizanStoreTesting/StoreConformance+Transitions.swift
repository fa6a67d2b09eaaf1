import Foundation
import MizanCore
import MizanStore

extension StoreConformance {
    static let transitionChecks: [Check] = [
        Check("insert and read back verbatim") { store in
            let job = Fixture.job()
            let insertion = try await store.insert(job)
            try require(insertion.inserted, "a new job is inserted")
            let read = try await store.job(job.id)
            try require(read == job, "the stored job reads back unchanged: \(String(describing: read))")
            try require(read?.body == job.body, "the body is kept byte for byte")
            try require(read?.state == .accepted && read?.attempt == 1, "a new job is accepted at attempt 1")
            let missing = try await store.job(JobID())
            try require(missing == nil, "an unknown id reads as nil")
        },
        Check("idempotency key returns the first job") { store in
            let first = Fixture.job(idempotencyKey: "idem-1")
            _ = try await store.insert(first)
            let second = Fixture.job(createdAt: 1, idempotencyKey: "idem-1")
            let insertion = try await store.insert(second)
            try require(!insertion.inserted, "a second insert with the same key inserts nothing")
            try require(insertion.job.id == first.id, "a second insert returns the first job")
            try require(try await store.job(second.id) == nil, "the second job is not stored")
            let other = try await store.insert(Fixture.job(createdAt: 2, idempotencyKey: "idem-2"))
            try require(other.inserted, "another key inserts a new job")
            let depth = try await store.queueDepth()
            try require(depth["m1"] == 2, "two jobs are queued, got \(depth)")
        },
        Check("lease succeed records result and usage") { store in
            let node = try await Fixture.node(store)
            let job = Fixture.job()
            _ = try await store.insert(job)
            let leased = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(1))
            try require(leased.count == 1, "one job is leased")
            let lease = leased[0].lease
            try require(lease == Lease(jobID: job.id, attempt: 1, nodeID: node.id), "the lease is fenced by (id, attempt, node)")
            try require(leased[0].job.state == .leased && leased[0].job.leasedAt == Fixture.at(1), "the job is leased at the lease time")
            let done = try await store.complete(lease, with: Fixture.success, now: Fixture.at(2))
            try require(done.state == .succeeded, "the job succeeded")
            try require(done.usage == TokenUsage(promptTokens: 7, completionTokens: 11, source: .provider), "usage is recorded")
            let read = try await store.job(job.id)
            try require(read?.state == .succeeded && read?.finishedAt == Fixture.at(2), "the success is durable with its time")
            if case .succeeded(let body, _) = Fixture.success { try require(read?.result == body, "the result body is kept") }
            try require(read?.nodeID == node.id, "the job remembers the node that ran it")
        },
        Check("non-retryable failure fails the job") { store in
            let node = try await Fixture.node(store)
            _ = try await store.insert(Fixture.job())
            let lease = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(1))[0].lease
            let failed = try await store.complete(
                lease, with: .failed(code: "bad_output", message: "boom", retryable: false), now: Fixture.at(2))
            try require(
                failed.state == .failed && failed.errorCode == "bad_output" && failed.errorMessage == "boom",
                "the failure is recorded: \(failed)")
            try require(failed.usage == nil, "a failed job has no usage")
        },
        Check("retryable failure requeues until attempts run out") { store in
            let node = try await Fixture.node(store)
            let job = Fixture.job(maxAttempts: 2)
            _ = try await store.insert(job)
            let first = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(1))[0].lease
            let requeued = try await store.complete(
                first, with: .failed(code: "provider_down", message: "x", retryable: true), now: Fixture.at(2))
            try require(requeued.state == .accepted && requeued.attempt == 2, "a retryable failure requeues with attempt + 1: \(requeued)")
            let second = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(3))
            try require(second.first?.lease.attempt == 2, "the job is leased again as attempt 2")
            let last = try await store.complete(
                second[0].lease, with: .failed(code: "provider_down", message: "x", retryable: true), now: Fixture.at(4))
            try require(last.state == .failed && last.errorCode == "provider_down", "the last attempt fails for good: \(last)")
        },
        Check("lease only advertised models") { store in
            let node = try await Fixture.node(store, models: ["m1"])
            _ = try await store.insert(Fixture.job(model: "m2"))
            let none = try await store.lease(nodeID: node.id, limit: 4, now: Fixture.at(1))
            try require(none.isEmpty, "a node gets no job of a model it does not advertise")
            let wanted = Fixture.job(model: "m1", createdAt: 1)
            _ = try await store.insert(wanted)
            let one = try await store.lease(nodeID: node.id, limit: 4, now: Fixture.at(2))
            try require(one.map(\.job.id) == [wanted.id], "only the advertised model's job is leased")
        },
        Check("lease oldest first, higher priority first") { store in
            let node = try await Fixture.node(store, models: ["m1", "m2"], maxConcurrency: 10)
            let a = Fixture.job(model: "m1", createdAt: 3)
            let b = Fixture.job(model: "m2", createdAt: 1)
            let c = Fixture.job(model: "m1", createdAt: 2)
            let urgent = Fixture.job(model: "m2", createdAt: 4, priority: 5)
            // Queued as they came: within one key's class, a job's place is the order it was queued in.
            for job in [b, c, a, urgent] { _ = try await store.insert(job) }
            var order: [JobID] = []
            for step in 0..<4 {
                order += try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(10 + Double(step))).map(\.job.id)
            }
            try require(order == [urgent.id, b.id, c.id, a.id], "priority first, then oldest: \(order)")
        },
        Check("lease never beyond free capacity") { store in
            let node = try await Fixture.node(store, maxConcurrency: 2)
            for i in 0..<5 { _ = try await store.insert(Fixture.job(createdAt: Double(i))) }
            let first = try await store.lease(nodeID: node.id, limit: 10, now: Fixture.at(10))
            try require(first.count == 2, "a node with capacity 2 gets 2 jobs, got \(first.count)")
            let more = try await store.lease(nodeID: node.id, limit: 10, now: Fixture.at(11))
            try require(more.isEmpty, "a full node gets nothing more")
            _ = try await store.complete(first[0].lease, with: Fixture.success, now: Fixture.at(12))
            let freed = try await store.lease(nodeID: node.id, limit: 10, now: Fixture.at(13))
            try require(freed.count == 1, "a freed slot takes one job, got \(freed.count)")
            let limited = try await store.lease(nodeID: node.id, limit: 0, now: Fixture.at(14))
            try require(limited.isEmpty, "limit 0 leases nothing")
        },
        Check("cancel accepted and leased jobs") { store in
            let node = try await Fixture.node(store)
            let queued = Fixture.job()
            let running = Fixture.job(createdAt: 1)
            _ = try await store.insert(running)
            let lease = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(2))[0].lease
            _ = try await store.insert(queued)
            let c1 = try await store.cancel(queued.id, now: Fixture.at(3))
            try require(c1.state == .failed && c1.errorCode == JobErrorCode.cancelled, "a queued job is cancelled: \(c1)")
            let c2 = try await store.cancel(running.id, now: Fixture.at(3))
            try require(c2.state == .failed && c2.errorCode == JobErrorCode.cancelled, "a leased job is cancelled")
            let again = try await store.cancel(running.id, now: Fixture.at(4))
            try require(again.finishedAt == Fixture.at(3), "cancelling a finished job changes nothing")
            try await requireThrows("completing a cancelled job is refused", matching: Fixture.isCode(.leaseConflict)) {
                _ = try await store.complete(lease, with: Fixture.success, now: Fixture.at(5))
            }
            let leasedAfter = try await store.lease(nodeID: node.id, limit: 4, now: Fixture.at(6))
            try require(leasedAfter.isEmpty, "a cancelled job is never leased")
            try await requireThrows("cancelling an unknown job is an error", matching: Fixture.isCode(.jobNotFound)) {
                _ = try await store.cancel(JobID(), now: Fixture.at(6))
            }
        },
        Check("list by state and queue depth") { store in
            let node = try await Fixture.node(store, models: ["m1", "m2"])
            for i in 0..<3 { _ = try await store.insert(Fixture.job(model: "m1", createdAt: Double(i))) }
            _ = try await store.insert(Fixture.job(model: "m2", createdAt: 5))
            let depth = try await store.queueDepth()
            try require(depth == ["m1": 3, "m2": 1], "queue depth per model: \(depth)")
            let leased = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(10))
            let after = try await store.queueDepth()
            try require(after == ["m1": 2, "m2": 1], "a leased job leaves the queue: \(after)")
            let listed = try await store.jobs(state: .leased, limit: 10)
            try require(listed.map(\.id) == leased.map(\.job.id), "listing by state finds the leased job")
            let accepted = try await store.jobs(state: .accepted, limit: 10)
            try require(accepted.count == 3, "three jobs are accepted")
            try require(accepted.map(\.id) == accepted.map(\.id).sorted(by: >), "lists are newest first")
            let limited = try await store.jobs(state: nil, limit: 2)
            try require(limited.count == 2, "the limit is kept")
            let some = try await store.jobs([leased[0].job.id, JobID()])
            try require(some.map(\.id) == [leased[0].job.id], "reading by ids skips unknown ones")
        },
        Check("list by model and state, in pages") { store in
            var ids: [JobID] = []
            for i in 0..<7 {
                ids.append(try await store.insert(Fixture.job(model: i % 2 == 0 ? "even" : "odd", createdAt: Double(i))).job.id)
            }
            let node = try await Fixture.node(store, models: ["odd"])
            let leased = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(10))
            let even = try await store.jobs(matching: JobFilter(model: "even"), limit: 10)
            try require(even.map(\.id) == [ids[6], ids[4], ids[2], ids[0]], "a model's jobs, newest first: \(even.map(\.id))")
            let firstPage = try await store.jobs(matching: JobFilter(), limit: 3)
            try require(firstPage.map(\.id) == [ids[6], ids[5], ids[4]], "the first page is the newest")
            let secondPage = try await store.jobs(matching: JobFilter(before: firstPage.last?.id), limit: 3)
            try require(secondPage.map(\.id) == [ids[3], ids[2], ids[1]], "the next page starts after the last one shown")
            let lastPage = try await store.jobs(matching: JobFilter(before: secondPage.last?.id), limit: 3)
            try require(lastPage.map(\.id) == [ids[0]], "the last page holds the oldest")
            let oddQueued = try await store.jobs(matching: JobFilter(state: .accepted, model: "odd"), limit: 10)
            try require(
                oddQueued.map(\.id) == [ids[5], ids[3], ids[1]].filter { $0 != leased.first?.job.id },
                "a state and a model together: \(oddQueued.map(\.id))")
            let oddLeasedBefore = try await store.jobs(
                matching: JobFilter(state: .leased, model: "odd", before: leased.first?.job.id), limit: 10)
            try require(oddLeasedBefore.isEmpty, "nothing leased is older than the one leased job")
            let none = try await store.jobs(matching: JobFilter(model: "no-such-model"), limit: 10)
            try require(none.isEmpty, "an unknown model lists nothing")
        },
        Check("list finished jobs by state, in pages") { store in
            // Five jobs end each way: two succeed, one fails, one is cancelled (failed), one times out.
            var ids: [JobID] = []
            for i in 0..<5 { ids.append(try await store.insert(Fixture.job(createdAt: Double(i), deadline: 300)).job.id) }
            let node = try await Fixture.node(store, maxConcurrency: 8)
            let leased = try await store.lease(nodeID: node.id, limit: 3, now: Fixture.at(10))
            try require(leased.map(\.job.id) == Array(ids[0..<3]), "the three oldest are leased")
            for item in leased[0..<2] {
                _ = try await store.complete(item.lease, with: .succeeded(result: Data("{}".utf8), usage: nil), now: Fixture.at(11))
            }
            _ = try await store.complete(
                leased[2].lease, with: .failed(code: "bad_output", message: "boom", retryable: false), now: Fixture.at(11))
            _ = try await store.cancel(ids[3], now: Fixture.at(11))
            _ = try await store.timeOut(ids[4], now: Fixture.at(11))
            let succeeded = try await store.jobs(matching: JobFilter(state: .succeeded), limit: 10)
            try require(succeeded.map(\.id) == [ids[1], ids[0]], "the succeeded jobs, newest first: \(succeeded.map(\.id))")
            try require(succeeded.allSatisfy { $0.state == .succeeded && $0.result == Data("{}".utf8) }, "listed as they ended")
            let page = try await store.jobs(matching: JobFilter(state: .succeeded, before: ids[1]), limit: 10)
            try require(page.map(\.id) == [ids[0]], "the next page of succeeded jobs")
            let failed = try await store.jobs(matching: JobFilter(state: .failed), limit: 10)
            try require(failed.map(\.id) == [ids[3], ids[2]], "the failed and the cancelled job: \(failed.map(\.id))")
            let failedPage = try await store.jobs(matching: JobFilter(state: .failed, before: ids[3]), limit: 1)
            try require(failedPage.map(\.id) == [ids[2]], "a page of failed jobs")
            let timedOut = try await store.jobs(matching: JobFilter(state: .timedOut), limit: 10)
            try require(timedOut.map(\.id) == [ids[4]] && timedOut[0].state == .timedOut, "the timed-out job")
            let noneQueued = try await store.jobs(matching: JobFilter(state: .accepted), limit: 10)
            try require(noneQueued.isEmpty, "nothing is left queued")
        },
    ]
}
