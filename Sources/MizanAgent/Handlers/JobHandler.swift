import Foundation
import MizanCore

/// A dispatch job as a ``JobHandler`` gets it: what the client asked for, verbatim, and until when.
public struct AgentJob: Sendable, Equatable {
    /// The job.
    public var id: JobID
    /// The gateway's request id (for logs on both sides).
    public var requestID: String
    /// The public model the client named.
    public var model: String
    /// The endpoint the client called.
    public var endpoint: Endpoint
    /// The client's request body, verbatim (JSON).
    public var body: Data
    /// Whether the client asked for a stream (then ``JobHandler/stream(_:to:)`` serves it).
    public var stream: Bool
    /// When the job must be finished; the agent cancels the handler's task past it.
    public var deadline: Date
    /// Where ``reportProgress()`` goes (the agent's health bookkeeping).
    var progress: (@Sendable () -> Void)?

    /// Creates a job (the agent makes them from its leases; tests make their own).
    public init(
        id: JobID = JobID(), requestID: String = UUID().uuidString, model: String, endpoint: Endpoint = .chatCompletions, body: Data,
        stream: Bool = false, deadline: Date = Date().addingTimeInterval(300)
    ) {
        self.id = id
        self.requestID = requestID
        self.model = model
        self.endpoint = endpoint
        self.body = body
        self.stream = stream
        self.deadline = deadline
    }

    init(_ assignment: AgentWire.Assignment, progress: (@Sendable () -> Void)? = nil) {
        self.init(
            id: assignment.jobID, requestID: assignment.requestID, model: assignment.model, endpoint: assignment.endpoint,
            body: assignment.body, stream: assignment.stream, deadline: assignment.deadline)
        self.progress = progress
    }

    /// The time left before the deadline (zero once it has passed).
    public var remaining: Duration { .seconds(max(0, deadline.timeIntervalSinceNow)) }

    /// Tells the agent that the job made progress (a byte from the local server). A handler
    /// that reads its server's answer piece by piece reports each piece, so that a server busy
    /// with a long answer counts as healthy even when its health endpoint does not answer
    /// meanwhile (single-slot servers). Streamed events are counted by the agent itself.
    public func reportProgress() { progress?() }

    /// Jobs are equal when every field but the progress reporter is.
    public static func == (a: AgentJob, b: AgentJob) -> Bool {
        a.id == b.id && a.requestID == b.requestID && a.model == b.model && a.endpoint == b.endpoint && a.body == b.body
            && a.stream == b.stream && a.deadline == b.deadline
    }
}

/// A handler's answer to a job that is not streamed: the response body the client gets, as the
/// endpoint's JSON, and the tokens it used.
public struct JobResult: Sendable, Equatable {
    /// The response body (the endpoint's JSON: a chat completion, an embedding list…).
    public var body: Data
    /// The tokens used; `nil` lets the agent estimate them from the sizes of request and answer.
    public var usage: TokenUsage?

    public init(body: Data, usage: TokenUsage? = nil) {
        self.body = body
        self.usage = usage
    }
}

/// A job a handler could not serve. A retryable failure lets the gateway give the job to another
/// node (or this one again); a final one answers the client with it.
public struct JobFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// A short machine-readable code, e.g. `backend_unavailable`.
    public var code: String
    /// What went wrong, for the client and the logs (never message contents).
    public var message: String
    /// Whether another attempt may succeed.
    public var retryable: Bool

    public init(code: String, message: String, retryable: Bool) {
        self.code = code
        self.message = message
        self.retryable = retryable
    }

    /// A failure another attempt may not have (a backend down, overloaded, timing out).
    public static func retryable(_ code: String, _ message: String) -> JobFailure {
        JobFailure(code: code, message: message, retryable: true)
    }

    /// A failure of the request itself (it is invalid, or asks what the handler cannot do).
    public static func final(_ code: String, _ message: String) -> JobFailure {
        JobFailure(code: code, message: message, retryable: false)
    }

    public var description: String { "\(code): \(message)" }
}

