import Foundation
import MizanCore
import MizanProvider
import Synchronization

/// Forwards jobs to a local OpenAI-compatible server (Ollama, vLLM, llama.cpp): the body as the
/// client sent it, to the job's endpoint. What `mizan-agent --provider URL` runs.
///
/// Its health is the server's cheapest health endpoint, found at the first check: `GET /health`
/// at the server's root (llama.cpp's `llama-server`, which answers 503 while it loads a model,
/// and vLLM), `GET /api/version` (Ollama), else `GET /models`. A server that refuses the
/// connection is down; one that answers slowly or with an error may be busy.
///
/// A client's JSON request for chat or completions is asked of the server as a stream (see
/// ``UpstreamStream``) and folded into the JSON answer: a server that cannot see a JSON client
/// leave stops its generation when the agent closes the stream.
///
/// Models with an alias (``ModelAliases``) are served under their public names as well: a job
/// for one goes to the server with its body's `model` rewritten to the local name.
public struct ProviderHandler: JobHandler {
    /// When a JSON request is asked of the local server as a stream.
    public enum UpstreamStream: String, Sendable, CaseIterable {
        /// For chat and completions (the default): the server stops generating when the
        /// client leaves, and the node's health counts the answer's progress.
        case auto
        /// For every endpoint that streams (chat, completions, Responses, Anthropic Messages).
        case always
        /// Never: JSON requests go to the server as JSON.
        case never

        func applies(to endpoint: Endpoint) -> Bool {
            switch self {
            case .never: false
            case .auto: endpoint == .chatCompletions || endpoint == .completions
            case .always: endpoint.streams
            }
        }
    }

    /// The server's base URL, e.g. `http://127.0.0.1:11434/v1`.
    public var baseURL: String
    /// Its API key, if it needs one.
    public var apiKey: String?
    /// The models to serve; `nil` serves what the server lists (`GET /models`).
    public var models: [String]?
    /// Models served under a public name the server knows by another; they add to ``models``
    /// (or to what the server lists).
    public var aliases: ModelAliases
    /// The endpoints the server serves.
    public var endpoints: [Endpoint]
    /// When JSON requests are asked of the server as streams (``UpstreamStream/auto``).
    public var upstreamStream: UpstreamStream
    /// How long a health check may take (10 seconds).
    public var checkTimeout: Duration
    /// How long the probe of the models the server holds loaded may take (2 seconds; past it
    /// they are unknown until the next check).
    public var loadedProbeTimeout: Duration
    let client: ProviderClient
    private let probe = HealthProbe()

    /// Creates a handler.
    /// - Parameters:
    ///   - baseURL: The server's base URL, e.g. `http://127.0.0.1:11434/v1`.
    ///   - apiKey: Its API key, if it needs one.
    ///   - models: The models to serve (`nil`: what the server lists).
    ///   - aliases: Models served under a public name the server knows by another (none).
    ///   - endpoints: The endpoints the server serves (all).
    ///   - upstreamStream: When JSON requests are asked of the server as streams.
    ///   - checkTimeout: How long a health check may take.
    ///   - loadedProbeTimeout: How long the probe of the loaded models may take.
    ///   - client: The HTTP client.
    public init(
        baseURL: String, apiKey: String? = nil, models: [String]? = nil, aliases: ModelAliases = ModelAliases(),
        endpoints: [Endpoint] = Endpoint.all, upstreamStream: UpstreamStream = .auto, checkTimeout: Duration = .seconds(10),
        client: ProviderClient = .shared, loadedProbeTimeout: Duration = .seconds(2)
    ) {
        self.loadedProbeTimeout = loadedProbeTimeout
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.models = models
        self.aliases = aliases
        self.endpoints = Endpoint.normalized(endpoints)
        self.upstreamStream = upstreamStream
        self.checkTimeout = checkTimeout
        self.client = client
    }

    func endpoint(remaining: Duration) -> ProviderEndpoint {
        ProviderEndpoint(baseURL: baseURL, apiKey: apiKey, firstByteTimeout: min(.seconds(60), remaining), totalTimeout: remaining)
    }

    /// The server's root: the base URL without its trailing `/v1`.
    var root: String {
        let base = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        return base.hasSuffix("/v1") ? String(base.dropLast(3)) : base
    }

