import Foundation
import MizanCore
import MizanStore

/// The checks every ``AccessStore`` (API keys and usage) must pass; each expects a fresh store.
public enum AccessConformance {
    /// One named check of an ``AccessStore``.
    public typealias Check = ConformanceCheck<any AccessStore>

    /// Every check.
    public static var checks: [Check] { baseChecks + limitChecks + usageChecks }

    /// The checks of keys and usage.
    static let baseChecks: [Check] = [
        Check("API keys are found by hash and revoked") { store in
            let hash = Fixture.hash("key")
            let key = try await store.createAPIKey(APIKey(name: "ci", prefix: "mzn_sk_ab", createdAt: Fixture.at(0)), hash: hash)
            try require(key.isActive && key.name == "ci", "a new key is active")
            let other = try await store.createAPIKey(
                APIKey(name: "other", prefix: "mzn_sk_cd", createdAt: Fixture.at(1)), hash: Fixture.hash())
            try require(try await store.apiKey(hash: hash)?.id == key.id, "the key is found by its hash")
            try require(try await store.apiKey(hash: Fixture.hash()) == nil, "an unknown hash finds nothing")
            try require(try await store.apiKeys().map(\.id) == [key.id, other.id], "keys list oldest first")
            try await requireThrows("a duplicate hash is refused", matching: Fixture.isCode(.conflict)) {
                _ = try await store.createAPIKey(APIKey(name: "dup", prefix: "x", createdAt: Fixture.at(2)), hash: hash)
            }
            let revoked = try await store.revokeAPIKey(key.id, now: Fixture.at(5))
            try require(revoked.revokedAt == Fixture.at(5) && !revoked.isActive, "the key is revoked")
            try require(try await store.apiKey(hash: hash)?.isActive == false, "a revoked key is found as revoked")
            let again = try await store.revokeAPIKey(key.id, now: Fixture.at(9))
            try require(again.revokedAt == Fixture.at(5), "revoking twice keeps the first time")
            try await requireThrows("revoking an unknown key is an error", matching: Fixture.isCode(.notFound)) {
                _ = try await store.revokeAPIKey("missing", now: Fixture.at(9))
            }
        },
        Check("a stored usage record is found by its request id and time") { store in
            let record = UsageRecord(
                requestID: "found", apiKeyID: nil, model: "m", servedBy: "r", status: 200, latencyMilliseconds: 1,
                usage: TokenUsage(promptTokens: 1, completionTokens: 1), createdAt: Fixture.at(12.345678))
            try require(try await store.usageRecorded(requestID: "found", createdAt: record.createdAt) == false, "not before it is")
            try await store.recordUsage(record)
            try require(try await store.usageRecorded(requestID: "found", createdAt: record.createdAt), "found once stored")
            try require(
                try await store.usageRecorded(requestID: "found", createdAt: Fixture.at(13)) == false, "another time is another record")
        },
        Check("a console session signed out stays signed out") { store in
            try require(try await store.isConsoleSessionEnded("s1") == false, "a session is not ended before its sign-out")
            try await store.endConsoleSession("s1", expires: Fixture.at(3600), now: Fixture.at(0))
            try await store.endConsoleSession("s1", expires: Fixture.at(3600), now: Fixture.at(1))
            try require(try await store.isConsoleSessionEnded("s1"), "a signed-out session is ended")
            try require(try await store.isConsoleSessionEnded("s2") == false, "another session is not")
        },
        Check("usage sums per key and model") { store in
            func record(_ key: String?, _ model: String, _ usage: TokenUsage?) async throws {
                try await store.recordUsage(
                    UsageRecord(
                        requestID: UUID().uuidString, apiKeyID: key, model: model, servedBy: "route-a", status: 200,
                        latencyMilliseconds: 12.5, usage: usage, createdAt: Fixture.at(1))
                )
            }
            try await record("k1", "m1", TokenUsage(promptTokens: 3, completionTokens: 5))
            try await record("k1", "m1", TokenUsage(promptTokens: 1, completionTokens: 2, source: .estimated))
            try await record("k1", "m2", nil)
            try await record(nil, "m1", TokenUsage(promptTokens: 7, completionTokens: 0))
            let summary = try await store.usageSummary()
            try require(
                summary == [
                    UsageSummary(apiKeyID: nil, model: "m1", requests: 1, promptTokens: 7, completionTokens: 0),
                    UsageSummary(apiKeyID: "k1", model: "m1", requests: 2, promptTokens: 4, completionTokens: 7),
                    UsageSummary(apiKeyID: "k1", model: "m2", requests: 1, promptTokens: 0, completionTokens: 0),
                ],
                "usage is summed per key and model: \(summary)"
            )
        },
        Check("an idempotent job's tokens count once however many requests it answered") { store in
            let job = JobID()
            func record(_ jobID: JobID?, tokens: Int) async throws -> Bool {
                try await store.recordUsage(
                    UsageRecord(
                        requestID: UUID().uuidString, apiKeyID: "k1", model: "m1", servedBy: "node/n", status: 200,
                        latencyMilliseconds: 3, usage: TokenUsage(promptTokens: tokens, completionTokens: tokens), createdAt: Fixture.at(1),
                        jobID: jobID)
                )
            }
            let counted = [
                try await record(job, tokens: 10), try await record(job, tokens: 10), try await record(job, tokens: 10),
                try await record(JobID(), tokens: 1), try await record(nil, tokens: 2), try await record(nil, tokens: 2),
            ]
            try require(counted == [true, false, false, true, true, true], "each record says whether it counted its tokens: \(counted)")
            let summary = try await store.usageSummary()
            try require(
                summary == [UsageSummary(apiKeyID: "k1", model: "m1", requests: 6, promptTokens: 15, completionTokens: 15)],
                "each request is counted, the retried job's tokens once: \(summary)"
            )
        },
    ]
}
