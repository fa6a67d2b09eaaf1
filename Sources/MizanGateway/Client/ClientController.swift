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
    /// Where a counted key's request is admitted (and, once answered, its admission ends).
    let admissions: Admissions
    let limits: Limits
    /// Which capacity serves a request, in which order.
    let placement: any PlacementPolicy

    /// The bounds on a client's request.
    struct Limits: Sendable {
        /// The largest body read.
        var maxBodyBytes: Int
        /// The longest a body may take to arrive.
        var bodyTimeout: Duration
        /// The deadline of a request that names none.
        var defaultDeadline: Duration
        /// The longest deadline a request may ask for.
        var maxDeadline: Duration
        /// The output tokens reserved for a counted key's request that names no output limit.
        var tokenReservation: Int
    }

    func addRoutes(to router: RouterGroup<GatewayRequestContext>) {
        // `POST /v1/responses` is ``BackgroundResponses``'s: it hands what is not a background
        // request back to ``infer(_:_:context:)``.
        for endpoint in Endpoint.allCases where endpoint != .responses {
            router.post(RouterPath("/v1" + endpoint.path)) { request, context in
                try await infer(endpoint, request, context: context)
            }
        }
        router.get("/v1/models") { request, context in
            let key = try await authenticate(request, record: context.record)
            var list = ModelCatalog.list(routes: routes.routes, nodes: try await dispatcher.healthyNodes())
            // A key with an allow-list sees its models only.
            list.data.removeAll { !key.policy.allows($0.id) }
            return try JSONResponse.json(list)
        }
    }

    /// The API key of a request: `Authorization: Bearer KEY`, or on Anthropic's endpoint also
    /// `x-api-key: KEY` (what the official Anthropic SDKs send).
    func authenticate(_ request: Request, record: RequestRecord, endpoint: Endpoint? = nil) async throws -> APIKey {
        var presented = Credentials.bearer(request.headers[.authorization])
        if presented == nil, endpoint == .messages, let header = request.headers[.anthropicAPIKey] {
            presented = header.trimmingCharacters(in: .whitespaces)
        }
        if presented == nil, endpoint == .messages {
            throw MizanError(.unauthorized, "Missing API key. Send it as 'x-api-key: <key>' or 'Authorization: Bearer <key>'.")
        }
        let key: APIKey
        do {
            key = try await credentials.authenticateClient(presented)
        } catch let error as MizanError where error.code == .expiredAPIKey {
            routes.metrics.refusal(reason: "expired")
            throw error
        }
        record.authenticated(apiKeyID: key.id)
        return key
    }

    /// `POST /v1/{endpoint}`: authenticate, read and check the body, then serve it by a
    /// provider route or an agent that serves its model on that endpoint. A client that goes
    /// away cancels the work.
    func infer(_ endpoint: Endpoint, _ request: Request, context: GatewayRequestContext) async throws -> Response {
        let record = context.record
        let key = try await authenticate(request, record: record, endpoint: endpoint)
        let deadline = try requestDeadline(request.headers[.mizanDeadline])
        let idempotencyKey = try Self.idempotencyKey(request.headers[.idempotencyKey])
        let priority = try Self.priorityClass(request.headers[.mizanPriority], key: key)
        record.priority = priority
        let until = ContinuousClock.now.advanced(by: deadline)
        let bytes = try await BodyReader.collect(request.body, limit: limits.maxBodyBytes, timeout: limits.bodyTimeout)
        let chat = try ClientRequest(endpoint: endpoint, body: bytes, contentType: request.headers[.contentType])
        record.asked(.init(endpoint: endpoint, model: chat.model))
        // A model outside the key's allow-list answers as a model that does not exist.
        guard key.policy.allows(chat.model) else {
            routes.metrics.refusal(reason: "model")
            throw Self.unknownModel(chat.model)
        }
        if key.policy.isCounted {
            try await admissions.open(key, deadline: deadline, reserve: reservation(for: chat, key: key), record: record)
        }
        return try await context.cancellingOnDisconnect {
            do {
                let served = try await serve(
                    chat, key: key, priority: priority, idempotencyKey: idempotencyKey.map { "\(key.id):\($0)" }, until: until,
                    record: record)
                record.served(served.outcome, ending: served.ending)
                return served.response
            } catch let failure as ServingFailure {
                record.served(failure.outcome)
                throw failure.error
            }
        }
    }

    /// The tokens a counted key's request reserves until it ends: its prompt (estimated from
    /// the body's size) and its output limit (`max_tokens` and its kin, or
    /// ``Gateway/Configuration/tokenReservation`` when it names none).
    func reservation(for chat: ClientRequest, key: APIKey) -> Int {
        guard key.policy.countsTokens else { return 0 }
        return StreamUsageMeter.estimateTokens(chat.promptBytes) + (chat.outputLimit ?? limits.tokenReservation)
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

    /// The class a request is served in: its key's, or a lower one it asks for with
    /// `X-Mizan-Priority` (asking for a higher one gets the key's).
    static func priorityClass(_ header: String?, key: APIKey) throws -> PriorityClass {
        let own = key.policy.priorityClass
        guard let header else { return own }
        guard let asked = PriorityClass(rawValue: header.trimmingCharacters(in: .whitespaces).lowercased()) else {
            throw MizanError(.badRequest, "\(HTTPField.Name.mizanPriority.rawName) must be \(PriorityClass.names).")
        }
        return min(asked, own)
    }

    /// The deadline a request asks for, bounded by the configuration.
    func requestDeadline(_ header: String?) throws -> Duration {
        guard let header else { return limits.defaultDeadline }
        guard let milliseconds = Int64(header.trimmingCharacters(in: .whitespaces)), milliseconds > 0 else {
            throw MizanError(.badRequest, "\(HTTPField.Name.mizanDeadline.rawName) must be a positive number of milliseconds.")
        }
        return min(.milliseconds(milliseconds), limits.maxDeadline)
    }

    /// Serves a checked request on the capacity its placement names, in order: the model's
    /// provider routes, the agent nodes that serve it on its endpoint. Nodes placed before
    /// routes (`local-first`) hold the request for the model's spill time at most: a request no
    /// node leased by then is withdrawn from the queue and goes to the routes.
    func serve(
        _ chat: ClientRequest, key: APIKey, priority: PriorityClass = .standard, idempotencyKey: String? = nil,
        until: ContinuousClock.Instant, record: RequestRecord
    ) async throws -> Served {
        var routeFailure: MizanError?
        // Read once, and only when asked: the recent list answers almost every request.
        var known: [Node]?
        let serves = { (node: Node) in dispatcher.isHealthy(node) && node.serves(chat.model, on: chat.endpoint) }
        let order = placement.order(model: chat.model, endpoint: chat.endpoint)
        // The model's routes, read once: a spill asks whether there are any, then uses them.
        let candidates = order.contains(.providerRoutes) ? routes.routes.candidates(for: chat.model, endpoint: chat.endpoint) : []
        for (position, capacity) in order.enumerated() {
            switch capacity {
            case .providerRoutes:
                guard !candidates.isEmpty else { continue }
                record.model(.routed)
                switch try await routes.serve(
                    chat, candidates: candidates, until: until, requestID: record.requestID, upstream: record.upstream)
                {
                case .served(let served): return served
                case .failed(let error): routeFailure = error
                }
            case .agentNodes:
                let recent = try await dispatcher.recentNodes()
                var serving = recent.count(where: serves)
                if serving == 0 {
                    // A miss reads the store before the request is refused.
                    let nodes = try await dispatcher.nodes()
                    known = nodes
                    serving = nodes.count(where: serves)
                }
                guard serving > 0 else { continue }
                record.model(.known)
                var queueing = NodeServer.Queueing(
                    priority: priority, weight: key.policy.shareWeight, maxQueued: key.policy.maxQueued)
                // A spill only where routes come next and serve the request.
                if let spill = placement.spillAfter(model: chat.model), order[(position + 1)...].contains(.providerRoutes),
                    !candidates.isEmpty
                {
                    queueing.spillAfter = spill
                }
                // Affinity sets one node apart from others only.
                if serving > 1 { queueing.conversation = ConversationKeys(body: chat.body, endpoint: chat.endpoint) }
                do {
                    return try await nodes.serve(
                        chat, apiKeyID: key.id, idempotencyKey: idempotencyKey, until: until, requestID: record.requestID,
                        upstream: record.upstream, queueing: queueing)
                } catch is JobSpilled {
                    continue
                }
            }
        }
        if let routeFailure { throw routeFailure }
        throw try await refusal(chat, known: known, record: record)
    }

    /// Why nothing serves a request: its model's nodes are unhealthy (503), its model is served
    /// on other endpoints only (404), or no route or node knows it (404 `model_not_found`).
    func refusal(_ chat: ClientRequest, known: [Node]?, record: RequestRecord) async throws -> MizanError {
        var known = known ?? []
        if known.isEmpty { known = try await dispatcher.nodes() }
        let order = placement.order(model: chat.model, endpoint: chat.endpoint)
        if known.contains(where: { $0.status != .pending && $0.serves(chat.model, on: chat.endpoint) })
            || (!order.contains(.providerRoutes) && !routes.routes.candidates(for: chat.model, endpoint: chat.endpoint).isEmpty)
        {
            record.model(.known)
            return MizanError(.noHealthyNode, "No healthy node serves the model '\(SafeText.escaped(chat.model))' right now.")
        }
        let elsewhere =
            routes.routes.candidates(for: chat.model, endpoint: nil).contains { !$0.serves(chat.endpoint) }
            || known.contains { $0.status != .pending && $0.models.contains(chat.model) }
        if elsewhere {
            record.model(.known)
            return MizanError(
                .notFound,
                "The model '\(SafeText.escaped(chat.model))' is not served on /v1/\(chat.endpoint.rawValue); no route or node offers that endpoint for it."
            )
        }
        return Self.unknownModel(chat.model)
    }
}
