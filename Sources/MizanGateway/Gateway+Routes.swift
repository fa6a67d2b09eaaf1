import Foundation
import Hummingbird
import Logging
import MizanCore
import MizanProvider

extension Gateway {
    enum RouteOutcome {
        case served(Response)
        /// Every route failed in a way the next capacity may fix (connect, timeout, 5xx, 429).
        case failed(MizanError)
    }

    /// Tries the routes in order. A retryable failure before any byte went to the client moves
    /// on to the next route; a failing route cools down. A non-retryable failure is the answer.
    func serveByRoutes(_ chat: ChatCompletionRequest, candidates: [ProviderRoute], until: ContinuousClock.Instant, trace: RequestTrace) async throws -> RouteOutcome {
        var lastError = MizanError(.upstreamFailure, "No provider route could serve the request.")
        for route in candidates {
            let remaining = until - .now
            guard remaining > .zero else { throw MizanError(.deadlineExceeded, "The request's deadline passed.") }
            let endpoint = ProviderEndpoint(
                baseURL: route.baseURL,
                apiKey: upstreamKeys[route.name],
                firstByteTimeout: min(configuration.firstByteTimeout, remaining),
                totalTimeout: min(.milliseconds(Int64(route.timeoutSeconds * 1000)), remaining)
            )
            let body = chat.withModel(route.upstreamModel)
            do {
                let response: Response
                if chat.stream {
                    let events = try await provider.streamChatCompletion(body, endpoint: endpoint)
                    response = streamResponse(events, chat: chat, totalTimeout: endpoint.totalTimeout, trace: trace)
                } else {
                    let answer = try await provider.chatCompletion(body, endpoint: endpoint)
                    trace.update { $0.usage = Self.usage(answer.usage, chat: chat, result: answer.body) }
                    response = HTTPResponses.json(bytes: answer.body)
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
                    logger.warning("provider route cooling down", metadata: ["mizan.route": "\(route.name)", "mizan.cooldown": "\(routes.cooldown)"])
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
    func streamResponse(_ events: ServerSentEvents, chat: ChatCompletionRequest, totalTimeout: Duration, trace: RequestTrace) -> Response {
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
                try await writer.write(StreamRelay.errorFrame(error.mizanError))
            }
            trace.update { $0.usage = relay.usage }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    /// Usage as the provider reported it, or estimated from the bytes when it did not (or
    /// reported counts that cannot be true).
    static func usage(_ reported: ChatUsage?, chat: ChatCompletionRequest, result: Data) -> TokenUsage {
        if let reported, let usage = TokenUsage(reported: reported) { return usage }
        return TokenUsage(promptTokens: StreamUsageMeter.estimateTokens(chat.body.count), completionTokens: StreamUsageMeter.estimateTokens(result.count), source: .estimated)
    }
}

extension AsyncSequence where Self: Sendable, Element == String {
    /// The same elements, ending with a ``ProviderError`` `timeout` once `limit` has passed,
    /// however long the source is between elements. Leaving the loop cancels the source.
    func bounded(by limit: Duration) -> AsyncThrowingStream<String, any Error> {
        let (stream, continuation) = AsyncThrowingStream<String, any Error>.makeStream()
        let pump = Task {
            do {
                for try await element in self { continuation.yield(element) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        let timer = OneShotTimer(after: limit) {
            continuation.finish(throwing: ProviderError(.timeout, detail: "the stream's overall deadline of \(limit) passed"))
        }
        continuation.onTermination = { _ in
            pump.cancel()
            timer.cancel()
        }
        return stream
    }
}

extension ProviderError {
    /// A short label for metrics.
    var kindLabel: String {
        switch kind {
        case .connect: "connect"
        case .timeout: "timeout"
        case .status(let code): "status_\(code)"
        case .invalidResponse: "invalid_response"
        }
    }
}
