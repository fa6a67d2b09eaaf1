import Foundation

/// What the store keeps per counted key between requests: the state of its request and token
/// buckets, its budget period's tokens, and the requests in flight. Times are seconds since
/// the reference date.
public struct KeyCounters: Sendable, Equatable, Codable {
    /// The request bucket's theoretical arrival time (a generic cell rate algorithm): the bucket
    /// is full when it is at or before now, and each request moves it 60 / limit seconds on.
    public var requestsTAT: Double?
    /// The same for tokens: each finished request moves it `tokens × 60 / limit` seconds on;
    /// requests are refused while it is a minute or more ahead of now.
    public var tokensTAT: Double?
    /// When the budget's period that ``periodTokens`` counts began.
    public var periodStart: Double?
    /// Tokens used in that period.
    public var periodTokens: Int
    /// Requests in flight: a hold's id and when it expires (a gateway that died cannot leak it).
    public var holds: [String: Double]

    /// Empty counters.
    public init(
        requestsTAT: Double? = nil, tokensTAT: Double? = nil, periodStart: Double? = nil, periodTokens: Int = 0,
        holds: [String: Double] = [:]
    ) {
        self.requestsTAT = requestsTAT
        self.tokensTAT = tokensTAT
        self.periodStart = periodStart
        self.periodTokens = periodTokens
        self.holds = holds
    }

    private enum CodingKeys: String, CodingKey {
        case requestsTAT = "r"
        case tokensTAT = "t"
        case periodStart = "ps"
        case periodTokens = "pt"
        case holds = "h"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        requestsTAT = try container.decodeIfPresent(Double.self, forKey: .requestsTAT)
        tokensTAT = try container.decodeIfPresent(Double.self, forKey: .tokensTAT)
        periodStart = try container.decodeIfPresent(Double.self, forKey: .periodStart)
        periodTokens = try container.decodeIfPresent(Int.self, forKey: .periodTokens) ?? 0
        holds = try container.decodeIfPresent([String: Double].self, forKey: .holds) ?? [:]
    }

    /// The counters as the stores keep them: `2|r|t|ps|pt|id=until;…` (empty fields for none;
    /// whole numbers as integers, other doubles in their shortest exact form) — written on every
    /// change of a counted key's counters, where JSON cost a twentieth of a limited request's CPU.
    public func encoded() -> String {
        var text = "2|"
        text.reserveCapacity(40 + holds.count * 26)
        Self.append(requestsTAT, to: &text)
        text += "|"
        Self.append(tokensTAT, to: &text)
        text += "|"
        Self.append(periodStart, to: &text)
        text += "|"
        text += String(periodTokens)
        text += "|"
        var first = true
        for (id, until) in holds {
            if !first { text += ";" }
            first = false
            text += id
            text += "="
            Self.append(until, to: &text)
        }
        return text
    }

    /// A number of the stored form: a whole number (a hold's expiry, a period's start) as an
    /// integer, cheaper to write than a double's shortest form and read back the same.
    private static func append(_ value: Double?, to text: inout String) {
        guard let value else { return }
        if value.rounded(.towardZero) == value, abs(value) < 1e15 {
            text += String(Int64(value))
        } else {
            text += value.description
        }
    }

    /// Drops the holds that lapsed by `now` (without copying the holds when none did: the usual case).
    mutating func dropLapsedHolds(at now: Double) {
        guard holds.values.contains(where: { $0 <= now }) else { return }
        holds = holds.filter { $0.value > now }
    }

    /// Counters from their stored form (empty when there is none or it cannot be read; JSON,
    /// an earlier form, is read too).
    public static func decoded(_ text: String?) -> KeyCounters {
        guard let text, !text.isEmpty else { return KeyCounters() }
        if text.hasPrefix("{") {
            return (try? JSONDecoder().decode(KeyCounters.self, from: Data(text.utf8))) ?? KeyCounters()
        }
        let fields = text.split(separator: "|", omittingEmptySubsequences: false)
        guard fields.count == 6, fields[0] == "2" else { return KeyCounters() }
        var holds: [String: Double] = [:]
        for hold in fields[5].split(separator: ";") {
            guard let equals = hold.firstIndex(of: "="), let until = Double(hold[hold.index(after: equals)...]) else { continue }
            holds[String(hold[..<equals])] = until
        }
        return KeyCounters(
            requestsTAT: Double(fields[1]), tokensTAT: Double(fields[2]), periodStart: Double(fields[3]),
            periodTokens: Int(fields[4]) ?? 0, holds: holds)
    }
}

/// Where a key stands against its limits, as OpenAI's `x-ratelimit-*` headers say it.
public struct RateLimitStatus: Sendable, Equatable {
    /// One limit: its size, what is left of it, and in how many seconds it is whole again.
    public struct Window: Sendable, Equatable {
        public var limit: Int
        public var remaining: Int
        public var reset: Double

        public init(limit: Int, remaining: Int, reset: Double) {
            self.limit = limit
            self.remaining = remaining
            self.reset = reset
        }
    }

    /// Requests per minute.
    public var requests: Window?
    /// Tokens per minute.
    public var tokens: Window?

