import Foundation

/// Which usage to sum and by what: `GET /admin/v1/usage?since=&until=&key=&model=&groupBy=`.
public struct UsageQuery: Sendable, Equatable {
    /// What rows are grouped by.
    public enum Dimension: String, Sendable, Equatable, CaseIterable, Codable {
        case key, model, endpoint, day, hour, priority
    }

    /// Records at or after this time.
    public var since: Date?
    /// Records before this time.
    public var until: Date?
    /// One key's records.
    public var apiKeyID: String?
    /// One model's records.
    public var model: String?
    /// The grouping (`day` and `hour` are UTC; asked for together, rows are per hour).
    public var groupBy: [Dimension]

    /// The grouping when none is asked for: per key, model and endpoint.
    public static let defaultGrouping: [Dimension] = [.key, .model, .endpoint]

    public init(
        since: Date? = nil, until: Date? = nil, apiKeyID: String? = nil, model: String? = nil, groupBy: [Dimension] = defaultGrouping
    ) {
        self.since = since
        self.until = until
        self.apiKeyID = apiKeyID
        self.model = model
        self.groupBy = groupBy
    }

    /// The length of a period bucket, when grouped by hour or day (hour, the finer, when both
    /// are asked for).
    public var bucketSeconds: Double? {
        if groupBy.contains(.hour) { return 3_600 }
        if groupBy.contains(.day) { return 86_400 }
        return nil
    }

    /// Whether a record falls in the query's filters.
    public func includes(apiKeyID: String?, model: String, at date: Date) -> Bool {
        if let since, date < since { return false }
        if let until, date >= until { return false }
        if let wanted = self.apiKeyID, wanted != apiKeyID { return false }
        if let wanted = self.model, wanted != model { return false }
        return true
    }

    /// The start of the UTC day or hour holding `date` (times since the reference date, whose
    /// origin is a UTC midnight).
    public func bucket(of date: Date) -> Date? {
        bucketSeconds.map { Date(timeIntervalSinceReferenceDate: (date.timeIntervalSinceReferenceDate / $0).rounded(.down) * $0) }
    }

}

/// One row of a usage query: the group's values (those it is grouped by) and its sums.
public struct UsageRow: Sendable, Equatable, Codable {
    public var apiKeyID: String?
    public var model: String?
    public var endpoint: Endpoint?
    /// The start of the row's UTC day or hour.
    public var period: Date?
    /// The class the requests were served in (grouped by `priority`; `nil` for records without one).
    public var priority: PriorityClass?
    public var requests: Int
    public var promptTokens: Int
    public var completionTokens: Int

    public init(
        apiKeyID: String? = nil, model: String? = nil, endpoint: Endpoint? = nil, period: Date? = nil, priority: PriorityClass? = nil,
        requests: Int, promptTokens: Int, completionTokens: Int
    ) {
        self.priority = priority
        self.apiKeyID = apiKeyID
        self.model = model
        self.endpoint = endpoint
        self.period = period
        self.requests = requests
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }

    /// The order rows are answered in: by period, then key, model, endpoint and class.
    public static func precedes(_ lhs: UsageRow, _ rhs: UsageRow) -> Bool {
        let left = (lhs.period?.timeIntervalSinceReferenceDate ?? 0, lhs.apiKeyID ?? "", lhs.model ?? "", lhs.endpoint?.rawValue ?? "")
        let right = (rhs.period?.timeIntervalSinceReferenceDate ?? 0, rhs.apiKeyID ?? "", rhs.model ?? "", rhs.endpoint?.rawValue ?? "")
        if left != right { return left < right }
        return (lhs.priority?.rank ?? -2) < (rhs.priority?.rank ?? -2)
    }

    /// A group of a usage query: the values of the dimensions it is grouped by.
    private struct Group: Hashable {
        var key: String??
        var model: String?
        var endpoint: Endpoint?
        var period: Date?
        var priority: PriorityClass??
    }

    /// Rows summed from records: what the in-memory store answers, and what the others must match.
    public static func summing(
        _ records: some Sequence<
            (apiKeyID: String?, model: String, endpoint: Endpoint, at: Date, prompt: Int, completion: Int, priority: PriorityClass?)
        >,
        _ query: UsageQuery
    ) -> [UsageRow] {
        var sums: [Group: UsageRow] = [:]
        for record in records where query.includes(apiKeyID: record.apiKeyID, model: record.model, at: record.at) {
            let group = Group(
                key: query.groupBy.contains(.key) ? Optional(record.apiKeyID) : nil,
                model: query.groupBy.contains(.model) ? record.model : nil,
                endpoint: query.groupBy.contains(.endpoint) ? record.endpoint : nil,
                period: query.bucket(of: record.at),
                priority: query.groupBy.contains(.priority) ? Optional(record.priority) : nil)
            var row =
                sums[group]
                ?? UsageRow(
                    apiKeyID: group.key ?? nil, model: group.model, endpoint: group.endpoint, period: group.period,
                    priority: group.priority ?? nil, requests: 0,
                    promptTokens: 0,
                    completionTokens: 0)
            row.requests = row.requests.addingSaturated(1)
            row.promptTokens = row.promptTokens.addingSaturated(record.prompt)
            row.completionTokens = row.completionTokens.addingSaturated(record.completion)
            sums[group] = row
        }
        return sums.values.sorted(by: precedes)
    }
}
