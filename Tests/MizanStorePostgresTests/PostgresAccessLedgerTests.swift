import Foundation
import MizanCore
import MizanPostgresTesting
import MizanStore
import Testing

@testable import MizanStorePostgres

@Suite("PostgreSQL access ledger", .timeLimit(.minutes(2)))
struct PostgresAccessLedgerTests {
    /// A ledger on a fresh, migrated database, its statements counted.
    func withLedger(_ test: @Sendable (PostgresAccessLedger, StatementCounter) async throws -> Void) async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let statements = StatementCounter()
            let context = makeContext(client, statements: statements)
            try await context.client.schema.migrate()
            try await test(PostgresAccessLedger(context: context), statements)
        }
    }

    func record(_ request: String, key: String? = "k1", tokens: Int = 3, job: JobID? = nil) -> UsageRecord {
        UsageRecord(
            requestID: request, apiKeyID: key, model: "m1", servedBy: "node/a", status: 200, latencyMilliseconds: 5,
            usage: TokenUsage(promptTokens: tokens, completionTokens: tokens), createdAt: Date(), jobID: job)
    }

    @Test func keysAreCreatedFoundUpdatedAndRevoked() async throws {
        try await withLedger { ledger, _ in
            let hash = Data("secret-hash".utf8)
            let policy = KeyPolicy(limits: .init(requestsPerMinute: 5))
            let key = try await ledger.createAPIKey(APIKey(name: "ci", prefix: "mzn_sk_ci", createdAt: Date(), policy: policy), hash: hash)
            #expect(key.policy == policy)
            #expect(await mizanCode { try await ledger.createAPIKey(key, hash: hash) } == .conflict)
            #expect(try await ledger.apiKey(hash: hash)?.id == key.id)
            #expect(try await ledger.apiKey(hash: Data("unknown".utf8)) == nil)
            let renamed = try await ledger.updateAPIKey(key.id, name: "ci-2", policy: KeyPolicy())
            #expect(renamed.name == "ci-2" && renamed.policy == KeyPolicy())
            let firstRevocation = Date(timeIntervalSince1970: 1_700_000_000)
            _ = try await ledger.revokeAPIKey(key.id, now: firstRevocation)
            let again = try await ledger.revokeAPIKey(key.id, now: Date())
            #expect(again.revokedAt == firstRevocation, "the first revocation time is kept")
            #expect(try await ledger.apiKeys().map(\.id) == [key.id])
            #expect(await mizanCode { try await ledger.revokeAPIKey("missing", now: Date()) } == .notFound)
        }
    }

    @Test func recordsArrivingTogetherShareStatements() async throws {
        try await withLedger { ledger, statements in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<40 { group.addTask { try await ledger.recordUsage(record("r\(index)")) } }
                for try await counted in group { #expect(counted) }
            }
            #expect(statements.value < 40, "\(statements.value) statements for 40 records")
            let summary = try await ledger.usageSummary()
            #expect(summary.map(\.requests) == [40] && summary.first?.promptTokens == 120)
        }
    }

    @Test func anIdempotentJobsTokensCountOnce() async throws {
        try await withLedger { ledger, _ in
            let job = JobID()
            #expect(try await ledger.recordUsage(record("r1", job: job)))
            #expect(try await ledger.recordUsage(record("r2", job: job)) == false, "a retry with the same answer")
            let rows = try await ledger.usage(UsageQuery(groupBy: [.key]))
            #expect(rows.map(\.requests) == [2] && rows.first?.promptTokens == 3, "two requests, the tokens once")
            #expect(try await ledger.usageRecorded(requestID: "r2", createdAt: Date()) == false, "found by its exact time only")
        }
    }

    @Test func signedOutConsoleSessionsStayEnded() async throws {
        try await withLedger { ledger, _ in
            #expect(try await ledger.isConsoleSessionEnded("s1") == false)
            try await ledger.endConsoleSession("s1", expires: Date().addingTimeInterval(60), now: Date())
            try await ledger.endConsoleSession("s1", expires: Date().addingTimeInterval(60), now: Date())
            #expect(try await ledger.isConsoleSessionEnded("s1"))
            // An expired sign-out is forgotten by the next one.
            try await ledger.endConsoleSession("s2", expires: Date().addingTimeInterval(120), now: Date().addingTimeInterval(90))
            #expect(try await ledger.isConsoleSessionEnded("s1") == false)
        }
    }
}
