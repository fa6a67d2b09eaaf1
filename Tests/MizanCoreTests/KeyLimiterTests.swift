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

    @Test func budgetPeriodsAreTheUTCCalendarsDaysAndMonths() {
        // The periods are found by arithmetic: they must be what a UTC Gregorian calendar says,
        // at random instants from 1900 to 2400 and on either side of every month's first midnight.
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        var generator = SystemRandomNumberGenerator()
        var instants = (0..<2000).map { _ in
            Date(timeIntervalSince1970: Double.random(in: -2_208_988_800...13_569_465_600, using: &generator))
        }
        for year in [1900, 1999, 2000, 2024, 2027, 2100] {
            for month in 1...12 {
                let first = calendar.date(from: DateComponents(year: year, month: month, day: 1))!
                instants += [first, first.addingTimeInterval(-0.001), first.addingTimeInterval(0.001)]
            }
        }
        for date in instants {
            let month = KeyPolicy.Budget(tokens: 1, period: .month)
            let monthStart = calendar.date(from: calendar.dateComponents([.year, .month], from: date))!
            #expect(month.periodStart(of: date) == monthStart, "\(date)")
            #expect(month.periodEnd(of: date) == calendar.date(byAdding: .month, value: 1, to: monthStart), "\(date)")
            let day = KeyPolicy.Budget(tokens: 1, period: .day)
            #expect(day.periodStart(of: date) == calendar.startOfDay(for: date), "\(date)")
            #expect(day.periodEnd(of: date) == calendar.date(byAdding: .day, value: 1, to: calendar.startOfDay(for: date)), "\(date)")
        }
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

    /// A burst of parallel requests each reserves its estimate at admission: only as many are
    /// admitted as their reservations fit, and each end settles its reservation to the real count.
    @Test func reservationsBoundABurstAndSettleToTheRealCount() {
        let policy = KeyPolicy(budget: .init(tokens: 100, period: .total))
        var counters = KeyCounters()
        var admitted = 0
        for _ in 0..<40 {
            let now = t0.addingTimeInterval(1)
            if case .admitted = KeyLimiter.admit(
                &counters, policy: policy, holdID: "h", holdUntil: now.addingTimeInterval(60), now: now, reserve: 60)
            {
                admitted += 1
            }
        }
        #expect(admitted == 2, "60 reserved, then 120: the third is refused")
        #expect(counters.periodTokens == 120)
        // Each used 54: the budget stands at 108, the overrun the last admission's reservation allowed.
        KeyLimiter.finish(&counters, policy: policy, holdID: "h", tokens: 54, reserved: 60, now: t0.addingTimeInterval(2))
        KeyLimiter.finish(&counters, policy: policy, holdID: "h", tokens: 54, reserved: 60, now: t0.addingTimeInterval(2))
        #expect(counters.periodTokens == 108)

        let perMinute = KeyPolicy(limits: .init(tokensPerMinute: 200))
        var minute = KeyCounters()
        var inMinute = 0
        for _ in 0..<50 {
            if case .admitted = KeyLimiter.admit(
                &minute, policy: perMinute, holdID: "h", holdUntil: t0.addingTimeInterval(60), now: t0, reserve: 150)
            {
                inMinute += 1
            }
        }
        #expect(inMinute == 2, "150 tokens reserved fill 45 s of the minute's 60: a second fits, a third does not")
        // Settled to 54 each: what was reserved beyond is given back, and a next request fits.
        KeyLimiter.finish(&minute, policy: perMinute, holdID: "h", tokens: 54, reserved: 150, now: t0)
        KeyLimiter.finish(&minute, policy: perMinute, holdID: "h", tokens: 54, reserved: 150, now: t0)
        #expect(abs((minute.tokensTAT ?? 0) - (t0.timeIntervalSinceReferenceDate + 108 * 0.3)) < 1e-6)
        guard
            case .admitted = KeyLimiter.admit(
                &minute, policy: perMinute, holdID: "h", holdUntil: t0.addingTimeInterval(60), now: t0, reserve: 10)
        else {
            Issue.record("a request fits once the reservations are settled")
            return
        }
    }

    @Test func aReservationMadeInAnEndedPeriodCountsTheTokensInTheNewOne() {
        let policy = KeyPolicy(budget: .init(tokens: 1000, period: .day))
        var counters = KeyCounters()
        let lateEvening = Date(timeIntervalSince1970: 1_800_057_590)  // 23:59:50 UTC
        _ = KeyLimiter.admit(
            &counters, policy: policy, holdID: "h", holdUntil: lateEvening.addingTimeInterval(60), now: lateEvening, reserve: 300)
        #expect(counters.periodTokens == 300)
        // Another request is admitted in the new day first: the counters' period is the new one.
        let nextDay = lateEvening.addingTimeInterval(15)
        _ = KeyLimiter.admit(
            &counters, policy: policy, holdID: "h2", holdUntil: nextDay.addingTimeInterval(60), now: nextDay, reserve: 100)
        #expect(KeyLimiter.periodTokens(counters, policy: policy, now: nextDay) == 100)
        KeyLimiter.finish(
            &counters, policy: policy, holdID: "h", tokens: 40, reserved: 300, admittedAt: lateEvening,
            now: lateEvening.addingTimeInterval(20))
        #expect(
            KeyLimiter.periodTokens(counters, policy: policy, now: lateEvening.addingTimeInterval(20)) == 140,
            "the new day holds the other request's reservation and this one's tokens, none of yesterday's reservation")
    }
}

extension KeyCounters {
    func encodedAsJSON() -> String { String(decoding: try! JSONEncoder().encode(self), as: UTF8.self) }

}