    public init(requests: Window? = nil, tokens: Window? = nil) {
        self.requests = requests
        self.tokens = tokens
    }

    /// The headers, by name: `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`,
    /// `x-ratelimit-reset-requests` and the same for tokens, for the limits that are set.
    public var headers: [(String, String)] {
        var headers: [(String, String)] = []
        for (kind, value) in [("requests", requests), ("tokens", tokens)] {
            guard let value else { continue }
            headers.append(("x-ratelimit-limit-\(kind)", "\(value.limit)"))
            headers.append(("x-ratelimit-remaining-\(kind)", "\(value.remaining)"))
            headers.append(("x-ratelimit-reset-\(kind)", Self.duration(value.reset)))
        }
        return headers
    }

    /// A duration as OpenAI writes it: `20ms`, `6s`, `1m30s`.
    public static func duration(_ seconds: Double) -> String {
        let seconds = max(0, seconds)
        if seconds < 1 { return "\(Int((seconds * 1000).rounded(.up)))ms" }
        let whole = Int(seconds.rounded(.up))
        if whole < 60 { return "\(whole)s" }
        return "\(whole / 60)m\(whole % 60)s"
    }
}

/// Why a counted key's request was refused.
public struct KeyRefusal: Sendable, Equatable {
    /// What was over.
    public enum Reason: String, Sendable, Equatable {
        case requests, tokens, concurrency, budget
    }

    public var reason: Reason
    /// When to try again, in seconds (`nil` when waiting would not help: a total budget spent).
    public var retryAfter: Double?
    /// Where the key stands.
    public var status: RateLimitStatus

    public init(reason: Reason, retryAfter: Double?, status: RateLimitStatus) {
        self.reason = reason
        self.retryAfter = retryAfter
        self.status = status
    }

    /// The answer a client gets: 429 `rate_limit_exceeded` (type `requests` or `tokens`), or 429
    /// `insufficient_quota` for a spent budget.
    public var error: MizanError {
        var error: MizanError
        switch reason {
        case .requests:
            error = MizanError(.rateLimited, "Rate limit reached for requests per minute on this API key. Try again later.")
            error.openAITypeOverride = "requests"
        case .tokens:
            error = MizanError(.rateLimited, "Rate limit reached for tokens per minute on this API key. Try again later.")
            error.openAITypeOverride = "tokens"
        case .concurrency:
            error = MizanError(.rateLimited, "Too many requests in flight on this API key at once. Try again when one has finished.")
            error.openAITypeOverride = "requests"
        case .budget:
            error = MizanError(.quotaExceeded, "You exceeded this API key's token budget for its period.")
        }
        error.retryAfter = retryAfter
        return error
    }
}

/// A counted request's admission: the hold it keeps until it ends, or why it was refused.
public enum KeyAdmission: Sendable, Equatable {
    case admitted(holdID: String, status: RateLimitStatus)
    case refused(KeyRefusal)
}

/// The arithmetic of per-key limits, the same on every store: a store runs ``admit(_:policy:holdID:holdUntil:now:)``
/// and ``finish(_:policy:holdID:tokens:now:)`` as one atomic change of a key's counters.
///
/// Requests per minute are a token bucket of the limit's size refilled evenly over a minute
/// (a generic cell rate algorithm): at most the limit at once, then one every 60 / limit
/// seconds — never a fixed window that allows twice the limit across its boundary.
///
/// Tokens are **reserved at admission** — an estimate of what the request can use: its
/// prompt (from the body's size) and its output limit (`max_tokens` and its kin, or a default)
/// — and **settled** to the real count when it ends (the figure of its usage record). A request
/// is refused while the last minute's tokens (or the budget period's), reservations of requests
/// in flight included, are at or over the limit. So a burst of parallel requests is admitted
/// only as far as their reservations fit, and what can overrun a limit is bounded: the last
/// admitted request's reservation past what was left, plus what requests use beyond their
/// reservation (only those that name no output limit can).
public enum KeyLimiter {
    /// Admits a request or says why not, changing the counters only when it is admitted.
    /// - Parameter reserve: The tokens reserved for the request until it ends (counted in the
    ///   minute's tokens and the budget's period at once; ``finish(_:policy:holdID:tokens:reserved:now:)`` settles them).
    public static func admit(
        _ counters: inout KeyCounters, policy: KeyPolicy, holdID: String, holdUntil: Date, now: Date, reserve: Int = 0
    ) -> KeyAdmission {
        let now = now.timeIntervalSinceReferenceDate
        counters.dropLapsedHolds(at: now)
        if let budget = policy.budget {
            let start = budget.periodStart(of: Date(timeIntervalSinceReferenceDate: now)).timeIntervalSinceReferenceDate
            if counters.periodStart == start, counters.periodTokens >= budget.tokens {
                let end = budget.periodEnd(of: Date(timeIntervalSinceReferenceDate: now)).map { $0.timeIntervalSinceReferenceDate - now }
                return .refused(KeyRefusal(reason: .budget, retryAfter: end, status: status(counters, policy: policy, now: now)))
            }
        }
        if policy.limits?.tokensPerMinute != nil, let tat = counters.tokensTAT, tat - now >= 60 {
            // Refused until the minute's tokens are under the limit again.
            return .refused(KeyRefusal(reason: .tokens, retryAfter: tat - now - 60, status: status(counters, policy: policy, now: now)))
        }
        var requestsTAT = counters.requestsTAT
        if let limit = policy.limits?.requestsPerMinute {
            let interval = 60 / Double(limit)
            let tat = max(counters.requestsTAT ?? now, now)
            // Full bucket: `limit` requests at once; the tolerance is the rest of the minute.
            guard tat - now <= 60 - interval + 1e-9 else {
                return .refused(
                    KeyRefusal(
                        reason: .requests, retryAfter: tat - (60 - interval) - now, status: status(counters, policy: policy, now: now)))
            }
            requestsTAT = tat + interval
        }
        if let limit = policy.limits?.concurrentRequests, counters.holds.count >= limit {
            let soonest = counters.holds.values.min().map { $0 - now } ?? 1
            return .refused(
                KeyRefusal(reason: .concurrency, retryAfter: min(1, soonest), status: status(counters, policy: policy, now: now)))
        }
        // Admitted: the counters change in place (the holds are not copied). Holds are kept
        // only where they are counted — a key without a concurrency limit carries none in its
        // counters — and lapse on a whole second (the shorter stored form).
        counters.requestsTAT = requestsTAT
        if policy.limits?.concurrentRequests != nil { counters.holds[holdID] = holdUntil.timeIntervalSinceReferenceDate.rounded(.up) }
        if reserve > 0 { count(&counters, policy: policy, tokens: reserve, at: now) }
        return .admitted(holdID: holdID, status: status(counters, policy: policy, now: now))
    }