/// What a handler serves and whether it can serve now: the agent's report to the gateway (its
/// models and endpoints) and its leasing (none while unhealthy) are built from it.
public struct HandlerCatalog: Sendable, Equatable {
    /// The models it serves.
    public var models: [String]
    /// The endpoints it serves.
    public var endpoints: [Endpoint]
    /// Whether it can serve now.
    public var healthy: Bool
    /// When not healthy: whether its server refused the connection (it is down: the node goes
    /// unhealthy at once) rather than answering slowly or with an error (it may be busy or
    /// loading: the node waits a while, and counts a job's progress as health, first).
    public var refused: Bool
    /// How health is checked, for the agent's log (e.g. `GET http://127.0.0.1:8080/health`).
    public var check: String?

    /// Creates a catalog.
    /// - Parameters:
    ///   - models: The models it serves.
    ///   - endpoints: The endpoints it serves (all by default).
    ///   - healthy: Whether it can serve now.
    ///   - refused: When not healthy, whether its server refused the connection.
    ///   - check: How health is checked.
    public init(models: [String], endpoints: [Endpoint] = Endpoint.all, healthy: Bool = true, refused: Bool = false, check: String? = nil) {
        self.models = models
        self.endpoints = Endpoint.normalized(endpoints)
        self.healthy = healthy
        self.refused = refused
        self.check = check
    }
}

/// Where a streamed job's events go: each one reaches the gateway, and the client, as it is sent.
public struct JobEventWriter: Sendable {
    let write: @Sendable (String) async throws -> Void

    /// A writer that hands each event, in ``SSEEvent``'s carried form, to `write`.
    public init(_ write: @escaping @Sendable (String) async throws -> Void) { self.write = write }

    /// Sends one server-sent event.
    /// - Parameters:
    ///   - data: Its data: the endpoint's JSON chunk, or `[DONE]` for chat and completions.
    ///   - name: Its `event:` name (Responses and Anthropic Messages name theirs).
    public func send(_ data: String, name: String? = nil) async throws {
        try await write(SSEEvent.pack(name: name, data: data))
    }
}

/// Serves dispatch jobs on an agent node: a local server behind an HTTP API (``ProviderHandler``),
/// several of them by model (``ModelRouter``), or a Swift function (``FunctionHandler``).
///
/// The ``Agent`` keeps everything else — registration, heartbeats, slots, leasing, fenced
/// reports with retries, abort, graceful drain: a handler only answers jobs. A job the gateway
/// cancels (its client left) or whose deadline passes has its task cancelled: a handler that
/// waits should let cancellation through. Throw ``JobFailure`` to say whether a failure is
/// retryable; any other error is reported as a retryable `handler_error`.
public protocol JobHandler: Sendable {
    /// What it serves now; asked when the agent starts and at every health check.
    func catalog() async throws -> HandlerCatalog

    /// Answers a job that is not streamed.
    func respond(to job: AgentJob) async throws -> JobResult

    /// Streams a job's events to `events`.
    /// - Returns: The tokens used; `nil` lets the agent estimate them from the events.
    func stream(_ job: AgentJob, to events: JobEventWriter) async throws -> TokenUsage?

    /// The models it holds loaded now (in memory, ready without a load first), by the names
    /// it serves them under; `nil` when it does not know. The agent asks at most once per
    /// health interval, never while one of its jobs makes progress, and waits 2 seconds at most.
    func loadedModels() async -> [String]?
}

extension JobHandler {
    /// Does not know (a handler that can tell implements it).
    public func loadedModels() async -> [String]? { nil }

    /// Refuses streams (a handler that streams implements it).
    public func stream(_ job: AgentJob, to events: JobEventWriter) async throws -> TokenUsage? {
        throw JobFailure.final("stream_unsupported", "The model \(job.model) does not stream on this node.")
    }
}
