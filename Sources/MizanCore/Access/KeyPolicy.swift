import Foundation

/// What a client API key may do: which models, how much per minute, how many at once, how many
/// tokens per period, until when; and how its requests queue for agent nodes (class, weight, a
/// cap on those waiting). Every part is optional; a key with none behaves as an unlimited
/// standard key of weight 1.
public struct KeyPolicy: Sendable, Equatable, Codable {
    /// Rates and concurrency.
    public struct Limits: Sendable, Equatable, Codable {
        /// Requests admitted per minute (a token bucket of this size, refilled evenly over a minute).
        public var requestsPerMinute: Int?
        /// Tokens per minute, counted when requests end; a request is refused while the minute's
        /// tokens are at or over it.
        public var tokensPerMinute: Int?
        /// Requests in flight at once.
        public var concurrentRequests: Int?

        /// Creates limits.
        public init(requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil, concurrentRequests: Int? = nil) {
            self.requestsPerMinute = requestsPerMinute
            self.tokensPerMinute = tokensPerMinute
            self.concurrentRequests = concurrentRequests
        }

        /// Whether no limit is set.
        public var isEmpty: Bool { requestsPerMinute == nil && tokensPerMinute == nil && concurrentRequests == nil }
    }

    /// A token budget per period.
    public struct Budget: Sendable, Equatable, Codable {
        /// The period a budget counts over: a UTC day, a UTC calendar month, or the key's life.
        public enum Period: String, Sendable, Equatable, Codable, CaseIterable {
            case day, month, total
        }

        /// The tokens allowed per period.
        public var tokens: Int
        /// The period.
        public var period: Period

        /// Creates a budget.
        public init(tokens: Int, period: Period) {
            self.tokens = tokens
            self.period = period
        }

        /// When the period holding `date` began (the distant past for `total`).
        public func periodStart(of date: Date) -> Date {
            switch period {
            case .total: return Date(timeIntervalSinceReferenceDate: 0)
            // The reference date is a UTC midnight: a day's start is a floor.
            case .day: return Date(timeIntervalSinceReferenceDate: (date.timeIntervalSinceReferenceDate / 86_400).rounded(.down) * 86_400)
            case .month:
                let (year, month) = Self.month(of: date)
                return Self.start(ofMonth: month, year: year)
            }
        }

        /// When the period holding `date` ends (`nil` for `total`).
        public func periodEnd(of date: Date) -> Date? {
            switch period {
            case .total: return nil
            case .day: return periodStart(of: date).addingTimeInterval(86_400)
            case .month:
                let (year, month) = Self.month(of: date)
                return month == 12 ? Self.start(ofMonth: 1, year: year + 1) : Self.start(ofMonth: month + 1, year: year)
            }
        }

        // UTC calendar months by arithmetic (a `Calendar` costs tens of microseconds to make and
        // ask, and this runs on every admission and every end of a limited key's request).

        /// The UTC year and month holding `date` (clamped to about ±5 million years).
        static func month(of date: Date) -> (year: Int64, month: Int64) {
            let days = (date.timeIntervalSince1970 / 86_400).rounded(.down)
            let clamped = days.isNaN ? 0 : Int64(max(-2e9, min(2e9, days)))
            let civil = ISO8601Text.civil(fromDaysSince1970: clamped)
            return (civil.year, civil.month)
        }

        /// The UTC midnight that begins a month.
        static func start(ofMonth month: Int64, year: Int64) -> Date {
            Date(timeIntervalSince1970: Double(ISO8601Text.daysSince1970(year: year, month: month, day: 1)) * 86_400)
        }
    }

    /// The models the key may use (`nil`: every model). Others answer as unknown models.
    public var models: [String]?
    /// Rates and concurrency.
    public var limits: Limits?
    /// A token budget.
    public var budget: Budget?
    /// When the key stops working.
    public var expiresAt: Date?
    /// The class the key's requests queue in for agent nodes (`nil`: standard); see
    /// ``priorityClass``.
    public var priority: PriorityClass?
    /// The key's share among keys of its class while requests wait for agent nodes, 1 to
    /// ``maxWeight`` (`nil`: 1); see ``shareWeight``.
    public var weight: Int?
    /// The most of the key's requests that may wait for an agent node at once, 1 to
    /// ``maxQueuedLimit`` (`nil`: no cap); beyond it a request is refused at once.
    public var maxQueued: Int?

