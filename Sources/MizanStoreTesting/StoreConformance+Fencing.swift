import Foundation
import MizanCore
import MizanStore

extension StoreConformance {
    static let fencingChecks: [Check] = [
        Check("stale attempt is refused") { store in
            let node = try await Fixture.node(store)
            _ = try await store.insert(Fixture.job())
            let old = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(1))[0].lease
            _ = try await store.complete(old, with: .failed(code: "x", message: "x", retryable: true), now: Fixture.at(2))
            let current = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(3))[0].lease
            try require(current.attempt == old.attempt + 1, "the new lease has the next attempt")
            try await requireThrows("a completion for the old attempt is refused", matching: Fixture.isCode(.leaseConflict)) {
                _ = try await store.complete(old, with: Fixture.success, now: Fixture.at(4))
            }
            let unchanged = try await store.job(old.jobID)
            try require(unchanged?.state == .leased && unchanged?.attempt == current.attempt, "the refused completion changed nothing")
            let done = try await store.complete(current, with: Fixture.success, now: Fixture.at(5))
            try require(done.state == .succeeded, "the current attempt completes")
        },
        Check("another node's completion is refused") { store in
            let holder = try await Fixture.node(store)
            let intruder = try await Fixture.node(store)
            _ = try await store.insert(Fixture.job())
            let lease = try await store.lease(nodeID: holder.id, limit: 1, now: Fixture.at(1))[0].lease
            let forged = Lease(jobID: lease.jobID, attempt: lease.attempt, nodeID: intruder.id)
            try await requireThrows("a completion from another node is refused", matching: Fixture.isCode(.leaseConflict)) {
                _ = try await store.complete(forged, with: Fixture.success, now: Fixture.at(2))
            }
            let read = try await store.job(lease.jobID)
            try require(read?.state == .leased && read?.nodeID == holder.id, "the job stays with its holder")
        },
        Check("second completion is refused") { store in
            let node = try await Fixture.node(store)
            _ = try await store.insert(Fixture.job())
            let lease = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(1))[0].lease
            _ = try await store.complete(lease, with: Fixture.success, now: Fixture.at(2))
            try await requireThrows("a second success is refused", matching: Fixture.isCode(.leaseConflict)) {
                _ = try await store.complete(lease, with: Fixture.success, now: Fixture.at(3))
            }
            try await requireThrows("a failure after success is refused", matching: Fixture.isCode(.leaseConflict)) {
                _ = try await store.complete(lease, with: .failed(code: "x", message: "x", retryable: false), now: Fixture.at(3))
            }
            let read = try await store.job(lease.jobID)
            try require(read?.state == .succeeded && read?.finishedAt == Fixture.at(2), "the first completion stands")
        },
        Check("completion after timeout is refused") { store in
            let node = try await Fixture.node(store)
            _ = try await store.insert(Fixture.job(deadline: 10))
            let lease = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(1))[0].lease
            let expired = try await store.timeOutExpired(now: Fixture.at(10))
            try require(expired.map(\.id) == [lease.jobID], "the leased job times out at its deadline")
            try await requireThrows("a late completion is refused", matching: Fixture.isCode(.leaseConflict)) {
                _ = try await store.complete(lease, with: Fixture.success, now: Fixture.at(11))
            }
            let read = try await store.job(lease.jobID)
            try require(read?.state == .timedOut && read?.usage == nil, "the job stays timed out without usage")
        },
        Check("unknown job completion is not found") { store in
            let node = try await Fixture.node(store)
            try await requireThrows("completing an unknown job is an error", matching: Fixture.isCode(.jobNotFound)) {
                _ = try await store.complete(Lease(jobID: JobID(), attempt: 1, nodeID: node.id), with: Fixture.success, now: Fixture.at(1))
            }
        },
    ]
}

extension StoreConformance {
    static let batchChecks: [Check] = [
        Check("batch completion applies each lease on its own") { store in
            let node = try await Fixture.node(store, maxConcurrency: 10)
            let other = try await Fixture.node(store)
            for i in 0..<4 { _ = try await store.insert(Fixture.job(createdAt: Double(i))) }
            let leased = try await store.lease(nodeID: node.id, limit: 4, now: Fixture.at(10)).map(\.lease)
            try require(leased.count == 4, "four jobs are leased")
            let stale = Lease(jobID: leased[1].jobID, attempt: leased[1].attempt + 1, nodeID: node.id)
            let forged = Lease(jobID: leased[2].jobID, attempt: leased[2].attempt, nodeID: other.id)
            let results = try await store.complete(
                [
                    LeaseCompletion(lease: leased[0], completion: Fixture.success),
                    LeaseCompletion(lease: stale, completion: Fixture.success),
                    LeaseCompletion(lease: forged, completion: Fixture.success),
                    LeaseCompletion(lease: leased[3], completion: .failed(code: "x", message: "y", retryable: true)),
                    LeaseCompletion(lease: leased[0], completion: Fixture.success),
                ],
                now: Fixture.at(11)
            )
            try require(results.count == 5, "one result per completion")
            try require((try? results[0].get())?.state == .succeeded, "a current lease completes: \(results[0])")
            for index in [1, 2, 4] {
                if case .failure(let error) = results[index] {
                    try require(error.code == .leaseConflict, "completion \(index) is refused with a lease conflict: \(error)")
                } else {
                    throw ConformanceFailure("completion \(index) must be refused: \(results[index])", location: "batch")
                }
            }
            try require((try? results[3].get())?.state == .accepted, "a retryable failure in a batch requeues")
            try require(try await store.job(leased[1].jobID)?.state == .leased, "a refused completion changes nothing")
            try require(try await store.job(leased[0].jobID)?.usage?.totalTokens == 18, "usage is recorded once")
            let more = try await store.lease(nodeID: node.id, limit: 10, now: Fixture.at(12))
            try require(more.map(\.job.id) == [leased[3].jobID], "completed slots free capacity and the requeued job comes back")
        },
        Check("a batch's completed jobs are what a read of them gives") { store in
            let node = try await Fixture.node(store, maxConcurrency: 10)
            for i in 0..<3 { _ = try await store.insert(Fixture.job(createdAt: Double(i))) }
            let leased = try await store.lease(nodeID: node.id, limit: 3, now: Fixture.at(10)).map(\.lease)
            try require(leased.count == 3, "three jobs are leased")
            let completions: [JobCompletion] = [
                Fixture.success,
                .succeeded(result: Data(#"{"object":"list","data":[]}"#.utf8), usage: nil),
                .succeeded(result: Data("[]".utf8), usage: TokenUsage(promptTokens: 3, completionTokens: 0, source: .estimated)),
            ]
            let results = try await store.complete(
                zip(leased, completions).map { LeaseCompletion(lease: $0, completion: $1) }, now: Fixture.at(11.25))
            for (lease, result) in zip(leased, results) {
                let completed = try result.get()
                let read = try await store.job(lease.jobID)
                try require(
                    completed == read, "the job a completion returns is the stored one: \(completed) against \(String(describing: read))")
                try require(
                    completed.finishedAt == Fixture.at(11.25) && completed.updatedAt == Fixture.at(11.25), "finished at the time given")
            }
            try require(try results[1].get().usage == nil, "a result without usage has none")
            try require(try results[2].get().usage?.source == .estimated, "usage keeps its source")
        },
    ]
}
