import Foundation
import MizanCore
import MizanPostgresTesting
import MizanStore
import PostgresNIO
import Testing

@testable import MizanStorePostgres

@Suite("PostgreSQL key counters", .timeLimit(.minutes(2)))
struct PostgresKeyCountersTests {
    /// A key stored through the ledger of `context`.
    func makeKey(_ context: PostgresStoreContext, policy: KeyPolicy = KeyPolicy()) async throws -> APIKey {
        try await PostgresAccessLedger(context: context).createAPIKey(
            APIKey(name: "k", prefix: "mzn_sk_k", createdAt: Date(), policy: policy), hash: Data(UUID().uuidString.utf8))
    }

    @Test func aChangeCostsOneStatementOnceTheCountersAreKnown() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let statements = StatementCounter()
            let context = makeContext(client, statements: statements)
            let key = try await makeKey(context)
            let counters = PostgresKeyCounters(context: context)
            var before = statements.value
            try await counters.change(key.id) { $0.periodTokens += 5 }
            #expect(statements.value - before == 2, "read, then swap")
            before = statements.value
            let total = try await counters.change(key.id) { counters -> Int in
                counters.periodTokens += 5
                return counters.periodTokens
            }
            #expect(total == 10)
            #expect(statements.value - before == 1, "the swap alone, from the counters this instance wrote")
            #expect(try await counters.counters(key.id).periodTokens == 10)
        }
    }

    @Test func twoInstancesTogetherStayExact() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let first = makeContext(client)
            let key = try await makeKey(first)
            let instances = [PostgresKeyCounters(context: first), PostgresKeyCounters(context: makeContext(client))]
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<40 {
                    let counters = instances[index % 2]
                    group.addTask { try await counters.change(key.id) { $0.periodTokens += 1 } }
                }
                try await group.waitForAll()
            }
            #expect(try await instances[0].counters(key.id).periodTokens == 40, "no change lost to the other instance's")
            #expect(try await instances[1].counters(key.id).periodTokens == 40)
        }
    }

    @Test func aRecordIsWrittenWithTheEndOfItsAdmission() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let statements = StatementCounter()
            let context = makeContext(client, statements: statements)
            // A limit on concurrent requests: the admission holds a slot, so it writes the counters.
            let key = try await makeKey(context, policy: KeyPolicy(limits: .init(concurrentRequests: 5)))
            let counters = PostgresKeyCounters(context: context)
            let now = Date()
            let admission = try await counters.change(key.id) {
                KeyLimiter.admit(&$0, policy: key.policy, holdID: "h1", holdUntil: now.addingTimeInterval(60), now: now)
            }
            guard case .admitted = admission else {
                Issue.record("the admission was refused: \(admission)")
                return
            }
            #expect(try await counters.counters(key.id).holds.count == 1, "the admission holds a slot")
            let record = UsageRecord(
                requestID: "r1", apiKeyID: key.id, model: "m1", servedBy: nil, status: 200, latencyMilliseconds: 1,
                usage: TokenUsage(promptTokens: 2, completionTokens: 3), createdAt: now)
            let end = KeyAdmissionEnd(key: key, holdID: "h1", admittedAt: now)
            #expect(PostgresKeyCounters.writesTogether(record, ending: end))
            var idempotent = record
            idempotent.jobID = JobID()
            #expect(!PostgresKeyCounters.writesTogether(idempotent, ending: end), "an idempotent job's record goes in two steps")
            let before = statements.value
            try await counters.record(record, ending: end)
            #expect(statements.value - before == 1, "the record and the end of the admission in one statement")
            #expect(try await counters.counters(key.id).holds.isEmpty, "the hold is released")
            #expect(try await PostgresAccessLedger(context: context).usageRecorded(requestID: "r1", createdAt: now))
        }
    }

    @Test func recordsQueuedSoonAreWrittenBeforeIdle() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let context = makeContext(client)
            let key = try await makeKey(context)
            let counters = PostgresKeyCounters(context: context)
            let now = Date()
            for index in 0..<5 {
                let record = UsageRecord(
                    requestID: "soon-\(index)", apiKeyID: key.id, model: "m1", servedBy: nil, status: 200, latencyMilliseconds: 1,
                    usage: nil, createdAt: now)
                counters.recordSoon(record, ending: KeyAdmissionEnd(key: key, holdID: nil), failed: { _ in })
            }
            #expect(await counters.written(timeout: .seconds(10)))
            let summary = try await PostgresAccessLedger(context: context).usageSummary()
            #expect(summary.map(\.requests) == [5])
        }
    }

    @Test func anUnknownKeyIsNotFound() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let counters = PostgresKeyCounters(context: makeContext(client))
            #expect(await mizanCode { try await counters.change("missing") { $0.periodTokens += 1 } } == .notFound)
            #expect(await mizanCode { try await counters.counters("missing") } == .notFound)
        }
    }
}