    /// Creates a policy.
    /// - Parameters:
    ///   - models: The models the key may use (`nil`: every model).
    ///   - limits: Rates and concurrency (empty limits are none).
    ///   - budget: A token budget.
    ///   - expiresAt: When the key stops working.
    ///   - priority: The class its requests queue in (`nil`: standard).
    ///   - weight: Its share among keys of its class (`nil`: 1).
    ///   - maxQueued: The most of its requests waiting for a node at once (`nil`: no cap).
    public init(
        models: [String]? = nil, limits: Limits? = nil, budget: Budget? = nil, expiresAt: Date? = nil, priority: PriorityClass? = nil,
        weight: Int? = nil, maxQueued: Int? = nil
    ) {
        self.models = models
        self.limits = limits.flatMap { $0.isEmpty ? nil : $0 }
        self.budget = budget
        self.expiresAt = expiresAt
        self.priority = priority
        self.weight = weight
        self.maxQueued = maxQueued
    }

    /// The class the key's requests queue in: ``priority``, or `standard`.
    public var priorityClass: PriorityClass { priority ?? .standard }

    /// The key's share among keys of its class while requests wait: ``weight``, or 1.
    public var shareWeight: Int { weight ?? 1 }

    private enum CodingKeys: String, CodingKey {
        case models, limits, budget, expiresAt, priority, weight, maxQueued
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            models: try container.decodeIfPresent([String].self, forKey: .models),
            limits: try container.decodeIfPresent(Limits.self, forKey: .limits),
            budget: try container.decodeIfPresent(Budget.self, forKey: .budget),
            expiresAt: try container.decodeIfPresent(String.self, forKey: .expiresAt).map(Self.date),
            priority: try container.decodeIfPresent(String.self, forKey: .priority).map(Self.priorityClass),
            weight: try container.decodeIfPresent(Int.self, forKey: .weight),
            maxQueued: try container.decodeIfPresent(Int.self, forKey: .maxQueued))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(models, forKey: .models)
        try container.encodeIfPresent(limits, forKey: .limits)
        try container.encodeIfPresent(budget, forKey: .budget)
        try container.encodeIfPresent(expiresAt.map(Self.text), forKey: .expiresAt)
        try container.encodeIfPresent(priority, forKey: .priority)
        try container.encodeIfPresent(weight, forKey: .weight)
        try container.encodeIfPresent(maxQueued, forKey: .maxQueued)
    }

    /// A class from its name, refused with the names allowed.
    static func priorityClass(_ name: String) throws -> PriorityClass {
        guard let priority = PriorityClass(rawValue: name) else {
            throw MizanError(.badRequest, "priority must be \(PriorityClass.names) (leave it out for standard).")
        }
        return priority
    }

    /// An expiry from its ISO 8601 text (`2027-01-01T00:00:00Z`, fractions of a second allowed),
    /// whatever the decoder's date strategy: a policy reads the same from the admin API and a store.
    static func date(_ text: String) throws -> Date {
        guard let date = ISO8601Text.date(from: text) else {
            throw MizanError(.badRequest, "expiresAt must be an ISO 8601 date and time, e.g. 2027-01-01T00:00:00Z.")
        }
        return date
    }

    static func text(_ date: Date) -> String { ISO8601Text.text(date) }

    /// Whether requests of the key are counted by the store (a rate, concurrency or budget is set;
    /// the queueing settings are not admission limits and count nothing).
    public var isCounted: Bool { limits != nil || budget != nil }

    /// Whether the policy counts tokens (a tokens-per-minute limit or a budget): its requests
    /// reserve tokens at admission.
    public var countsTokens: Bool { limits?.tokensPerMinute != nil || budget != nil }

    /// The policy without its tokens-per-minute limit.
    var withoutTokenLimit: KeyPolicy {
        var policy = self
        policy.limits?.tokensPerMinute = nil
        return policy
    }

    /// The policy without its budget.
    var withoutBudget: KeyPolicy {
        var policy = self
        policy.budget = nil
        return policy
    }

    /// Whether the key may use `model`.
    public func allows(_ model: String) -> Bool { models?.contains(model) ?? true }

    /// Whether the key has expired at `now`.
    public func hasExpired(at now: Date) -> Bool { expiresAt.map { $0 <= now } ?? false }

    /// The most models an allow-list holds, and the longest name.
    public static let maxModels = 256
    public static let maxModelName = 256
    /// The largest rate, concurrency or budget accepted (beyond it, leave the limit unset).
    public static let maxLimit = 1_000_000_000_000
    /// The largest ``weight``.
    public static let maxWeight = 100
    /// The largest ``maxQueued``.
    public static let maxQueuedLimit = 1_000_000

    /// Checks the values (an expiry may be in the past: the key is expired at once).
    /// - Throws: `MizanError` `badRequest` naming the field.
    public func validate() throws {
        if let models {
            guard !models.isEmpty, models.count <= Self.maxModels else {
                throw MizanError(.badRequest, "models must list 1 to \(Self.maxModels) model names (leave it out to allow every model).")
            }
            for model in models where model.isEmpty || model.unicodeScalars.count > Self.maxModelName {
                throw MizanError(.badRequest, "Each name in models must be 1 to \(Self.maxModelName) characters.")
            }
        }
        let values: [(String, Int?)] = [
            ("limits.requestsPerMinute", limits?.requestsPerMinute), ("limits.tokensPerMinute", limits?.tokensPerMinute),
            ("limits.concurrentRequests", limits?.concurrentRequests), ("budget.tokens", budget?.tokens),
        ]
        for (name, value) in values {
            if let value, !(1...Self.maxLimit).contains(value) {
                throw MizanError(.badRequest, "\(name) must be a whole number from 1 to \(Self.maxLimit).")
            }
        }
        if let weight, !(1...Self.maxWeight).contains(weight) {
            throw MizanError(.badRequest, "weight must be a whole number from 1 to \(Self.maxWeight) (leave it out for 1).")
        }
        if let maxQueued, !(1...Self.maxQueuedLimit).contains(maxQueued) {
            throw MizanError(.badRequest, "maxQueued must be a whole number from 1 to \(Self.maxQueuedLimit) (leave it out for no cap).")
        }
    }
}

