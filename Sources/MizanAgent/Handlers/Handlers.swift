import Foundation
import MizanCore
import MizanProvider

/// Forwards jobs to a local OpenAI-compatible server (Ollama, vLLM, llama.cpp): the body as the
/// client sent it, to the job's endpoint. What `mizan-agent --provider URL` runs.
public struct ProviderHandler: JobHandler {
    /// The server's base URL, e.g. `http://127.0.0.1:11434/v1`.
    public var baseURL: String
    /// Its API key, if it needs one.
    public var apiKey: String?
    /// The models to serve; `nil` serves what the server lists (`GET /models`).
    public var models: [String]?
    /// The endpoints the server serves.
    public var endpoints: [Endpoint]
    let client: ProviderClient

    public init(
        baseURL: String, apiKey: String? = nil, models: [String]? = nil, endpoints: [Endpoint] = Endpoint.all,
        client: ProviderClient = .shared
    ) {
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.models = models
        self.endpoints = Endpoint.normalized(endpoints)
        self.client = client
    }

    func endpoint(remaining: Duration) -> ProviderEndpoint {
        ProviderEndpoint(baseURL: baseURL, apiKey: apiKey, firstByteTimeout: min(.seconds(60), remaining), totalTimeout: remaining)
    }

    /// The server's model list (or the configured models) and whether it answers. A server that
    /// does not answer is unhealthy; without configured models that is an error (there is
    /// nothing to report).
    public func catalog() async throws -> HandlerCatalog {
        do {
            let list = try await client.models(endpoint: endpoint(remaining: .seconds(10)))
            return HandlerCatalog(models: models ?? list.data.map(\.id), endpoints: endpoints, healthy: true)
        } catch {
            guard let models else {
                throw JobFailure.retryable(
                    "provider_unreachable",
                    "The provider at \(baseURL) gave no model list (GET /models: \(Self.describe(error))), and no models were configured.")
            }
            return HandlerCatalog(models: models, endpoints: endpoints, healthy: false)
        }
    }

    public func respond(to job: AgentJob) async throws -> JobResult {
        do {
            let response = try await client.call(job.endpoint, job.body, endpoint: endpoint(remaining: job.remaining))
            return JobResult(body: response.body, usage: response.usage.flatMap { TokenUsage(reported: $0) })
        } catch let error as ProviderError {
            throw Self.failure(of: error)
        }
    }

    public func stream(_ job: AgentJob, to events: JobEventWriter) async throws -> TokenUsage? {
        let stream: ServerSentEvents
        do {
            stream = try await client.stream(job.endpoint, job.body, endpoint: endpoint(remaining: job.remaining))
        } catch let error as ProviderError {
            throw Self.failure(of: error)
        }
        do {
            for try await event in stream { try await events.write(event) }
        } catch let error as ProviderError {
            throw JobFailure.final("provider_error", "The local provider's stream broke: \(error).")
        }
        return nil  // the agent's meter reads the usage the events report
    }

    /// The failure of a provider error; no upstream body goes into it.
    static func failure(of error: ProviderError) -> JobFailure {
        switch error.kind {
        case .status(let status) where (400..<500).contains(status) && status != 429 && status != 408:
            .final("provider_rejected", "The local provider refused the request (HTTP \(status)).")
        default:
            .retryable("provider_error", "The local provider failed: \(error).")
        }
    }

    /// What went wrong with a call to the local server, in a few words.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? ProviderError else { return "\(error)" }
        switch error.kind {
        case .connect: return "it does not answer (\(SafeText.excerpt(error.detail, limit: 160)))"
        case .timeout: return "it did not answer in time"
        case .status(let status): return "it answered HTTP \(status)"
        case .invalidResponse: return "its answer is not a model list: \(SafeText.excerpt(error.detail, limit: 160))"
        }
    }
}

/// Serves each model with its own handler: two local servers behind one node, or a Swift
/// function beside a server. It reports the models it names (those whose handler is healthy,
/// and every one while none is) and the endpoints their handlers serve.
public struct ModelRouter: JobHandler {
    /// The handler of each model.
    public var handlers: [String: any JobHandler]

