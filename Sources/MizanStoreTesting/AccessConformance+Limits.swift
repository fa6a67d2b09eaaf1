import Foundation
import MizanCore
import MizanStore

extension AccessConformance {
    /// A counted key (``KeyPolicy/isCounted``) with `policy`, created at ``Fixture/t0``.
    static func limitedKey(_ store: any AccessStore, _ policy: KeyPolicy) async throws -> APIKey {
        try await store.createAPIKey(
            APIKey(name: "limited", prefix: "mzn_sk_lim", createdAt: Fixture.at(0), policy: policy), hash: Fixture.hash())
    }

    /// Admits a request of `key` at `seconds` after ``Fixture/t0``, its hold lasting `hold` seconds.
    static func admit(_ store: any AccessStore, _ key: APIKey, at seconds: Double, hold: Double = 300) async throws -> KeyAdmission {
        try await store.admit(key, holdID: UUID().uuidString, holdUntil: Fixture.at(seconds + hold), now: Fixture.at(seconds))
    }

    static func refusal(_ admission: KeyAdmission) -> KeyRefusal? {
        if case .refused(let refusal) = admission { return refusal }
        return nil
    }

    /// The checks of per-key limits: the policy stored, each limit's arithmetic through the
    /// store, and concurrent admissions never exceeding a limit.
    static let limitChecks: [Check] = [
        Check("a key's queueing settings are stored, changed and removed") { store in
            let policy = KeyPolicy(limits: .init(requestsPerMinute: 60), priority: .interactive, weight: 7, maxQueued: 250)
            let hash = Fixture.hash()
            let key = try await store.createAPIKey(
                APIKey(name: "queued", prefix: "mzn_sk_qu", createdAt: Fixture.at(0), policy: policy), hash: hash)
            try require(key.policy == policy, "the created key has its settings: \(key.policy)")
            let found = try await store.apiKey(hash: hash)
            try require(found?.policy == policy, "the key is found with them: \(String(describing: found))")
            let batch = KeyPolicy(priority: .batch, weight: 100, maxQueued: 1_000_000)
            let changed = try await store.updateAPIKey(key.id, name: "queued", policy: batch)
            try require(changed.policy == batch, "they are changed: \(changed.policy)")
            try require(try await store.apiKey(hash: hash)?.policy == batch, "the key is found changed")
            try require(try await store.apiKeys().first { $0.id == key.id }?.policy == batch, "the listing has them")
            try require(try await store.apiKey(hash: hash)?.policy.isCounted == false, "queueing settings alone count nothing")
            let cleared = try await store.updateAPIKey(key.id, name: "queued", policy: KeyPolicy(priority: .standard))
            try require(cleared.policy == KeyPolicy(priority: .standard), "an explicit standard class is kept as set")
            let reread = try await store.apiKey(hash: hash)
            try require(
                reread?.policy.weight == nil && reread?.policy.maxQueued == nil && reread?.policy.priority == .standard,
                "removed settings stay removed: \(String(describing: reread))")
        },
        Check("a key's policy is stored, changed and removed") { store in
            let policy = KeyPolicy(
                models: ["m1", "m2"], limits: .init(requestsPerMinute: 60, tokensPerMinute: 1000, concurrentRequests: 4),
                budget: .init(tokens: 50_000, period: .month), expiresAt: Fixture.at(86_400))
            let hash = Fixture.hash()
            let key = try await store.createAPIKey(
                APIKey(name: "team-a", prefix: "mzn_sk_ta", createdAt: Fixture.at(0), policy: policy), hash: hash)
            try require(key.policy == policy, "the created key has its policy")
            let found = try await store.apiKey(hash: hash)
            try require(found?.policy == policy, "the key is found with its policy: \(String(describing: found))")
            let changed = try await store.updateAPIKey(key.id, name: "team-b", policy: KeyPolicy(models: ["m3"]))
            try require(changed.name == "team-b" && changed.policy == KeyPolicy(models: ["m3"]), "name and policy changed: \(changed)")
            try require(try await store.apiKeys().first?.policy == KeyPolicy(models: ["m3"]), "the listing has the new policy")
            try require(try await store.apiKey(hash: hash)?.policy.isCounted == false, "a key without limits or budget is not counted")
            try await requireThrows("changing an unknown key is an error", matching: Fixture.isCode(.notFound)) {
                _ = try await store.updateAPIKey("missing", name: "x", policy: KeyPolicy())
            }
            try await requireThrows("an unknown key has no counters", matching: Fixture.isCode(.notFound)) {
                _ = try await store.changeKeyCounters("missing") { _ in 0 }
            }
        },
        Check("requests per minute: a full bucket, then one every 60 / limit seconds") { store in
            let key = try await limitedKey(store, KeyPolicy(limits: .init(requestsPerMinute: 5)))
            for index in 0..<5 {
                guard case .admitted(_, let status) = try await admit(store, key, at: 0) else {
                    throw ConformanceFailure("request \(index + 1) of 5 at once is admitted", location: #fileID)
                }
                try require(status.requests?.remaining == 4 - index, "\(4 - index) requests left after \(index + 1): \(status)")
            }
            let refused = try require(refusal(try await admit(store, key, at: 1)), "the sixth in the minute is refused")
            try require(refused.reason == .requests, "refused for requests: \(refused)")
            try require(
                abs((refused.retryAfter ?? 0) - 11) < 0.01, "one is back 12 s after the burst: \(String(describing: refused.retryAfter))")
            try require(refused.error.httpStatus == 429 && refused.error.openAIType == "requests", "a 429 of type requests")
            try require(refusal(try await admit(store, key, at: 11.9)) != nil, "still refused just before")
            try require(refusal(try await admit(store, key, at: 12)) == nil, "one admitted 12 s on")
            try require(refusal(try await admit(store, key, at: 12.5)) != nil, "and only one")
            try require(refusal(try await admit(store, key, at: 72)) == nil, "a minute later the bucket is full again")
            let counters = try await store.keyCounters(key.id)
            try require(counters.holds.isEmpty, "a key without a concurrency limit keeps no holds: \(counters.holds.count)")
        },
        Check("concurrent admissions never exceed the limit") { store in
            let key = try await limitedKey(store, KeyPolicy(limits: .init(requestsPerMinute: 10)))
            let admitted = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<40 { group.addTask { refusal(try await admit(store, key, at: 0)) == nil } }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            try require(admitted == 10, "exactly 10 of 40 concurrent requests admitted: \(admitted)")
            let slots = try await limitedKey(store, KeyPolicy(limits: .init(concurrentRequests: 3)))
            let holding = try await withThrowingTaskGroup(of: String?.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        if case .admitted(let hold, _) = try await admit(store, slots, at: 0) { return hold }
                        return nil
                    }
                }
                return try await group.reduce(into: [String]()) { if let hold = $1 { $0.append(hold) } }
            }
            try require(holding.count == 3, "exactly 3 of 20 concurrent requests in flight: \(holding.count)")
            let refused = try require(refusal(try await admit(store, slots, at: 1)), "a fourth is refused")
            try require(refused.reason == .concurrency, "for concurrency: \(refused)")
            try await store.finish(slots, holdID: holding[0], tokens: 0, now: Fixture.at(2))
            try require(refusal(try await admit(store, slots, at: 3)) == nil, "one ends, one more is admitted")
            try require(refusal(try await admit(store, slots, at: 3)) != nil, "and no more")
        },
        Check("a hold lapses at its time, so that a gateway that died cannot leak a slot") { store in
            let key = try await limitedKey(store, KeyPolicy(limits: .init(concurrentRequests: 1)))
            try require(refusal(try await admit(store, key, at: 0, hold: 30)) == nil, "the first is admitted")
            try require(refusal(try await admit(store, key, at: 29)) != nil, "the slot is held until its time")
            try require(refusal(try await admit(store, key, at: 31)) == nil, "then it lapses and another is admitted")
        },
        Check("tokens per minute are counted as requests end, and refuse while the minute is full") { store in
            let key = try await limitedKey(store, KeyPolicy(limits: .init(tokensPerMinute: 100)))
            guard case .admitted(let hold, _) = try await admit(store, key, at: 0) else {
                throw ConformanceFailure("the first request is admitted", location: #fileID)
            }
            try require(refusal(try await admit(store, key, at: 0)) == nil, "tokens are not counted before a request ends")
            try await store.finish(key, holdID: hold, tokens: 150, now: Fixture.at(1))
            let refused = try require(refusal(try await admit(store, key, at: 2)), "150 tokens of 100 per minute: refused")
            try require(refused.reason == .tokens && refused.error.openAIType == "tokens", "for tokens: \(refused)")
            try require(
                abs((refused.retryAfter ?? 0) - 29) < 0.01,
                "until the minute's count is under 100: \(String(describing: refused.retryAfter))")
            try require(refused.status.tokens?.remaining == 0, "no tokens remaining: \(refused.status)")
            try require(refusal(try await admit(store, key, at: 31.5)) == nil, "admitted once the count is under the limit")
        },
        Check("a usage record ends its request's admission: the hold released, the tokens counted once") { store in
            let key = try await limitedKey(
                store, KeyPolicy(limits: .init(concurrentRequests: 1), budget: .init(tokens: 100, period: .total)))
            func admitNow() async throws -> String? {
                let admission = try await store.admit(
                    key, holdID: UUID().uuidString, holdUntil: Date().addingTimeInterval(300), now: Date())
                if case .admitted(let hold, _) = admission { return hold }
                return nil
            }
            let job = JobID()
            func record(_ request: String, of jobID: JobID? = job) -> UsageRecord {
                UsageRecord(
                    requestID: request, apiKeyID: key.id, model: "m1", servedBy: "node/a", status: 200, latencyMilliseconds: 1,
                    usage: TokenUsage(promptTokens: 20, completionTokens: 40, source: .provider), createdAt: Date(),
                    jobID: jobID)
            }
            let first = try require(try await admitNow(), "the first request is admitted")
            try require(try await admitNow() == nil, "its one slot is held")
            let counted = try await store.recordUsage(record("r1"), ending: KeyAdmissionEnd(key: key, holdID: first))
            try require(counted, "the first record of the job counts its tokens")
            let second = try require(try await admitNow(), "the slot is free once the record is made")
            let again = try await store.recordUsage(record("r2"), ending: KeyAdmissionEnd(key: key, holdID: second))
            try require(!again, "a retry answered by the same job counts no tokens")
            let counters = try await store.keyCounters(key.id)
            try require(counters.periodTokens == 60, "60 tokens counted once: \(counters.periodTokens)")
            try require(counters.holds.isEmpty, "both holds released: \(counters.holds.count)")
            let third = try require(try await admitNow(), "a third request, of no idempotent job")
            let plain = try await store.recordUsage(record("r3", of: nil), ending: KeyAdmissionEnd(key: key, holdID: third))
            try require(plain, "its record counts its tokens")
            let after = try await store.keyCounters(key.id)
            try require(after.periodTokens == 120 && after.holds.isEmpty, "120 tokens, no hold: \(after)")
            let summary = try await store.usage(UsageQuery(apiKeyID: key.id))
            try require(
                summary.map { [$0.requests, $0.promptTokens, $0.completionTokens] } == [[3, 40, 80]],
                "three records, the retry's without tokens: \(summary)")
            try require(try await admitNow() == nil, "120 tokens of a budget of 100: the next is refused")
        },
        Check("a usage record made without waiting ends its admission before the key's next change, and is written") { store in
            let key = try await limitedKey(
                store, KeyPolicy(limits: .init(concurrentRequests: 1), budget: .init(tokens: 1000, period: .total)))
            func admitNow() async throws -> String? {
                let admission = try await store.admit(
                    key, holdID: UUID().uuidString, holdUntil: Date().addingTimeInterval(300), now: Date())
                if case .admitted(let hold, _) = admission { return hold }
                return nil
            }
            var hold = try require(try await admitNow(), "the first request is admitted")
            for index in 1...20 {
                let record = UsageRecord(
                    requestID: "soon-\(index)", apiKeyID: key.id, model: "m1", servedBy: "route", status: 200, latencyMilliseconds: 1,
                    usage: TokenUsage(promptTokens: 2, completionTokens: 3, source: .provider), createdAt: Date())
                try await store.recordUsageSoon(record, ending: KeyAdmissionEnd(key: key, holdID: hold)) { _ in }
                // The next request at once: its admission comes after the end of the last one.
                hold = try require(try await admitNow(), "request \(index + 1) finds the one slot free")
            }
            let end = ContinuousClock.now + .seconds(10)
            var rows = try await store.usage(UsageQuery(apiKeyID: key.id))
            while rows.first?.requests != 20, ContinuousClock.now < end {
                try await Task.sleep(for: .milliseconds(10))
                rows = try await store.usage(UsageQuery(apiKeyID: key.id))
            }
            try require(
                rows.map { [$0.requests, $0.promptTokens, $0.completionTokens] } == [[20, 40, 60]],
                "the twenty records are written: \(rows)")
            let counters = try await store.keyCounters(key.id)
            try require(counters.periodTokens == 100 && counters.holds.count == 1, "100 tokens counted, one hold left: \(counters)")
        },
        Check("a token budget is spent, refused, and rolls over with its period") { store in
            // Fixture.t0 is 08:00 UTC; 16 hours on is the next UTC day.
            let key = try await limitedKey(store, KeyPolicy(budget: .init(tokens: 1000, period: .day)))
            guard case .admitted(let hold, _) = try await admit(store, key, at: 0) else {
                throw ConformanceFailure("the first request is admitted", location: #fileID)
            }
            try await store.finish(key, holdID: hold, tokens: 600, now: Fixture.at(10))
            try require(refusal(try await admit(store, key, at: 20)) == nil, "600 of 1000: admitted")
            try await store.finish(key, holdID: nil, tokens: 400, now: Fixture.at(30))
            let refused = try require(refusal(try await admit(store, key, at: 40)), "1000 of 1000: refused")
            try require(refused.reason == .budget && refused.error.code == .quotaExceeded, "as insufficient quota: \(refused)")
            try require(
                abs((refused.retryAfter ?? 0) - (57_600 - 40)) < 0.01, "until the next UTC day: \(String(describing: refused.retryAfter))")
            try require(refusal(try await admit(store, key, at: 57_599)) != nil, "refused until the day ends")
            try require(refusal(try await admit(store, key, at: 57_600)) == nil, "the next day's budget is whole")
            let total = try await limitedKey(store, KeyPolicy(budget: .init(tokens: 10, period: .total)))
            try await store.finish(total, holdID: nil, tokens: 10, now: Fixture.at(0))
            let spent = try require(refusal(try await admit(store, total, at: 10_000_000)), "a total budget never rolls over")
            try require(spent.retryAfter == nil, "and waiting does not help: no Retry-After")
        },
    ]
}
