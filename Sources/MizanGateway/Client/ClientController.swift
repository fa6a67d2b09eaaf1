import Foundation
import HTTPTypes
import Hummingbird
import MizanCore
import MizanDispatch
import MizanStore

/// The OpenAI-compatible client API under `/v1/`: a client authenticates with its API key;
/// each request is served by a provider route (``RouteServer``) or, failing that, by agent
/// nodes (``NodeServer``).
struct ClientController: Sendable {
    let credentials: Credentials
    let dispatcher: Dispatcher
    let routes: RouteServer
    let nodes: NodeServer
    /// Usage waiting to be written: while it is full, counted keys are refused.
    let spool: UsageSpool
    let maxBodyBytes: Int
    /// The output tokens reserved for a request that names no output limit.
    let tokenReservation: Int
    let bodyTimeout: Duration
    let defaultDeadline: Duration
    let maxDeadline: Duration

    init(
        credentials: Credentials, dispatcher: Dispatcher, routes: RouteServer, nodes: NodeServer, spool: UsageSpool,
        configuration: Gateway.Configuration
    ) {
        self.credentials = credentials
        self.dispatcher = dispatcher
        self.routes = routes
        self.nodes = nodes
        self.spool = spool
        self.maxBodyBytes = configuration.maxBodyBytes
        self.tokenReservation = configuration.tokenReservation
        self.bodyTimeout = configuration.bodyTimeout
        self.defaultDeadline = configuration.dispatch.defaultDeadline
        self.maxDeadline = configuration.maxDeadline
    }

    func addRoutes(to router: RouterGroup<GatewayRequestContext>) {
        for endpoint in Endpoint.allCases {
            router.post(RouterPath("/v1" + endpoint.path)) { request, context in
                try await infer(endpoint, request, context: context)
            }
        }
        router.get("/v1/models") { request, context in
            let key = try await authenticate(request, trace: context.trace)
            var list = ModelCatalog.list(routes: routes.routes, nodes: try await dispatcher.healthyNodes())
            // A key with an allow-list sees its models only.
            list.data.removeAll { !key.policy.allows($0.id) }
            return try JSONResponse.json(list)
        }
    }

    /// The API key of a request: `Authorization: Bearer KEY`, or on Anthropic's endpoint also
    /// `x-api-key: KEY` (what the official Anthropic SDKs send).
    func authenticate(_ request: Request, trace: RequestTrace, endpoint: Endpoint? = nil) async throws -> APIKey {
        var presented = Credentials.bearer(request.headers[.authorization])
        if presented == nil, endpoint == .messages, let header = request.headers[Self.anthropicKeyHeader] {
            presented = header.trimmingCharacters(in: .whitespaces)
        }
        if presented == nil, endpoint == .messages {
            throw MizanError(.unauthorized, "Missing API key. Send it as 'x-api-key: <key>' or 'Authorization: Bearer <key>'.")
        }
        let key: APIKey
        do {
            key = try await credentials.authenticateClient(presented)
        } catch let error as MizanError where error.message == Credentials.expiredMessage {
            routes.metrics.refusal(reason: "expired")
            throw error
        }
        trace.update { $0.apiKeyID = key.id }
        return key
    }

    static let anthropicKeyHeader = HTTPField.Name("x-api-key")!

    /// `POST /v1/{endpoint}`: authenticate, read and check the body, then serve it by a
    /// provider route or an agent that serves its model on that endpoint. A client that goes
    /// away cancels the work.
    func infer(_ endpoint: Endpoint, _ request: Request, context: GatewayRequestContext) async throws -> Response {
        let key = try await authenticate(request, trace: context.trace, endpoint: endpoint)
        let deadline = try requestDeadline(request.headers[Gateway.deadlineHeader])
        let idempotencyKey = try Self.idempotencyKey(request.headers[Gateway.idempotencyKeyHeader])
        let until = ContinuousClock.now.advanced(by: deadline)
        let bytes = try await BodyReader.collect(request.body, limit: maxBodyBytes, timeout: bodyTimeout)
        let chat = try ClientRequest(endpoint: endpoint, body: bytes)
        context.trace.update {
            $0.model = chat.model
            $0.stream = chat.stream
            $0.endpoint = endpoint
        }
        // A model outside the key's allow-list answers as a model that does not exist.
        guard key.policy.allows(chat.model) else {
            routes.metrics.refusal(reason: "model")
            throw Self.unknownModel(chat.model)
        }
        if key.policy.isCounted {
            try await admit(key, deadline: deadline, reserve: reservation(for: chat, key: key), trace: context.trace)
        }
        return try await context.cancellingOnDisconnect {
            try await serve(
                chat, apiKeyID: key.id, idempotencyKey: idempotencyKey.map { "\(key.id):\($0)" }, until: until, trace: context.trace)
        }
    }