/// A change to a key's policy: each field left out stays as it is, each `null` removes it.
public struct KeyPolicyPatch: Sendable, Equatable, Decodable {
    /// A field's change: left alone, removed, or set.
    public enum Change<Value: Sendable & Equatable>: Sendable, Equatable {
        case keep
        case remove
        case set(Value)

        func mapped<New>(_ transform: (Value) throws -> New) rethrows -> Change<New> {
            switch self {
            case .keep: .keep
            case .remove: .remove
            case .set(let value): .set(try transform(value))
            }
        }

        func applied(to value: Value?) -> Value? {
            switch self {
            case .keep: value
            case .remove: nil
            case .set(let new): new
            }
        }
    }

    public var name: Change<String> = .keep
    public var models: Change<[String]> = .keep
    public var limits: Change<KeyPolicy.Limits> = .keep
    public var budget: Change<KeyPolicy.Budget> = .keep
    public var expiresAt: Change<Date> = .keep
    /// The queueing class (`null` on the wire: back to standard).
    public var priority: Change<PriorityClass> = .keep
    /// The share among keys of the class (`null`: back to 1).
    public var weight: Change<Int> = .keep
    /// The cap on requests waiting for a node (`null`: no cap).
    public var maxQueued: Change<Int> = .keep

    /// Creates a patch that changes nothing.
    public init() {}

    private enum Keys: String, CodingKey {
        case name, models, limits, budget, expiresAt, priority, weight, maxQueued
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        func change<T: Decodable & Sendable & Equatable>(_ key: Keys, _ type: T.Type) throws -> Change<T> {
            guard container.contains(key) else { return .keep }
            if try container.decodeNil(forKey: key) { return .remove }
            return .set(try container.decode(T.self, forKey: key))
        }
        name = try change(.name, String.self)
        models = try change(.models, [String].self)
        limits = try change(.limits, KeyPolicy.Limits.self)
        budget = try change(.budget, KeyPolicy.Budget.self)
        expiresAt = try change(.expiresAt, String.self).mapped(KeyPolicy.date)
        priority = try change(.priority, String.self).mapped(KeyPolicy.priorityClass)
        weight = try change(.weight, Int.self)
        maxQueued = try change(.maxQueued, Int.self)
        if name == .remove { throw MizanError(.badRequest, "name cannot be removed.") }
    }

    /// The policy after this patch.
    public func applied(to policy: KeyPolicy) -> KeyPolicy {
        KeyPolicy(
            models: models.applied(to: policy.models), limits: limits.applied(to: policy.limits), budget: budget.applied(to: policy.budget),
            expiresAt: expiresAt.applied(to: policy.expiresAt), priority: priority.applied(to: policy.priority),
            weight: weight.applied(to: policy.weight), maxQueued: maxQueued.applied(to: policy.maxQueued))
    }
}
