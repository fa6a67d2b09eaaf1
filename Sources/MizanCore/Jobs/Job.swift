import Foundation

/// A durable dispatch job: one agent-served request and everything that happened to it.
public struct Job: Sendable, Equatable, Codable {
    /// The job's time-ordered id.
    public var id: JobID
    /// The gateway request id, for correlating logs.
    public var requestID: String
    /// The public model the client asked for; nodes lease by it.
    public var model: String
    /// The endpoint the client called; the node calls the same one on its local server.
    public var endpoint: Endpoint
    /// The client's request body, verbatim.
    public var body: Data
    /// Whether the client asked for a stream.
    public var stream: Bool
    /// The current state.
    public var state: JobState
    /// The attempt number, starting at 1; a requeue adds one. A lease is fenced by (id, attempt).
    public var attempt: Int
    /// How many attempts the job may take before a lost node fails it.
    public var maxAttempts: Int
    /// Higher runs first among jobs of the same model: a ``PriorityClass``'s rank.
    public var priority: Int
    /// The node holding the job while leased (kept afterwards as the node that finished it).
    public var nodeID: NodeID?
    /// When the job must be finished; queue time counts against it.
    public var deadline: Date
    /// When the job was accepted.
    public var createdAt: Date
    /// When the current (or last) lease was taken.
    public var leasedAt: Date?
    /// When the job reached a terminal state.
    public var finishedAt: Date?
    /// When the job last changed.
    public var updatedAt: Date
    /// The response body, when succeeded.
    public var result: Data?
    /// The error code, when failed or timed out.
    public var errorCode: String?
    /// The error message, when failed or timed out.
    public var errorMessage: String?
    /// Token usage of the attempt that succeeded.
    public var usage: TokenUsage?
    /// The client's idempotency key, if any.
    public var idempotencyKey: String?
    /// The API key that submitted the job, if any.
    public var apiKeyID: String?
    /// The attempts before the current one: each lease that ended with the job going back to
    /// the queue (a node lost, or a retryable failure), oldest first. The current attempt's
    /// lease is ``leasedAt`` and ``nodeID``.
    public var earlierAttempts: [JobAttempt] = []
    /// Where the job stands in its queue and which node it is offered to first.
    public var scheduling = JobScheduling()

    /// Creates a job in the `accepted` state.
    /// - Parameters:
    ///   - id: The job id; defaults to a new time-ordered id.
    ///   - requestID: The gateway request id.
    ///   - model: The public model.
    ///   - endpoint: The endpoint called (chat completions by default).
    ///   - body: The client's body, verbatim.
    ///   - stream: Whether the client asked for a stream.
    ///   - deadline: When the job must be finished.
    ///   - maxAttempts: How many attempts it may take.
    ///   - priority: Higher runs first.
    ///   - idempotencyKey: An optional idempotency key.
    ///   - apiKeyID: The submitting API key.
    ///   - now: The creation instant.
    public init(
        id: JobID = JobID(),
        requestID: String,
        model: String,
        endpoint: Endpoint = .chatCompletions,
        body: Data,
        stream: Bool = false,
        deadline: Date,
        maxAttempts: Int = 3,
        priority: Int = 0,
        idempotencyKey: String? = nil,
        apiKeyID: String? = nil,
        now: Date = Date()
    ) {
        self.id = id
        self.requestID = requestID
        self.model = model
        self.endpoint = endpoint
        self.body = body
        self.stream = stream
        self.state = .accepted
        self.attempt = 1
        self.maxAttempts = max(1, maxAttempts)
        self.priority = priority
        self.nodeID = nil
        self.deadline = deadline
        self.createdAt = now
        self.leasedAt = nil
        self.finishedAt = nil
        self.updatedAt = now
        self.idempotencyKey = idempotencyKey
        self.apiKeyID = apiKeyID
        self.scheduling = JobScheduling(classSince: now)
    }

    /// The job's class (from ``priority``).
    public var priorityClass: PriorityClass { PriorityClass(rank: priority) }

    /// The lease the job is currently held under, if it is leased.
    public var lease: Lease? {
        guard state == .leased, let nodeID else { return nil }
        return Lease(jobID: id, attempt: attempt, nodeID: nodeID)
    }
}

/// Where a queued job stands and which node it is offered to first. Within a model's queue,
/// nodes lease by class (``Job/priority``, highest first), then by ``fairTag`` (lowest first),
/// then by id (oldest first).
public struct JobScheduling: Sendable, Equatable, Codable {
    /// Why a job is offered to one node first.
    public enum Affinity: String, Sendable, Equatable, Codable, CaseIterable {
        /// Offered to every node alike.
        case none
        /// The node served the conversation's earlier turns (its cache may hold the prefix).
        case prefix
        /// The node reported the model loaded.
        case loaded
    }