    /// What a check found: the server's health and, when it could be read, its model list.
    private struct CheckResult {
        var healthy: Bool
        var refused = false
        var models: [String]?
        var error: (any Error)?
    }

    /// The server's model list (or the configured models) with the aliases' public names, and
    /// whether it answers. A server that gives no model list at the first check, with no models
    /// or aliases configured, is an error (there is nothing to report).
    public func catalog() async throws -> HandlerCatalog {
        let path = await healthPath()
        let result = await check(path)
        var listed = models ?? result.models
        if listed == nil, result.healthy, path != .models {
            // The health endpoint answered; the list comes from /models (the last one while it does not answer).
            listed = try? await client.models(endpoint: endpoint(remaining: checkTimeout)).data.map(\.id)
        }
        listed = listed ?? probe.knownModels
        if let list = listed, models == nil { probe.remember(list) }
        guard listed != nil || !aliases.isEmpty else {
            throw JobFailure.retryable(
                "provider_unreachable",
                "The provider at \(baseURL) gave no model list (GET /models: \(Self.describe(result.error ?? ProviderError(.invalidResponse)))), "
                    + "and no models were configured.")
        }
        return HandlerCatalog(
            models: aliases.adding(to: listed ?? []), endpoints: endpoints, healthy: result.healthy, refused: result.refused,
            check: path.describe(self))
    }

    /// The models the server holds loaded, under every name this handler serves them by (an
    /// aliased model under its public names too), asked for 2 seconds at most as
    /// ``LoadedModels`` tells: `GET /api/ps` of a server found by its `GET /api/version`,
    /// `GET /models` of any other.
    /// - Returns: The names, or `nil` when unknown: the server did not answer in time or with a
    ///   list, or its kind is not known yet (no health check found its health endpoint).
    public func loadedModels() async -> [String]? {
        guard let path = probe.path else { return nil }
        let url = path == .ollamaVersion ? root + "/api/ps" : ProviderEndpoint(baseURL: baseURL).url("/models")
        guard let answer = try? await client.get(url, apiKey: apiKey, timeout: loadedProbeTimeout), answer.status == 200,
            let locals = path == .ollamaVersion ? LoadedModels.readRunning(answer.body) : LoadedModels.readModelList(answer.body)
        else { return nil }
        var seen = Set<String>()
        return locals.flatMap(aliases.names(servedAs:)).filter { seen.insert($0).inserted }
    }

    /// The health endpoint, found once: the first that answers as its kind of server does. A
    /// probe that gets no answer (a server busy or starting) leaves the choice open: `GET /models`
    /// serves meanwhile and the endpoints are asked again at the next check.
    private func healthPath() async -> HealthPath {
        if let known = probe.path { return known }
        var undecided = false
        for candidate in [HealthPath.health, .ollamaVersion] {
            do {
                // Three tenths of a check's time each (3 s of the default 10): two candidates
                // and the model list fit in one check.
                let status = try await client.probe(candidate.url(self), apiKey: apiKey, timeout: checkTimeout * 0.3)
                // llama.cpp answers /health with 503 while it loads a model: it is the endpoint still.
                if status == 200 || (candidate == .health && status == 503) {
                    probe.path = candidate
                    return candidate
                }
            } catch {
                undecided = true
            }
        }
        if !undecided { probe.path = .models }
        return .models
    }

    private func check(_ path: HealthPath) async -> CheckResult {
        do {
            if path == .models {
                let list = try await client.models(endpoint: endpoint(remaining: checkTimeout))
                return CheckResult(healthy: true, models: list.data.map(\.id))
            }
            let status = try await client.probe(path.url(self), apiKey: apiKey, timeout: checkTimeout)
            return CheckResult(healthy: status == 200, error: status == 200 ? nil : ProviderError(.status(status)))
        } catch let error as ProviderError {
            return CheckResult(healthy: false, refused: error.kind == .connect, error: error)
        } catch {
            return CheckResult(healthy: false, error: error)
        }
    }

    public func respond(to job: AgentJob) async throws -> JobResult {
        let upstream = aliases.upstreamBody(of: job)
        if upstreamStream.applies(to: job.endpoint), let body = StreamTranscript.streamingBody(upstream, endpoint: job.endpoint) {
            return try await fold(job, streamingBody: body)
        }
        do {
            let response = try await client.call(job.endpoint, upstream, endpoint: endpoint(remaining: job.remaining))
            return JobResult(body: response.body, usage: response.usage.flatMap { TokenUsage(reported: $0) })
        } catch let error as ProviderError {
            throw Self.failure(of: error)
        }
    }

