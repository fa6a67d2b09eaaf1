import Foundation
import MizanCore
import MizanStore
import MizanStoreSQLite
import Testing

@Suite("SQLite access ledger", .timeLimit(.minutes(1)))
struct SQLiteAccessLedgerTests {
    /// A ledger on a fresh file.
    func withLedger(_ body: (SQLiteAccessLedger, SQLiteFile) async throws -> Void) async throws {
        try await withSQLiteFile { file, _ in try await body(SQLiteAccessLedger(connections: file.connections), file) }
    }

    func record(key: String?, job: JobID? = nil, tokens: Int = 10) -> UsageRecord {
        UsageRecord(
            requestID: UUID().uuidString, apiKeyID: key, model: "m1", servedBy: "node/a", status: 200, latencyMilliseconds: 1,
            usage: TokenUsage(promptTokens: tokens, completionTokens: 1), createdAt: Date(), jobID: job)
    }

    @Test func keysAreCreatedOnceFoundByHashRenamedAndRevokedOnce() async throws {
        try await withLedger { ledger, _ in
            let key = try await ledger.createAPIKey(APIKey(name: "k", prefix: "mzn_sk_led", createdAt: Date()), hash: Data([9]))
            await #expect(throws: MizanError.self) { _ = try await ledger.createAPIKey(key, hash: Data([9])) }
            #expect(try await ledger.apiKey(hash: Data([9])) == key)
            let renamed = try await ledger.updateAPIKey(key.id, name: "k2", policy: KeyPolicy())
            let keys = try await ledger.apiKeys()
            #expect(renamed.name == "k2" && keys == [renamed])
            let revoked = try await ledger.revokeAPIKey(key.id, now: Date(timeIntervalSinceReferenceDate: 100))
            let again = try await ledger.revokeAPIKey(key.id, now: Date(timeIntervalSinceReferenceDate: 200))
            #expect(revoked.revokedAt == Date(timeIntervalSinceReferenceDate: 100) && again.revokedAt == revoked.revokedAt)
            await #expect(throws: MizanError.self) { _ = try await ledger.revokeAPIKey("missing", now: Date()) }
        }
    }

    @Test func aJobsTokensCountOnItsFirstRecordOnly() async throws {
        try await withLedger { ledger, _ in
            let job = JobID()
            #expect(try await ledger.recordUsage(record(key: "a", job: job)))
            #expect(try await ledger.recordUsage(record(key: "a", job: job)) == false)
            #expect(try await ledger.recordUsage(record(key: "b")))
            let summary = try await ledger.usageSummary()
            #expect(summary.map(\.requests) == [2, 1] && summary.map(\.promptTokens) == [10, 10])
            let byKey = try await ledger.usage(UsageQuery(apiKeyID: "a"))
            #expect(byKey.map(\.requests) == [2])
        }
    }

    @Test func changedCountersReachTheFileWhenStored() async throws {
        try await withLedger { ledger, _ in
            let key = try await ledger.createAPIKey(APIKey(name: "k", prefix: "mzn_sk_ctr", createdAt: Date()), hash: Data([8]))
            let tokens = try await ledger.changeKeyCounters(key.id) { counters in
                counters.periodTokens += 42
                return counters.periodTokens
            }
            let counters = try await ledger.keyCounters(key.id)
            #expect(tokens == 42 && counters.periodTokens == 42)
            #expect(try await ledger.storedKeyCounters(key.id).periodTokens == 0, "in memory until stored")
            try await ledger.storeKeyCounters()
            #expect(try await ledger.storedKeyCounters(key.id).periodTokens == 42)
            await #expect(throws: MizanError.self) { _ = try await ledger.keyCounters("missing") }
        }
    }

    @Test func aSignedOutConsoleSessionStaysEndedUntilItExpires() async throws {
        try await withLedger { ledger, _ in
            let now = Date()
            try await ledger.endConsoleSession("s1", expires: now + 60, now: now)
            #expect(try await ledger.isConsoleSessionEnded("s1"))
            #expect(try await ledger.isConsoleSessionEnded("s2") == false)
            // The next sign-out clears the sessions that have expired.
            try await ledger.endConsoleSession("s2", expires: now + 600, now: now + 120)
            #expect(try await ledger.isConsoleSessionEnded("s1") == false)
        }
    }
}
