import Foundation
import Hummingbird
import Logging
import MizanCore
import MizanProvider

/// Serves a client request through provider routes: the candidates for its model in priority
/// order, with fallback before any byte reached the client and a cool-down for failing routes.
struct RouteServer: Sendable {
    enum RouteOutcome {
        case served(Response)
        /// Every route failed in a way the next capacity may fix (connect, timeout, 5xx, 429).
        case failed(MizanError)
    }

    let routes: RouteTable
    let provider: ProviderClient
    let firstByteTimeout: Duration
    let metrics: GatewayMetrics
    let logger: Logger
    /// Upstream API keys by route name, from the routes' `apiKeyEnv`.
    let upstreamKeys: [String: String]

    init(
        routes: RouteTable, provider: ProviderClient, environment: [String: String], configuration: Gateway.Configuration,
        metrics: GatewayMetrics, logger: Logger
    ) {
        self.routes = routes
        self.provider = provider
        self.firstByteTimeout = configuration.firstByteTimeout
        self.metrics = metrics
        self.logger = logger
        var keys: [String: String] = [:]
        for route in routes.routesByModel.values.joined() {
            if let name = route.apiKeyEnv, let key = environment[name], !key.isEmpty { keys[route.name] = key }
        }
        self.upstreamKeys = keys
    }

    /// Tries the routes in order. A retryable failure before any byte went to the client moves
    /// on to the next route; a failing route cools down. A non-retryable failure is the answer.
    func serve(_ chat: ClientRequest, candidates: [ProviderRoute], until: ContinuousClock.Instant, trace: RequestTrace) async throws
        -> RouteOutcome
    {
        var lastError = MizanError(.upstreamFailure, "No provider route could serve the request.")
        for route in candidates {
            let remaining = until - .now
            guard remaining > .zero else { throw MizanError(.deadlineExceeded, "The request's deadline passed.") }
            let endpoint = ProviderEndpoint(
                baseURL: route.baseURL,
                apiKey: upstreamKeys[route.name],
                firstByteTimeout: min(firstByteTimeout, remaining),
                totalTimeout: min(.seconds(route.timeoutSeconds), remaining)
            )
            let body = chat.withModel(route.upstreamModel)
            do {
                let response: Response
                if chat.stream {
                    let events = try await trace.upstream { try await provider.stream(chat.endpoint, body, endpoint: endpoint) }
                    response = streamResponse(events, chat: chat, totalTimeout: endpoint.totalTimeout, trace: trace)
                } else {
                    let answer = try await trace.upstream { try await provider.call(chat.endpoint, body, endpoint: endpoint) }
                    trace.update { $0.usage = AnswerUsage.of(answer.usage, chat: chat, result: answer.body) }
                    response = JSONResponse.json(bytes: answer.body)
                }
                routes.recordSuccess(route)
                trace.update { $0.servedBy = route.name }
                return .served(response)
            } catch let error as ProviderError {
                metrics.upstreamFailure(route: route.name, kind: error.kindLabel)
                guard error.isRetryable else { throw error.mizanError }
                lastError = error.mizanError
                if routes.recordFailure(route) {
                    metrics.cooldown(route: route.name)
                    logger.warning(
                        "provider route cooling down", metadata: ["mizan.route": "\(route.name)", "mizan.cooldown": "\(routes.cooldown)"])
                }
                logger.info(
                    "provider route failed, trying the next capacity",
                    metadata: ["mizan.route": "\(route.name)", "mizan.error": "\(error)", "mizan.request.id": "\(trace.fields.requestID)"]
                )
            }
        }
        return .failed(lastError)
    }

    /// Relays a provider's event stream to the client as it arrives, bounded by the route's
    /// total time; usage comes from the final usage chunk, or is estimated.
    func streamResponse(_ events: ServerSentEvents, chat: ClientRequest, totalTimeout: Duration, trace: RequestTrace) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let body = ResponseBody { writer in
            var relay = StreamRelay(chat: chat)
            do {
                for try await data in events.bounded(by: totalTimeout) {
                    try await writer.write(relay.frame(data))
                    if data == "[DONE]" { break }
                }
            } catch let error as ProviderError {
                trace.update { $0.streamError = "\(error)" }
                try await writer.write(StreamRelay.errorFrame(error.mizanError, endpoint: chat.endpoint))
            }
            trace.update { $0.usage = relay.usage }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }
}
