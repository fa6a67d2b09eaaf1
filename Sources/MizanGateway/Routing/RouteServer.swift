import Foundation
import Hummingbird
import Logging
import MizanCore
import MizanProvider

/// Serves a client request through provider routes: the candidates for its model in priority
/// order, with fallback before any byte reached the client and a cool-down for failing routes.
struct RouteServer: Sendable {
    enum RouteOutcome {
        case served(Served)
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

    /// - Parameters:
    ///   - routes: The provider routes.
    ///   - provider: The upstream HTTP client.
    ///   - environment: Where routes' `apiKeyEnv` names are looked up.
    ///   - firstByteTimeout: The longest a route may take to send its response head.
    ///   - metrics: Where failures and cool-downs are counted.
    ///   - logger: Where fallbacks are logged.
    init(
        routes: RouteTable, provider: ProviderClient, environment: [String: String], firstByteTimeout: Duration, metrics: GatewayMetrics,
        logger: Logger
    ) {
        self.routes = routes
        self.provider = provider
        self.firstByteTimeout = firstByteTimeout
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
    /// - Parameters:
    ///   - chat: The client's request.
    ///   - candidates: The routes to try, in order.
    ///   - until: The request's deadline.
    ///   - requestID: The request's id, for the log.
    ///   - upstream: Where the waits on a route are counted.
    /// - Returns: The answer, or the last retryable failure when every route failed.
    func serve(
        _ chat: ClientRequest, candidates: [ProviderRoute], until: ContinuousClock.Instant, requestID: String, upstream: UpstreamTime
    ) async throws -> RouteOutcome {
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
                let served: Served
                if chat.stream {
                    let events = try await upstream.measure { try await provider.stream(chat.endpoint, body, endpoint: endpoint) }
                    let ending = StreamEnding()
                    served = Served(
                        response: streamResponse(events, chat: chat, totalTimeout: endpoint.totalTimeout, ending: ending),
                        outcome: RequestOutcome(servedBy: .route(route.name)), ending: ending)
                } else {
                    let answer = try await upstream.measure { try await provider.call(chat.endpoint, body, endpoint: endpoint) }
                    served = Served(
                        response: JSONResponse.answer(answer.body, endpoint: chat.endpoint, contentType: answer.contentType),
                        outcome: RequestOutcome(
                            servedBy: .route(route.name), usage: .answering(chat, reported: answer.usage, answer: answer.body)))
                }
                routes.recordSuccess(route)
                return .served(served)
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
                    metadata: ["mizan.route": "\(route.name)", "mizan.error": "\(error)", "mizan.request.id": "\(requestID)"]
                )
            }
        }
        return .failed(lastError)
    }

    /// Relays a provider's event stream to the client as it arrives, bounded by the route's
    /// total time; usage comes from the final usage chunk, or is estimated.
    func streamResponse(_ events: ServerSentEvents, chat: ClientRequest, totalTimeout: Duration, ending: StreamEnding) -> Response {
        Response.eventStream(
            ResponseBody { writer in
                var relay = StreamRelay(chat: chat)
                do {
                    for try await data in events.bounded(by: totalTimeout) {
                        try await writer.write(relay.frame(data))
                        if data == "[DONE]" { break }
                    }
                } catch let error as ProviderError {
                    ending.broke("\(error)")
                    try await writer.write(StreamRelay.errorFrame(error.mizanError, endpoint: chat.endpoint))
                }
                ending.used(relay.usage)
                try await writer.finish(nil)
            })
    }
}
