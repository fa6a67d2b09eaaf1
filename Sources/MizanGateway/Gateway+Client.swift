import Foundation
import Hummingbird
import MizanCore
import MizanDispatch
import MizanStore

extension Gateway {
    func addClientRoutes(to router: Router<GatewayRequestContext>) {
        router.post("/v1/chat/completions") { request, context in
            try await self.chatCompletions(request, context: context)
        }
        router.get("/v1/models") { request, context in
            _ = try await self.authenticateClient(request, trace: context.trace)
            let list = ModelCatalog.list(routes: self.routes, nodes: try await self.healthyNodes())
            return try HTTPResponses.json(list)
        }
    }

    func authenticateClient(_ request: Request, trace: RequestTrace) async throws -> APIKey {
        let key = try await credentials.authenticateClient(Credentials.bearer(request.headers[.authorization]))
        trace.update { $0.apiKeyID = key.id }
        return key
    }

    /// `POST /v1/chat/completions`: authenticate, read and check the body, then serve it by a
    /// provider route or an agent. A client that goes away cancels the work.
    func chatCompletions(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let key = try await authenticateClient(request, trace: context.trace)
        let deadline = try requestDeadline(request.headers[Self.deadlineHeader])
        let until = ContinuousClock.now.advanced(by: deadline)
        let bytes = try await HTTPResponses.collect(request.body, limit: configuration.maxBodyBytes, timeout: configuration.bodyTimeout)
        let chat = try ChatCompletionRequest(body: bytes)
        context.trace.update {
            $0.model = chat.model
            $0.stream = chat.stream
        }
        return try await context.cancellingOnDisconnect {
            try await self.serve(chat, apiKeyID: key.id, until: until, trace: context.trace)
        }
    }

    /// The deadline a request asks for, bounded by the configuration.
    func requestDeadline(_ header: String?) throws -> Duration {
        guard let header else { return configuration.defaultDeadline }
        guard let milliseconds = Int64(header.trimmingCharacters(in: .whitespaces)), milliseconds > 0 else {
            throw MizanError(.badRequest, "\(Self.deadlineHeader.rawName) must be a positive number of milliseconds.")
        }
        return min(.milliseconds(milliseconds), configuration.maxDeadline)
    }

    /// Serves a checked request: provider routes first, then agent nodes.
    func serve(_ chat: ChatCompletionRequest, apiKeyID: String, until: ContinuousClock.Instant, trace: RequestTrace) async throws -> Response {
        var routeFailure: MizanError?
        let candidates = routes.candidates(for: chat.model)
        if !candidates.isEmpty {
            trace.update { $0.modelKnown = true }
            switch try await serveByRoutes(chat, candidates: candidates, until: until, trace: trace) {
            case .served(let response): return response
            case .failed(let error): routeFailure = error
            }
        }
        // The recent list answers almost every request; a miss reads the store before refusing.
        if try await dispatcher.recentNodes().contains(where: { isHealthy($0) && $0.models.contains(chat.model) }) {
            trace.update { $0.modelKnown = true }
            return try await serveByAgents(chat, apiKeyID: apiKeyID, until: until, trace: trace)
        }
        let nodes = try await dispatcher.nodes()
        if nodes.contains(where: { isHealthy($0) && $0.models.contains(chat.model) }) {
            trace.update { $0.modelKnown = true }
            return try await serveByAgents(chat, apiKeyID: apiKeyID, until: until, trace: trace)
        }
        if let routeFailure { throw routeFailure }
        if nodes.contains(where: { $0.status != .pending && $0.models.contains(chat.model) }) {
            trace.update { $0.modelKnown = true }
            throw MizanError(.noHealthyNode, "No healthy node serves the model '\(SafeText.escaped(chat.model))' right now.")
        }
        throw MizanError(.modelNotFound, "The model '\(SafeText.escaped(chat.model))' does not exist or you do not have access to it.")
    }

    /// Whether a node counts as capacity now: active, not unhealthy, heard from recently.
    func isHealthy(_ node: Node, now: Date = Date()) -> Bool {
        guard node.canLease, let lastSeen = node.lastSeen else { return false }
        return now.timeIntervalSince(lastSeen) <= configuration.nodeStaleAfter.timeInterval
    }

    /// The nodes that count as capacity now.
    func healthyNodes() async throws -> [Node] {
        try await dispatcher.nodes().filter { isHealthy($0) }
    }
}