    /// The key's share among the keys of its class (1 to 100): a key of weight 2 is leased
    /// twice as often as one of weight 1 while both wait.
    public var weight: Int
    /// The job's place among its class's queued jobs, set by the store when it is queued: the
    /// key's previous queued job's tag plus `1 / weight`, or the queue's lowest tag when the key
    /// has none queued (start-time fair queuing, the queue's head as its virtual time).
    public var fairTag: Double
    /// When the job entered its class (its creation, or its latest promotion).
    public var classSince: Date?
    /// The node offered the job first, until ``preferredUntil``.
    public var preferredNode: NodeID?
    /// Until when only ``preferredNode`` may lease the job.
    public var preferredUntil: Date?
    /// Why ``preferredNode`` was chosen.
    public var affinity: Affinity

    /// Scheduling as a new job has it.
    public init(
        weight: Int = 1, fairTag: Double = 0, classSince: Date? = nil, preferredNode: NodeID? = nil, preferredUntil: Date? = nil,
        affinity: Affinity = .none
    ) {
        self.weight = min(100, max(1, weight))
        self.fairTag = fairTag
        self.classSince = classSince
        self.preferredNode = preferredNode
        self.preferredUntil = preferredUntil
        self.affinity = affinity
    }

    /// What a key's next job adds to its tag.
    public var increment: Double { 1 / Double(weight) }

    /// Whether `node` may lease the job at `now`.
    public func allows(_ node: NodeID, now: Date) -> Bool {
        guard let preferredNode, let preferredUntil else { return true }
        return preferredNode == node || preferredUntil <= now
    }
}

/// An attempt of a job that ended with the job handed back to the queue.
public struct JobAttempt: Sendable, Equatable, Codable {
    /// Its number (the first attempt is 1).
    public var attempt: Int
    /// When it was leased.
    public var leasedAt: Date?
    /// The node that held it.
    public var nodeID: NodeID?
    /// When it was handed back.
    public var endedAt: Date
    /// Why: the node's retryable failure code, or `node_lost`.
    public var reason: String

    /// Creates an attempt's record.
    public init(attempt: Int, leasedAt: Date?, nodeID: NodeID?, endedAt: Date, reason: String) {
        self.attempt = attempt
        self.leasedAt = leasedAt
        self.nodeID = nodeID
        self.endedAt = endedAt
        self.reason = reason
    }

    /// The attempts a store keeps as text: `attempt,leased,node,ended,reason;` each, times in
    /// seconds since 1970 (a reason's `,` and `;` are stored as `_`).
    public static func parse(_ text: String?) -> [JobAttempt] {
        guard let text, !text.isEmpty else { return [] }
        return text.split(separator: ";").compactMap { entry in
            let fields = entry.split(separator: ",", omittingEmptySubsequences: false)
            guard fields.count == 5, let attempt = Int(fields[0]), let ended = Double(fields[3]) else { return nil }
            return JobAttempt(
                attempt: attempt, leasedAt: Double(fields[1]).map { Date(timeIntervalSince1970: $0) }, nodeID: NodeID(String(fields[2])),
                endedAt: Date(timeIntervalSince1970: ended), reason: String(fields[4]))
        }
    }

    /// A reason as stored (no `,` or `;`, at most 64 characters).
    public static func storedReason(_ reason: String) -> String {
        String(reason.prefix(64).map { $0 == "," || $0 == ";" ? "_" : $0 })
    }

    /// One attempt as stored text (the format of ``parse(_:)``).
    public var storedText: String {
        "\(attempt),\(leasedAt.map { String($0.timeIntervalSince1970) } ?? ""),\(nodeID?.description ?? ""),"
            + "\(endedAt.timeIntervalSince1970),\(Self.storedReason(reason));"
    }
}

/// The fencing token of a lease: a completion is applied only for the current one.
public struct Lease: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The leased job.
    public var jobID: JobID
    /// The attempt the lease belongs to.
    public var attempt: Int
    /// The node holding the lease.
    public var nodeID: NodeID

    /// Creates a lease token.
    /// - Parameters:
    ///   - jobID: The leased job.
    ///   - attempt: The attempt number.
    ///   - nodeID: The holder.
    public init(jobID: JobID, attempt: Int, nodeID: NodeID) {
        self.jobID = jobID
        self.attempt = attempt
        self.nodeID = nodeID
    }

    public var description: String { "\(jobID)#\(attempt)@\(nodeID)" }
}