    /// Adds `tokens` (negative: takes them back) to the minute's tokens and the budget's period.
    private static func count(_ counters: inout KeyCounters, policy: KeyPolicy, tokens: Int, at seconds: Double) {
        if let limit = policy.limits?.tokensPerMinute {
            counters.tokensTAT = max(seconds, max(counters.tokensTAT ?? seconds, seconds) + Double(tokens) * 60 / Double(limit))
        }
        if let budget = policy.budget {
            let start = budget.periodStart(of: Date(timeIntervalSinceReferenceDate: seconds)).timeIntervalSinceReferenceDate
            if counters.periodStart != start {
                counters.periodStart = start
                counters.periodTokens = 0
            }
            counters.periodTokens = max(0, counters.periodTokens + tokens)
        }
    }

    /// Ends a request: its hold is released and its tokens counted in the minute and the budget's
    /// period, settling what its admission reserved (the difference is added, or given back).
    /// - Parameters:
    ///   - reserved: The tokens its admission reserved.
    ///   - admittedAt: When it was admitted: a reservation made in a budget period that has
    ///     ended since is not given back from this one (its tokens count here in full).
    public static func finish(
        _ counters: inout KeyCounters, policy: KeyPolicy, holdID: String?, tokens: Int, reserved: Int = 0, admittedAt: Date? = nil,
        now: Date
    ) {
        let seconds = now.timeIntervalSinceReferenceDate
        if let holdID { counters.holds[holdID] = nil }
        counters.dropLapsedHolds(at: seconds)
        let tokens = max(0, tokens)
        let reserved = max(0, reserved)
        if let budget = policy.budget, reserved > 0, let admittedAt,
            budget.periodStart(of: admittedAt) != budget.periodStart(of: now)
        {
            // The reservation was counted in a period that has ended: the tokens count in this one.
            count(&counters, policy: policy.withoutTokenLimit, tokens: tokens, at: seconds)
            count(&counters, policy: policy.withoutBudget, tokens: tokens - reserved, at: seconds)
            return
        }
        count(&counters, policy: policy, tokens: tokens - reserved, at: seconds)
    }

    /// Where the counters stand at `now` against the policy's rates.
    public static func status(_ counters: KeyCounters, policy: KeyPolicy, now: Double) -> RateLimitStatus {
        var status = RateLimitStatus()
        if let limit = policy.limits?.requestsPerMinute {
            let interval = 60 / Double(limit)
            let ahead = max(0, (counters.requestsTAT ?? now) - now)
            let remaining = max(0, min(limit, Int(((60 - ahead) / interval + 1e-9).rounded(.down))))
            status.requests = .init(limit: limit, remaining: remaining, reset: ahead)
        }
        if let limit = policy.limits?.tokensPerMinute {
            let ahead = max(0, (counters.tokensTAT ?? now) - now)
            let used = Int((ahead * Double(limit) / 60).rounded(.up))
            status.tokens = .init(limit: limit, remaining: max(0, limit - used), reset: ahead)
        }
        return status
    }

    /// Tokens used in the budget's current period at `now`.
    public static func periodTokens(_ counters: KeyCounters, policy: KeyPolicy, now: Date) -> Int {
        guard let budget = policy.budget, counters.periodStart == budget.periodStart(of: now).timeIntervalSinceReferenceDate else {
            return 0
        }
        return counters.periodTokens
    }
}
