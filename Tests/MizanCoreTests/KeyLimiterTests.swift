import Foundation
import MizanCore
import Testing

@Suite("Key limits: the arithmetic every store runs")
struct KeyLimiterTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func admit(_ counters: inout KeyCounters, _ policy: KeyPolicy, at seconds: Double, hold: Double = 600) -> KeyAdmission {
        KeyLimiter.admit(
            &counters, policy: policy, holdID: UUID().uuidString, holdUntil: t0.addingTimeInterval(seconds + hold),
            now: t0.addingTimeInterval(seconds))
    }

    @Test(arguments: [1, 7, 60, 1000])
    func noSixtySecondsAdmitMoreThanTheBurstAndTheRefill(_ limit: Int) {
        // Requests every 50 ms for three minutes: in any window of w seconds the bucket admits at
        // most its size and what refills in w (limit × w / 60) — never a fixed window's 2×.
        let policy = KeyPolicy(limits: .init(requestsPerMinute: limit))
        var counters = KeyCounters()
        var admitted: [Double] = []
        for step in 0..<3600 {
            let at = Double(step) * 0.05
            if case .admitted = admit(&counters, policy, at: at) { admitted.append(at) }
            counters.holds = [:]
        }
        #expect(
            admitted.prefix(limit).enumerated().allSatisfy { abs($0.element - Double($0.offset) * 0.05) < 1e-9 },
            "a full bucket admits the first \(limit) requests in a row")
        for (index, start) in admitted.enumerated() {
            let inMinute = admitted[index...].prefix { $0 < start + 60 }.count
            #expect(inMinute <= limit + limit, "a minute from \(start) admits \(inMinute) of \(limit)")
        }
        let total = Double(admitted.count)
        let bound = Double(limit) + Double(limit) * 180 / 60
        #expect(total <= bound + 1 && total >= min(3600, bound) - 2, "over three minutes: \(admitted.count) for a bound of \(bound)")
    }

    @Test func aRefusalLeavesTheCountersAsTheyWere() {
        let policy = KeyPolicy(limits: .init(requestsPerMinute: 2, concurrentRequests: 1))
        var counters = KeyCounters()
        guard case .admitted = admit(&counters, policy, at: 0) else {
            Issue.record("the first is admitted")
            return
        }
        let before = counters
        guard case .refused(let refusal) = admit(&counters, policy, at: 1) else {
            Issue.record("the second is refused")
            return
        }
        #expect(refusal.reason == .concurrency)
        #expect(counters == before, "a request refused for concurrency does not spend a request")
    }

    @Test func headersAreWrittenAsOpenAIWritesThem() {
        #expect(RateLimitStatus.duration(0.0004) == "1ms")
        #expect(RateLimitStatus.duration(0.25) == "250ms")
        #expect(RateLimitStatus.duration(6) == "6s")
        #expect(RateLimitStatus.duration(59.2) == "60s" || RateLimitStatus.duration(59.2) == "1m0s")
        #expect(RateLimitStatus.duration(90) == "1m30s")
        let status = RateLimitStatus(
            requests: .init(limit: 60, remaining: 59, reset: 1), tokens: .init(limit: 1000, remaining: 900, reset: 6))
        #expect(
            status.headers.map { "\($0.0): \($0.1)" } == [
                "x-ratelimit-limit-requests: 60", "x-ratelimit-remaining-requests: 59", "x-ratelimit-reset-requests: 1s",
                "x-ratelimit-limit-tokens: 1000", "x-ratelimit-remaining-tokens: 900", "x-ratelimit-reset-tokens: 6s",
            ])
        #expect(RateLimitStatus().headers.isEmpty, "an unlimited key sends none")
    }

    @Test func aMonthlyBudgetRollsOverOnTheFirstOfTheMonthInUTC() throws {
        let policy = KeyPolicy(budget: .init(tokens: 10, period: .month))
        let march31 = try Date("2027-03-31T23:59:59Z", strategy: .iso8601)
        let april1 = try Date("2027-04-01T00:00:00Z", strategy: .iso8601)
        var counters = KeyCounters()
        KeyLimiter.finish(&counters, policy: policy, holdID: nil, tokens: 10, now: march31)
        guard case .refused(let refusal) = KeyLimiter.admit(&counters, policy: policy, holdID: "h", holdUntil: april1, now: march31) else {
            Issue.record("spent in March")
            return
        }
        #expect(refusal.retryAfter == 1, "a second until April")
        guard case .admitted = KeyLimiter.admit(&counters, policy: policy, holdID: "h", holdUntil: april1, now: april1) else {
            Issue.record("whole again on April 1st")
            return
        }
        #expect(KeyLimiter.periodTokens(counters, policy: policy, now: april1) == 0)
    }

    @Test func policiesAndPatchesReadAsTheAdminAPISendsThem() throws {
        let json =
            #"{"models":["a"],"limits":{"requestsPerMinute":60},"budget":{"tokens":5,"period":"total"},"expiresAt":"2027-01-01T00:00:00Z"}"#
        let policy = try JSONDecoder().decode(KeyPolicy.self, from: Data(json.utf8))
        #expect(policy.models == ["a"] && policy.limits?.requestsPerMinute == 60 && policy.budget?.period == .total)
        #expect(policy.expiresAt == (try Date("2027-01-01T00:00:00Z", strategy: .iso8601)))
        let again = try JSONDecoder().decode(KeyPolicy.self, from: try JSONEncoder().encode(policy))
        #expect(again == policy, "a policy survives its own JSON whatever the date strategy")
        #expect(try JSONDecoder().decode(KeyPolicy.self, from: Data(#"{"limits":{}}"#.utf8)).isCounted == false, "empty limits are none")
        let patch = try JSONDecoder().decode(KeyPolicyPatch.self, from: Data(#"{"models":null,"limits":{"tokensPerMinute":9}}"#.utf8))
        let patched = patch.applied(to: policy)
        #expect(patched.models == nil, "null removes")
        #expect(patched.limits == .init(tokensPerMinute: 9), "a value replaces")
        #expect(patched.budget == policy.budget && patched.expiresAt == policy.expiresAt, "absent keeps")
        #expect(throws: MizanError.self) { try KeyPolicy(limits: .init(requestsPerMinute: 0)).validate() }
        #expect(throws: MizanError.self) { try KeyPolicy(models: []).validate() }
    }

    @Test func countersSurviveTheirStoredForm() {
        let counters = KeyCounters(
            requestsTAT: 818_000_000.123456789, tokensTAT: nil, periodStart: 817_948_800, periodTokens: 42,
            holds: ["01a2-hold": 818_000_030.5, "01a3-hold": 818_000_031.25])
        #expect(KeyCounters.decoded(counters.encoded()) == counters, "\(counters.encoded())")
        #expect(KeyCounters.decoded(KeyCounters().encoded()) == KeyCounters())
        #expect(KeyCounters.decoded(counters.encodedAsJSON()) == counters, "the JSON form is read too")
        #expect(KeyCounters.decoded("garbage") == KeyCounters() && KeyCounters.decoded(nil) == KeyCounters())
    }
}

extension KeyCounters {
    func encodedAsJSON() -> String { String(decoding: try! JSONEncoder().encode(self), as: UTF8.self) }
}