/// Token counts of one request.
public struct TokenUsage: Sendable, Equatable, Codable {
    /// Where the counts came from.
    public enum Source: String, Sendable, Codable {
        /// Reported by the provider.
        case provider
        /// Estimated by Mizan from the text.
        case estimated
    }

    /// Tokens in the prompt.
    public var promptTokens: Int
    /// Tokens in the completion.
    public var completionTokens: Int
    /// Where the counts came from.
    public var source: Source

    /// Prompt plus completion tokens.
    public var totalTokens: Int { promptTokens.addingSaturated(completionTokens) }

    /// The largest count a usage may carry (a billion tokens, far past any model's context).
    /// Counts come from nodes and upstream servers, so they are checked like any input.
    public static let maximumCount = 1_000_000_000

    /// The range of a valid count.
    public static let validCounts = 0...maximumCount

    /// Creates a usage record.
    /// - Parameters:
    ///   - promptTokens: Tokens in the prompt.
    ///   - completionTokens: Tokens in the completion.
    ///   - source: Where the counts came from.
    public init(promptTokens: Int, completionTokens: Int, source: Source = .provider) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.source = source
    }

    /// The usage a provider reported, or `nil` when a count is negative or past
    /// ``maximumCount`` (the caller then estimates instead).
    /// - Parameter reported: OpenAI's usage object as the provider sent it.
    public init?(reported: ChatUsage) {
        guard Self.validCounts.contains(reported.promptTokens), Self.validCounts.contains(reported.completionTokens) else { return nil }
        self.init(promptTokens: reported.promptTokens, completionTokens: reported.completionTokens, source: .provider)
    }

    /// The usage bounded by what a request could produce, as a node's claim is held: the prompt
    /// at most the request body's bytes (no tokenizer makes more tokens than bytes), the
    /// completion at most the request's output limit when it names one, else the answer's
    /// bytes. A claim past either is replaced by an estimate from those sizes.
    /// - Parameters:
    ///   - requestBytes: The request body's size.
    ///   - outputLimit: The output limit the request names (`max_tokens` and its kin), if any.
    ///   - answerBytes: The answer's size (the JSON result, or the streamed events' data).
    /// - Returns: The usage as counted, and whether the claim was replaced.
    public func bounded(requestBytes: Int, outputLimit: Int?, answerBytes: Int) -> (usage: TokenUsage, replaced: Bool) {
        let completionBound = outputLimit ?? max(answerBytes, 1)
        guard promptTokens > max(requestBytes, 1) || completionTokens > completionBound else { return (self, false) }
        let estimate = TokenUsage(
            promptTokens: StreamUsageMeter.estimateTokens(requestBytes),
            completionTokens: min(completionBound, StreamUsageMeter.estimateTokens(answerBytes)), source: .estimated)
        return (estimate, true)
    }

    enum CodingKeys: String, CodingKey { case promptTokens, completionTokens, source }

    /// Decodes a usage, refusing counts that are negative or past ``maximumCount``.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        promptTokens = try container.decode(Int.self, forKey: .promptTokens)
        completionTokens = try container.decode(Int.self, forKey: .completionTokens)
        source = try container.decodeIfPresent(Source.self, forKey: .source) ?? .provider
        for (key, value) in [(CodingKeys.promptTokens, promptTokens), (.completionTokens, completionTokens)]
        where !Self.validCounts.contains(value) {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: container, debugDescription: "a token count must be 0-\(Self.maximumCount)")
        }
    }
}

extension Int {
    /// The sum, held at `Int.max` / `Int.min` instead of trapping on overflow.
    public func addingSaturated(_ other: Int) -> Int {
        let (sum, overflow) = addingReportingOverflow(other)
        guard overflow else { return sum }
        return other > 0 ? .max : .min
    }
}

/// How a lease holder finishes a job.
public enum JobCompletion: Sendable, Equatable {
    /// The job produced `result`.
    case succeeded(result: Data, usage: TokenUsage?)
    /// The job failed. A `retryable` failure (nothing was produced yet) is requeued while
    /// attempts and the deadline allow; otherwise the job fails.
    case failed(code: String, message: String, retryable: Bool)
}

/// A job handed to a node with the lease that fences it.
public struct LeasedJob: Sendable, Equatable {
    /// The job as leased.
    public var job: Job
    /// The lease to present when completing it.
    public var lease: Lease

    /// Creates a leased job.
    /// - Parameters:
    ///   - job: The job.
    ///   - lease: Its lease.
    public init(job: Job, lease: Lease) {
        self.job = job
        self.lease = lease
    }
}
