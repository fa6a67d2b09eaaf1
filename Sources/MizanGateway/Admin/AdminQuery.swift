import Foundation
import MizanCore
import MizanStore

/// The admin API's query parameters read into the queries they stand for: shared by
/// `/admin/v1/jobs`, `/admin/v1/usage` and the console's pages.
public enum AdminQuery {
    /// A usage query from `since`, `until` (ISO 8601 times or dates, UTC), `key`, `model` and
    /// `groupBy` (a comma-separated list of key, model, endpoint, day, hour).
    public static func usageQuery(_ parameter: (String) -> String?) throws -> UsageQuery {
        func time(_ name: String) throws -> Date? {
            guard let raw = parameter(name) else { return nil }
            guard let date = ISO8601Text.date(from: raw, allowingDate: true) else {
                throw MizanError(.badRequest, "'\(name)' must be an ISO 8601 time (2027-01-01T00:00:00Z) or date (2027-01-01).")
            }
            return date
        }
        var query = UsageQuery(
            since: try time("since"), until: try time("until"), apiKeyID: parameter("key"), model: parameter("model"))
        if let raw = parameter("groupBy") {
            var dimensions: [UsageQuery.Dimension] = []
            // `groupBy=` (an empty list): no grouping, one row of everything.
            for name in raw.isEmpty ? [] : raw.split(separator: ",", omittingEmptySubsequences: false) {
                guard let dimension = UsageQuery.Dimension(rawValue: String(name).trimmingCharacters(in: .whitespaces)) else {
                    let known = UsageQuery.Dimension.allCases.map(\.rawValue).joined(separator: ", ")
                    throw MizanError(.badRequest, "Unknown groupBy '\(SafeText.excerpt(String(name), limit: 32))'; use \(known).")
                }
                if !dimensions.contains(dimension) { dimensions.append(dimension) }
            }
            query.groupBy = dimensions
        }
        return query
    }

    /// A job listing from `state`, `model`, `before` (a job id: the page after it) and `limit`
    /// (1–1000, 100 by default). An empty value is refused, or, with `emptyMeansAny` (a form's
    /// unset field), ignored.
    public static func jobListing(emptyMeansAny: Bool = false, _ given: (String) -> String?) throws -> (JobFilter, limit: Int) {
        func parameter(_ name: String) -> String? {
            guard let value = given(name) else { return nil }
            return value.isEmpty && emptyMeansAny ? nil : value
        }
        var filter = JobFilter()
        if let raw = parameter("state") {
            guard let parsed = JobState(rawValue: raw) else {
                let known = JobState.allCases.map(\.rawValue).joined(separator: ", ")
                throw MizanError(.badRequest, "Unknown job state '\(SafeText.excerpt(raw, limit: 32))'; use one of \(known).")
            }
            filter.state = parsed
        }
        if let model = parameter("model") {
            guard !model.isEmpty, model.utf8.count <= KeyPolicy.maxModelName else {
                throw MizanError(.badRequest, "'model' must be 1 to \(KeyPolicy.maxModelName) bytes.")
            }
            filter.model = model
        }
        if let raw = parameter("before") {
            guard let id = JobID(raw) else { throw MizanError(.badRequest, "'before' must be a job id.") }
            filter.before = id
        }
        var limit = 100
        if let raw = parameter("limit") {
            guard let parsed = Int(raw), (1...1000).contains(parsed) else {
                throw MizanError(.badRequest, "'limit' must be a number from 1 to 1000.")
            }
            limit = parsed
        }
        return (filter, limit)
    }

    /// The key id of a `/keys/{id}` path.
    static func keyID(_ context: GatewayRequestContext) throws -> String {
        guard let id = context.parameters.get("id"), !id.isEmpty else { throw MizanError(.badRequest, "The key id is missing.") }
        return id
    }
}