    /// Admits a request of a counted key in the store (exact across instances), before any byte
    /// of the answer: the hold is released when the request ends (``RequestRecorder``).
    /// The tokens a counted key's request reserves until it ends: its prompt (estimated from
    /// the body's size) and its output limit (`max_tokens` and its kin, or
    /// ``Gateway/Configuration/tokenReservation`` when it names none).
    func reservation(for chat: ClientRequest, key: APIKey) -> Int {
        guard key.policy.countsTokens else { return 0 }
        return StreamUsageMeter.estimateTokens(chat.body.count) + (chat.outputLimit ?? tokenReservation)
    }

    func admit(_ key: APIKey, deadline: Duration, reserve: Int = 0, trace: RequestTrace) async throws {
        // A counted key's tokens must be counted: not while the store does not take usage.
        guard !spool.isFull else {
            routes.metrics.refusal(reason: "usage_spool_full")
            throw MizanError(
                .storeUnavailable, "The gateway cannot count this API key's usage right now (its store does not answer); try again shortly."
            )
        }
        // Short: a key's holds are written on every change of its counters (unique enough
        // among one key's requests in flight).
        let holdID = String(IDRandom.next(), radix: 36)
        // A hold lapses a little after the request's deadline, should this gateway die first.
        let holdUntil = Date().addingTimeInterval(deadline.timeInterval + 30)
        let admittedAt = Date()
        switch try await credentials.store.admit(key, holdID: holdID, holdUntil: holdUntil, now: admittedAt, reserve: reserve) {
        case .admitted(let holdID, let status):
            trace.update {
                $0.admission = (key, holdID, reserve, admittedAt)
                $0.rateLimitHeaders = status.headers
            }
        case .refused(let refusal):
            routes.metrics.refusal(reason: refusal.reason.rawValue)
            trace.update { $0.rateLimitHeaders = refusal.status.headers }
            throw refusal.error
        }
    }

    static func unknownModel(_ model: String) -> MizanError {
        MizanError(.modelNotFound, "The model '\(SafeText.escaped(model))' does not exist or you do not have access to it.")
    }

    /// A client's `Idempotency-Key`: 1 to 255 printable ASCII characters.
    static func idempotencyKey(_ header: String?) throws -> String? {
        guard let header else { return nil }
        guard (1...255).contains(header.utf8.count), header.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
            throw MizanError(.badRequest, "The Idempotency-Key header must be 1 to 255 printable ASCII characters without spaces.")
        }
        return header
    }

    /// The deadline a request asks for, bounded by the configuration.
    func requestDeadline(_ header: String?) throws -> Duration {
        guard let header else { return defaultDeadline }
        guard let milliseconds = Int64(header.trimmingCharacters(in: .whitespaces)), milliseconds > 0 else {
            throw MizanError(.badRequest, "\(Gateway.deadlineHeader.rawName) must be a positive number of milliseconds.")
        }
        return min(.milliseconds(milliseconds), maxDeadline)
    }

    /// Serves a checked request: provider routes first, then agent nodes — those that serve its
    /// model on its endpoint.
    func serve(
        _ chat: ClientRequest, apiKeyID: String, idempotencyKey: String? = nil, until: ContinuousClock.Instant, trace: RequestTrace
    ) async throws -> Response {
        var routeFailure: MizanError?
        let candidates = routes.routes.candidates(for: chat.model, endpoint: chat.endpoint)
        if !candidates.isEmpty {
            trace.update {
                $0.modelKnown = true
                $0.modelRouted = true
            }
            switch try await routes.serve(chat, candidates: candidates, until: until, trace: trace) {
            case .served(let response): return response
            case .failed(let error): routeFailure = error
            }
        }
        // The recent list answers almost every request; a miss reads the store before refusing.
        let serves = { (node: Node) in dispatcher.isHealthy(node) && node.serves(chat.model, on: chat.endpoint) }
        if try await dispatcher.recentNodes().contains(where: serves) {
            trace.update { $0.modelKnown = true }
            return try await nodes.serve(chat, apiKeyID: apiKeyID, idempotencyKey: idempotencyKey, until: until, trace: trace)
        }
        let known = try await dispatcher.nodes()
        if known.contains(where: serves) {
            trace.update { $0.modelKnown = true }
            return try await nodes.serve(chat, apiKeyID: apiKeyID, idempotencyKey: idempotencyKey, until: until, trace: trace)
        }
        if let routeFailure { throw routeFailure }
        if known.contains(where: { $0.status != .pending && $0.serves(chat.model, on: chat.endpoint) }) {
            trace.update { $0.modelKnown = true }
            throw MizanError(.noHealthyNode, "No healthy node serves the model '\(SafeText.escaped(chat.model))' right now.")
        }
        let elsewhere =
            routes.routes.candidates(for: chat.model, endpoint: nil).contains { !$0.serves(chat.endpoint) }
            || known.contains { $0.status != .pending && $0.models.contains(chat.model) }
        if elsewhere {
            trace.update { $0.modelKnown = true }
            throw MizanError(
                .notFound,
                "The model '\(SafeText.escaped(chat.model))' is not served on /v1/\(chat.endpoint.rawValue); no route or node offers that endpoint for it."
            )
        }
        throw Self.unknownModel(chat.model)
    }
}
