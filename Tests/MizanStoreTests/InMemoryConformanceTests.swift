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

    @Test func keepsAtMostItsCapOfRecentUsageRecordsButCountsThemAll() async throws {
        let store = InMemoryStore(maxUsageRecords: 1_000)
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        for index in 0..<1_500 {
            try await store.recordUsage(
                UsageRecord(
                    requestID: "r\(index)", apiKeyID: nil, model: "m", servedBy: "route", status: 200, latencyMilliseconds: 1,
                    usage: TokenUsage(promptTokens: 1, completionTokens: 2), createdAt: start.addingTimeInterval(Double(index))))
        }
        // Usage by time holds the newest records, at most the cap; the oldest tenth went each time.
        let recent = try await store.usage(UsageQuery()).map(\.requests).reduce(0, +)
        #expect(recent <= 1_000 && recent >= 900, "\(recent)")
        // The totals count every record.
        let totals = try await store.usageSummary()
        #expect(totals.map(\.requests) == [1_500] && totals.map(\.completionTokens) == [3_000])
        // The identities kept for a retried write are as bounded.
        #expect(try await store.usageRecorded(requestID: "r1499", createdAt: start.addingTimeInterval(1_499)))
        #expect(try await !store.usageRecorded(requestID: "r0", createdAt: start))
    }
}