    public init(_ handlers: [String: any JobHandler]) { self.handlers = handlers }

    public func catalog() async throws -> HandlerCatalog {
        var healthy: [String] = []
        var endpoints: Set<Endpoint> = []
        for (model, handler) in handlers.sorted(by: { $0.key < $1.key }) {
            guard let catalog = try? await handler.catalog() else { continue }
            endpoints.formUnion(catalog.endpoints)
            if catalog.healthy { healthy.append(model) }
        }
        return HandlerCatalog(
            models: healthy.isEmpty ? handlers.keys.sorted() : healthy, endpoints: endpoints.isEmpty ? Endpoint.all : Array(endpoints),
            healthy: !healthy.isEmpty)
    }

    public func respond(to job: AgentJob) async throws -> JobResult {
        try await handler(of: job).respond(to: job)
    }

    public func stream(_ job: AgentJob, to events: JobEventWriter) async throws -> TokenUsage? {
        try await handler(of: job).stream(job, to: events)
    }

    func handler(of job: AgentJob) throws -> any JobHandler {
        guard let handler = handlers[job.model] else {
            throw JobFailure.final("model_not_served", "This node does not serve the model \(SafeText.escaped(job.model)).")
        }
        return handler
    }
}

/// A handler that is a Swift function: a rule-based "model", a wrapper around another handler
/// (a cache, a guardrail, a system prompt), an engine that is not an HTTP server.
public struct FunctionHandler: JobHandler {
    /// The models it serves.
    public var models: [String]
    /// The endpoints it serves (chat completions by default).
    public var endpoints: [Endpoint]
    let respond: @Sendable (AgentJob) async throws -> JobResult
    let streamer: (@Sendable (AgentJob, JobEventWriter) async throws -> TokenUsage?)?

    /// A handler of `models` that answers with `respond` and, when given, streams with `stream`.
    public init(
        models: [String], endpoints: [Endpoint] = [.chatCompletions], respond: @escaping @Sendable (AgentJob) async throws -> JobResult,
        stream: (@Sendable (AgentJob, JobEventWriter) async throws -> TokenUsage?)? = nil
    ) {
        self.models = models
        self.endpoints = Endpoint.normalized(endpoints)
        self.respond = respond
        self.streamer = stream
    }

    public func catalog() async throws -> HandlerCatalog { HandlerCatalog(models: models, endpoints: endpoints) }

    public func respond(to job: AgentJob) async throws -> JobResult { try await respond(job) }

    public func stream(_ job: AgentJob, to events: JobEventWriter) async throws -> TokenUsage? {
        guard let streamer else { throw JobFailure.final("stream_unsupported", "The model \(job.model) does not stream on this node.") }
        return try await streamer(job, events)
    }
}

extension JobHandler where Self == ProviderHandler {
    /// Forwards jobs to a local OpenAI-compatible server (``ProviderHandler``).
    public static func provider(
        _ baseURL: String, apiKey: String? = nil, models: [String]? = nil, endpoints: [Endpoint] = Endpoint.all
    ) -> ProviderHandler {
        ProviderHandler(baseURL: baseURL, apiKey: apiKey, models: models, endpoints: endpoints)
    }
}

extension JobHandler where Self == ModelRouter {
    /// Serves each model with its own handler (``ModelRouter``).
    public static func byModel(_ handlers: [String: any JobHandler]) -> ModelRouter { ModelRouter(handlers) }
}

extension JobHandler where Self == FunctionHandler {
    /// A handler that is a Swift function (``FunctionHandler``).
    public static func function(
        models: [String], endpoints: [Endpoint] = [.chatCompletions], _ respond: @escaping @Sendable (AgentJob) async throws -> JobResult
    ) -> FunctionHandler {
        FunctionHandler(models: models, endpoints: endpoints, respond: respond)
    }
}
