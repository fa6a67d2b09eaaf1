import Foundation
import MizanCore
import MizanStore

extension StoreConformance {
    static let recoveryChecks: [Check] = [
        Check("deadline expiry times out queued and leased jobs") { store in
            let node = try await Fixture.node(store)
            let leasedJob = Fixture.job(deadline: 10)
            _ = try await store.insert(leasedJob)
            _ = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(1))
            let queued = Fixture.job(createdAt: 1, deadline: 20)
            let later = Fixture.job(createdAt: 2, deadline: 100)
            _ = try await store.insert(queued)
            _ = try await store.insert(later)
            let none = try await store.timeOutExpired(now: Fixture.at(9))
            try require(none.isEmpty, "nothing expires before its deadline")
            let first = try await store.timeOutExpired(now: Fixture.at(20))
            try require(Set(first.map(\.id)) == [leasedJob.id, queued.id], "both expired jobs time out: \(first.map(\.id))")
            try require(
                first.allSatisfy { $0.state == .timedOut && $0.errorCode == JobErrorCode.deadlineExceeded }, "with code deadline_exceeded")
            let again = try await store.timeOutExpired(now: Fixture.at(21))
            try require(again.isEmpty, "a timed-out job does not time out twice")
            let still = try await store.job(later.id)
            try require(still?.state == .accepted, "a job within its deadline stays queued")
            let depth = try await store.queueDepth()
            try require(depth == ["m1": 1], "timed-out jobs leave the queue: \(depth)")
        },
        Check("expired queued job is not leased") { store in
            let node = try await Fixture.node(store)
            _ = try await store.insert(Fixture.job(deadline: 10))
            let leased = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(11))
            try require(leased.isEmpty, "a job past its deadline is not handed out")
        },
        Check("time out one job") { store in
            let job = Fixture.job()
            _ = try await store.insert(job)
            let timedOut = try await store.timeOut(job.id, now: Fixture.at(5))
            try require(timedOut.state == .timedOut && timedOut.finishedAt == Fixture.at(5), "the job times out: \(timedOut)")
            let again = try await store.timeOut(job.id, now: Fixture.at(6))
            try require(again.finishedAt == Fixture.at(5), "a terminal job is unchanged")
        },
        Check("a node's leased jobs are listed") { store in
            let a = try await Fixture.node(store)
            let b = try await Fixture.node(store)
            let jobs = [Fixture.job(createdAt: 1), Fixture.job(createdAt: 2), Fixture.job(createdAt: 3)]
            for job in jobs { _ = try await store.insert(job) }
            let toA = try await store.lease(nodeID: a.id, limit: 2, now: Fixture.at(4))
            _ = try await store.lease(nodeID: b.id, limit: 1, now: Fixture.at(4))
            let listed = try await store.leasedJobs(nodeID: a.id)
            try require(Set(listed.map(\.id)) == Set(toA.map(\.job.id)) && listed.count == 2, "A's two leases: \(listed.map(\.id))")
            try require(listed.allSatisfy { $0.nodeID == a.id && $0.state == .leased }, "as leased to A")
            _ = try await store.complete(toA[0].lease, with: Fixture.success, now: Fixture.at(5))
            let after = try await store.leasedJobs(nodeID: a.id)
            try require(after.map(\.id) == [toA[1].job.id], "a completed job is no longer listed: \(after.map(\.id))")
        },
        Check("stale node's leases are requeued with attempt + 1") { store in
            let lost = try await Fixture.node(store, at: 0)
            let alive = try await Fixture.node(store, at: 0)
            let job = Fixture.job(maxAttempts: 3)
            _ = try await store.insert(job)
            let lease = try await store.lease(nodeID: lost.id, limit: 1, now: Fixture.at(1))[0].lease
            _ = try await store.heartbeat(alive.id, report: NodeReport(models: ["m1"], maxConcurrency: 4), now: Fixture.at(40))
            let untouched = try await store.recoverLeases(staleBefore: Fixture.at(0.5), now: Fixture.at(40))
            try require(untouched.isEmpty, "a node seen after the cut-off keeps its leases")
            let recovered = try await store.recoverLeases(staleBefore: Fixture.at(30), now: Fixture.at(40))
            try require(recovered.map(\.id) == [job.id] && recovered[0].state == .accepted, "the job is requeued: \(recovered)")
            try require(recovered[0].attempt == lease.attempt + 1, "with attempt + 1")
            let again = try await store.lease(nodeID: alive.id, limit: 1, now: Fixture.at(41))
            try require(again.first?.lease == Lease(jobID: job.id, attempt: 2, nodeID: alive.id), "another node leases it as attempt 2")
            try await requireThrows("the lost node's late completion is refused", matching: Fixture.isCode(.leaseConflict)) {
                _ = try await store.complete(lease, with: Fixture.success, now: Fixture.at(42))
            }
        },
        Check("a requeued job keeps each earlier attempt") { store in
            let first = try await Fixture.node(store)
            let second = try await Fixture.node(store, at: 5)
            let job = Fixture.job(deadline: 300, maxAttempts: 3)
            _ = try await store.insert(job)
            let lease = try await store.lease(nodeID: first.id, limit: 1, now: Fixture.at(1))[0].lease
            let handedBack = try await store.complete(
                lease, with: .failed(code: "provider,down;", message: "x", retryable: true), now: Fixture.at(2))
            try require(handedBack.earlierAttempts.count == 1, "the failed attempt is kept: \(handedBack.earlierAttempts)")
            let one = handedBack.earlierAttempts[0]
            try require(one.attempt == 1 && one.nodeID == first.id && one.reason == "provider_down_", "its number, node and reason: \(one)")
            try require(
                abs((one.leasedAt ?? .distantPast).timeIntervalSince(Fixture.at(1))) < 0.01
                    && abs(one.endedAt.timeIntervalSince(Fixture.at(2))) < 0.01,
                "its lease and end times: \(one)")
            let again = try await store.lease(nodeID: second.id, limit: 1, now: Fixture.at(10))[0].lease
            try require(again.attempt == 2, "leased again as attempt 2")
            let recovered = try await store.recoverLeases(staleBefore: Fixture.at(30), now: Fixture.at(40))
            let stored = try await store.job(job.id)
            for found in [recovered.first, stored] {
                let attempts = found?.earlierAttempts ?? []
                try require(attempts.count == 2 && attempts[0] == one, "both earlier attempts, in order: \(attempts)")
                try require(
                    attempts[1].attempt == 2 && attempts[1].nodeID == second.id && attempts[1].reason == JobErrorCode.nodeLost
                        && abs(attempts[1].endedAt.timeIntervalSince(Fixture.at(40))) < 0.01,
                    "the lost node's attempt: \(attempts[1])")
            }
            try require(stored?.attempt == 3 && stored?.state == .accepted, "the job waits for attempt 3")
            let finished = try await store.lease(nodeID: second.id, limit: 1, now: Fixture.at(41))
            let done = try await store.complete(finished[0].lease, with: Fixture.success, now: Fixture.at(42))
            try require(done.earlierAttempts.count == 2, "a finish adds none: \(done.earlierAttempts)")
        },
        Check("stale node's lease fails after max attempts") { store in
            let node = try await Fixture.node(store)
            let job = Fixture.job(maxAttempts: 1)
            _ = try await store.insert(job)
            _ = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(1))
            let recovered = try await store.recoverLeases(staleBefore: Fixture.at(30), now: Fixture.at(40))
            try require(recovered.count == 1 && recovered[0].state == .failed, "the job fails: \(recovered)")
            try require(recovered[0].errorCode == JobErrorCode.nodeLost, "with code node_lost")
        },
        Check("stale node's lease past its deadline is not requeued") { store in
            let node = try await Fixture.node(store)
            _ = try await store.insert(Fixture.job(deadline: 20))
            _ = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(1))
            let recovered = try await store.recoverLeases(staleBefore: Fixture.at(30), now: Fixture.at(40))
            try require(recovered.count == 1 && recovered[0].state == .failed, "a job out of time is not requeued: \(recovered)")
        },
        Check("revoked node's leases are recovered") { store in
            let node = try await Fixture.node(store)
            let job = Fixture.job()
            _ = try await store.insert(job)
            _ = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(1))
            _ = try await store.revokeNode(node.id, now: Fixture.at(2))
            let recovered = try await store.recoverLeases(staleBefore: Fixture.at(0), now: Fixture.at(3))
            try require(recovered.map(\.id) == [job.id] && recovered[0].state == .accepted, "a revoked node's job is requeued")
            try await requireThrows("a revoked node cannot lease", matching: Fixture.isCode(.invalidNodeToken)) {
                _ = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(4))
            }
        },
        Check("prune deletes old terminal jobs only") { store in
            let node = try await Fixture.node(store)
            let old = Fixture.job()
            let recent = Fixture.job(createdAt: 1)
            let live = Fixture.job(createdAt: 2)
            _ = try await store.insert(old)
            _ = try await store.cancel(old.id, now: Fixture.at(10))
            _ = try await store.insert(recent)
            let lease = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(11))[0].lease
            _ = try await store.complete(lease, with: Fixture.success, now: Fixture.at(100))
            _ = try await store.insert(live)
            let pruned = try await store.prune(finishedBefore: Fixture.at(50))
            try require(pruned == 1, "one old job is pruned, got \(pruned)")
            try require(try await store.job(old.id) == nil, "the old job is gone")
            try require(try await store.job(recent.id) != nil, "a recent job stays")
            try require(try await store.job(live.id)?.state == .accepted, "a live job is never pruned")
        },
        Check("events for availability and finish") { store in
            let recorder = EventRecorder(store)
            let node = try await Fixture.node(store)
            let a = Fixture.job()
            let b = Fixture.job(createdAt: 1)
            _ = try await store.insert(a)
            try await recorder.wait(for: "jobsAvailable m1") { $0.contains(.jobsAvailable(model: "m1", count: 1)) }
            _ = try await store.insert(b)
            let lease = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(2))[0].lease
            _ = try await store.complete(lease, with: Fixture.success, now: Fixture.at(3))
            try await recorder.wait(for: "jobFinished succeeded") { $0.contains(.jobFinished(id: a.id, state: .succeeded)) }
            _ = try await store.cancel(b.id, now: Fixture.at(4))
            try await recorder.wait(for: "jobFinished failed") { $0.contains(.jobFinished(id: b.id, state: .failed)) }
            let c = Fixture.job(createdAt: 5, deadline: 6)
            _ = try await store.insert(c)
            _ = try await store.timeOutExpired(now: Fixture.at(7))
            try await recorder.wait(for: "jobFinished timed_out") { $0.contains(.jobFinished(id: c.id, state: .timedOut)) }
            let d = Fixture.job(createdAt: 8)
            _ = try await store.insert(d)
            let dl = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(9))[0].lease
            _ = try await store.complete(dl, with: .failed(code: "x", message: "x", retryable: true), now: Fixture.at(10))
            try await recorder.wait(for: "requeue availability") { events in
                events.filter { $0 == .jobsAvailable(model: "m1", count: 1) }.count >= 4
            }
            let finished = recorder.all.filter { if case .jobFinished = $0 { true } else { false } }
            try require(finished.count == 3, "each finish is published once: \(finished)")
        },
    ]
}
