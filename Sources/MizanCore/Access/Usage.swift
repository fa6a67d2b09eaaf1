import Foundation

/// What one request used: every request, provider-routed or agent-served, leaves one.
public struct UsageRecord: Sendable, Equatable {
    /// The gateway request id.
    public var requestID: String
    /// The API key that made it.
    public var apiKeyID: String?
    /// The public model.
    public var model: String
    /// The provider route or node that served it.
    public var servedBy: String?
    /// The HTTP status answered.
    public var status: Int
    /// Time from request to response end, in milliseconds.
    public var latencyMilliseconds: Double
    /// Token counts, when known.
    public var usage: TokenUsage?
    /// When it finished.
    public var createdAt: Date
    /// The job that answered, for a request with an `Idempotency-Key`: several requests can
    /// get one job's answer (retries), and its tokens are counted for the first of them only.
    public var jobID: JobID?
    /// The endpoint called.
    public var endpoint: Endpoint
    /// The class the request was served in (`nil`: not known, as for records written before classes).
    public var priority: PriorityClass?

    /// Creates a record.
    /// - Parameters:
    ///   - requestID: The request id.
    ///   - apiKeyID: The API key.
    ///   - model: The public model.
    ///   - servedBy: The route or node.
    ///   - status: The HTTP status.
    ///   - latencyMilliseconds: The latency.
    ///   - usage: Token counts.
    ///   - createdAt: When it finished.
    ///   - jobID: The job that answered an idempotent request (its tokens count once).
    ///   - endpoint: The endpoint called (chat completions by default).
    ///   - priority: The class it was served in.
    public init(
        requestID: String,
        apiKeyID: String?,
        model: String,
        servedBy: String?,
        status: Int,
        latencyMilliseconds: Double,
        usage: TokenUsage?,
        createdAt: Date,
        jobID: JobID? = nil,
        endpoint: Endpoint = .chatCompletions,
        priority: PriorityClass? = nil
    ) {
        self.priority = priority
        self.endpoint = endpoint
        self.requestID = requestID
        self.apiKeyID = apiKeyID
        self.model = model
        self.servedBy = servedBy
        self.status = status
        self.latencyMilliseconds = latencyMilliseconds
        self.usage = usage
        self.createdAt = createdAt
        self.jobID = jobID
    }

    /// Prompt and completion tokens together (0 when unknown): what a key's limits count.
    public var tokens: Int { (usage?.promptTokens ?? 0) + (usage?.completionTokens ?? 0) }
}

/// Usage summed per API key, model and endpoint.
public struct UsageSummary: Sendable, Equatable, Codable {
    /// The API key (nil for requests without one).
    public var apiKeyID: String?
    /// The public model.
    public var model: String
    /// The endpoint called.
    public var endpoint: Endpoint
    /// How many requests.
    public var requests: Int
    /// Prompt tokens in all.
    public var promptTokens: Int
    /// Completion tokens in all.
    public var completionTokens: Int

    /// Creates a summary row.
    public init(
        apiKeyID: String?, model: String, endpoint: Endpoint = .chatCompletions, requests: Int, promptTokens: Int, completionTokens: Int
    ) {
        self.apiKeyID = apiKeyID
        self.model = model
        self.endpoint = endpoint
        self.requests = requests
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }
}

extension UsageSummary {
    enum CodingKeys: String, CodingKey { case apiKeyID, model, endpoint, requests, promptTokens, completionTokens }

    /// Decodes a row; one from a gateway that did not group by endpoint counts as chat completions.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        apiKeyID = try container.decodeIfPresent(String.self, forKey: .apiKeyID)
        model = try container.decode(String.self, forKey: .model)
        endpoint = (try? container.decodeIfPresent(Endpoint.self, forKey: .endpoint)) ?? .chatCompletions
        requests = try container.decode(Int.self, forKey: .requests)
        promptTokens = try container.decode(Int.self, forKey: .promptTokens)
        completionTokens = try container.decode(Int.self, forKey: .completionTokens)
    }

    /// The order of a summary: by key, model, then endpoint.
    public static func precedes(_ lhs: UsageSummary, _ rhs: UsageSummary) -> Bool {
        (lhs.apiKeyID ?? "", lhs.model, lhs.endpoint) < (rhs.apiKeyID ?? "", rhs.model, rhs.endpoint)
    }
}