    /// Asks the server for the job's stream and folds it into the JSON answer.
    private func fold(_ job: AgentJob, streamingBody: Data) async throws -> JobResult {
        let stream: ServerSentEvents
        do {
            stream = try await client.stream(job.endpoint, streamingBody, endpoint: endpoint(remaining: job.remaining))
        } catch let error as ProviderError {
            throw Self.failure(of: error)
        }
        var transcript = StreamTranscript(endpoint: job.endpoint)
        var meter = StreamUsageMeter(requestBytes: job.body.count)
        do {
            for try await event in stream {
                job.reportProgress()
                transcript.observe(event)
                meter.observe(event)
            }
        } catch let error as ProviderError {
            // The client has seen nothing yet: another attempt may do better.
            throw JobFailure.retryable("provider_error", "The local provider's stream broke: \(error).")
        }
        // A server that ignores `stream_options.include_usage` (llama-cpp-python) reports no
        // usage in the stream: the answer carries the estimate the node bills.
        let body = transcript.completion(fallbackUsage: meter.usage)
        guard !body.isEmpty else {
            throw JobFailure.retryable("provider_error", "The local provider's stream ended without an answer.")
        }
        return JobResult(body: body, usage: meter.usage)
    }

    public func stream(_ job: AgentJob, to events: JobEventWriter) async throws -> TokenUsage? {
        let stream: ServerSentEvents
        do {
            stream = try await client.stream(job.endpoint, aliases.upstreamBody(of: job), endpoint: endpoint(remaining: job.remaining))
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
        case .status(413):
            .final(AgentWire.FailureCode.requestTooLarge, "The local provider refused the request as too large (HTTP 413).")
        case .status(let status) where status == 400 || status == 422:
            .final(AgentWire.FailureCode.invalidRequest, "The local provider refused the request as invalid (HTTP \(status)).")
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

    /// Where a server's health is asked.
    enum HealthPath: Sendable, Equatable {
        /// `GET /health` at the root: llama.cpp's `llama-server`, vLLM.
        case health
        /// `GET /api/version` at the root: Ollama.
        case ollamaVersion
        /// `GET /models` under the base URL: any OpenAI-compatible server.
        case models

        func url(_ handler: ProviderHandler) -> String {
            switch self {
            case .health: handler.root + "/health"
            case .ollamaVersion: handler.root + "/api/version"
            case .models: ProviderEndpoint(baseURL: handler.baseURL).url("/models")
            }
        }

        func describe(_ handler: ProviderHandler) -> String {
            switch self {
            case .health: "GET \(url(handler)) (llama.cpp or vLLM)"
            case .ollamaVersion: "GET \(url(handler)) (Ollama)"
            case .models: "GET \(url(handler)) (no health endpoint found)"
            }
        }
    }

    /// What the checks remember between calls: the health endpoint found, the last model list.
    final class HealthProbe: Sendable {
        private struct State {
            var path: HealthPath?
            var models: [String]?
        }
        private let state = Mutex(State())

        var path: HealthPath? {
            get { state.withLock { $0.path } }
            set { state.withLock { $0.path = newValue } }
        }

        var knownModels: [String]? { state.withLock { $0.models } }

        func remember(_ models: [String]) { state.withLock { $0.models = models } }
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

    /// The models whose handler says it holds them loaded (the handlers are asked together);
    /// `nil` when none of them knows.
    public func loadedModels() async -> [String]? {
        let answers = await withTaskGroup(of: (String, [String]?).self) { group in
            for (model, handler) in handlers { group.addTask { (model, await handler.loadedModels()) } }
            return await group.reduce(into: [(String, [String]?)]()) { $0.append($1) }
        }
        guard answers.contains(where: { $0.1 != nil }) else { return nil }
        return answers.filter { $0.1?.contains($0.0) ?? false }.map(\.0).sorted()
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
        _ baseURL: String, apiKey: String? = nil, models: [String]? = nil, endpoints: [Endpoint] = Endpoint.all,
        upstreamStream: ProviderHandler.UpstreamStream = .auto
    ) -> ProviderHandler {
        ProviderHandler(baseURL: baseURL, apiKey: apiKey, models: models, endpoints: endpoints, upstreamStream: upstreamStream)
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
