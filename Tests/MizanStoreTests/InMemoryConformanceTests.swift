import Foundation
import MizanCore
import MizanStore
import MizanStoreTesting
import Testing

@Suite("In-memory store conformance")
struct InMemoryConformanceTests {
    @Test(arguments: StoreConformance.checks)
    func conformance(_ check: StoreConformance.Check) async throws {
        try await check.run(on: InMemoryStore())
    }
}

@Suite("In-memory access store conformance")
struct InMemoryAccessConformanceTests {
    @Test(arguments: AccessConformance.checks)
    func conformance(_ check: AccessConformance.Check) async throws {
        try await check.run(on: InMemoryStore())
    }
}

@Suite("In-memory store bounds")
struct InMemoryBoundsTests {
    @Test func keepsAtMostItsCapOfFinishedJobs() async throws {
        let store = InMemoryStore(maxFinishedJobs: 3)
        var ids: [JobID] = []
        for index in 0..<6 {
            let job = Job(
                requestID: "r\(index)", model: "m", body: Data("{}".utf8), deadline: Date().addingTimeInterval(60),
                idempotencyKey: "k\(index)")
            ids.append(try await store.insert(job).job.id)
        }
        let live = Job(requestID: "live", model: "m", body: Data("{}".utf8), deadline: Date().addingTimeInterval(60))
        _ = try await store.insert(live)
        for id in ids { _ = try await store.cancel(id, now: Date()) }
        let kept = try await store.jobs(state: nil, limit: 100)
        // The three newest finished jobs and the live one; the oldest finished went first.
        #expect(Set(kept.map(\.id)) == Set(ids.suffix(3) + [live.id]))
        // An idempotency key of a dropped job names nothing any more.
        let again = Job(
            requestID: "again", model: "m", body: Data("{}".utf8), deadline: Date().addingTimeInterval(60), idempotencyKey: "k0")
        #expect(try await store.insert(again).inserted)
    }
}
