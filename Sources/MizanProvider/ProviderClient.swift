import AsyncHTTPClient
import Foundation
import Logging
import MizanCore
import NIOCore
import NIOHTTP1

/// A client of OpenAI-compatible servers: every inference endpoint (``MizanCore/Endpoint``:
/// chat, completions, embeddings, Responses, Anthropic Messages; JSON and server-sent events)
/// and the model list, with errors mapped to ``ProviderError``.
///
/// Time limits: the connect timeout and the idle gap between body bytes come from the
/// HTTP client's configuration; the response head is bounded by the endpoint's
/// `firstByteTimeout`; a JSON call as a whole by `totalTimeout`. A stream's consumer bounds
/// the whole stream (cancelling its task stops the body).
public struct ProviderClient: Sendable {
    /// The HTTP client used for calls.
    public let httpClient: HTTPClient
    /// The largest body read from a JSON answer.
    public var maxResponseBytes: Int

    /// Creates a client.
    /// - Parameters:
    ///   - httpClient: The HTTP client; ``makeHTTPClient(connectTimeout:idleTimeout:maxConnectionsPerHost:)`` makes a suitable one.
    ///   - maxResponseBytes: The largest JSON answer accepted (16 MiB).
    public init(httpClient: HTTPClient, maxResponseBytes: Int = 16 * 1024 * 1024) {
        self.httpClient = httpClient
        self.maxResponseBytes = maxResponseBytes
    }

    /// A client for the life of the process, on an HTTP client from ``makeHTTPClient(connectTimeout:idleTimeout:maxConnectionsPerHost:)``.
    public static let shared = ProviderClient(httpClient: makeHTTPClient())

    /// An HTTP client fit for upstream calls: a refused or timed-out connection fails at once
    /// (so the next route can be tried) instead of being retried until the request deadline.
    /// Shut it down (`try await client.shutdown()`) when done, unless it lives as long as the process.
    /// - Parameters:
    ///   - connectTimeout: Limit for establishing a connection (10 seconds).
    ///   - idleTimeout: Limit for a gap between bytes of an answer (60 seconds).
    ///   - maxConnectionsPerHost: Connections kept to one upstream host (512).
    /// - Returns: The HTTP client.
    public static func makeHTTPClient(
        connectTimeout: Duration = .seconds(10),
        idleTimeout: Duration = .seconds(60),
        maxConnectionsPerHost: Int = 512
    ) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(
            connect: .nanoseconds(connectTimeout.nanoseconds),
            read: .nanoseconds(idleTimeout.nanoseconds)
        )
        configuration.connectionPool.retryConnectionEstablishment = false
        // Many clients share one upstream: AsyncHTTPClient's default of 8 connections per host
        // would queue the rest.
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = maxConnectionsPerHost
        configuration.decompression = .disabled
        // No spans: Mizan bootstraps no tracer, and the no-op spans AsyncHTTPClient makes by
        // default cost a fiftieth of a proxied request's CPU (a profile of the provider route).
        configuration.tracing.tracer = nil
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// Sends a non-streamed chat completion and returns the server's body.
    /// - Parameters:
    ///   - body: The request body, sent as is.
    ///   - endpoint: The server.
    /// - Returns: The response body and the usage it reports.
    /// - Throws: ``ProviderError``.
    public func chatCompletion(_ body: Data, endpoint: ProviderEndpoint) async throws -> ProviderResponse {
        try await call(.chatCompletions, body, endpoint: endpoint)
    }

    /// Sends a non-streamed request to one of the server's inference endpoints and returns its body.
    /// - Parameters:
    ///   - path: The endpoint (`/chat/completions`, `/embeddings`, `/messages`…).
    ///   - body: The request body, sent as is.
    ///   - endpoint: The server.
    /// - Returns: The response body and the usage it reports, read in the endpoint's shape.
    /// - Throws: ``ProviderError``.
    public func call(_ path: Endpoint, _ body: Data, endpoint: ProviderEndpoint) async throws -> ProviderResponse {
        try await withTotalTimeout(endpoint.totalTimeout) {
            let response = try await send(
                path: path.path, method: .POST, body: body, contentType: path.contentType(of: body), endpoint: endpoint)
            let data = try await collect(response)
            guard response.status == .ok else {
                throw ProviderError(.status(Int(response.status.code)), detail: Self.excerpt(data))
            }
            return ProviderResponse(
                body: data, usage: ReportedUsage.of(answer: data, endpoint: path), contentType: response.headers.first(name: "Content-Type")
            )
        }
    }

    /// Starts a streamed chat completion. Returns once the server answered 200 with its
    /// head; the events then arrive as the server sends them.
    /// - Parameters:
    ///   - body: The request body (with `"stream": true`), sent as is.
    ///   - endpoint: The server.
    /// - Returns: The stream of event data (`data:` payloads, `[DONE]` included).
    /// - Throws: ``ProviderError`` for a failure before the first event.
    public func streamChatCompletion(_ body: Data, endpoint: ProviderEndpoint) async throws -> ServerSentEvents {
        try await stream(.chatCompletions, body, endpoint: endpoint)
    }

    /// Starts a streamed request on one of the server's inference endpoints. Returns once the
    /// server answered 200 with its head; the events then arrive as the server sends them.
    /// - Parameters:
    ///   - path: The endpoint.
    ///   - body: The request body (with `"stream": true`), sent as is.
    ///   - endpoint: The server.
    /// - Returns: The stream of events (``SSEEvent``'s carried form: named events keep their names).
    /// - Throws: ``ProviderError`` for a failure before the first event.
    public func stream(_ path: Endpoint, _ body: Data, endpoint: ProviderEndpoint) async throws -> ServerSentEvents {
        let response = try await send(
            path: path.path, method: .POST, body: body, contentType: path.contentType(of: body), endpoint: endpoint)
        guard response.status == .ok else {
            let data = (try? await collect(response)) ?? Data()
            throw ProviderError(.status(Int(response.status.code)), detail: Self.excerpt(data))
        }
        return ServerSentEvents(body: response.body)
    }

    /// Reads the server's model list.
    /// - Parameter endpoint: The server.
    /// - Returns: The models.
    /// - Throws: ``ProviderError``.
    public func models(endpoint: ProviderEndpoint) async throws -> ModelList {
        try await withTotalTimeout(endpoint.firstByteTimeout) {
            let response = try await send(path: "/models", method: .GET, body: nil, contentType: nil, endpoint: endpoint)
            let data = try await collect(response)
            guard response.status == .ok else {
                throw ProviderError(.status(Int(response.status.code)), detail: Self.excerpt(data))
            }
            guard let list = try? JSONDecoder().decode(ModelList.self, from: data) else {
                throw ProviderError(.invalidResponse, detail: Self.excerpt(data))
            }
            return list
        }
    }

    /// Asks a server's health endpoint: `GET url`, its status (the body read and dropped, at most 64 KiB).
    /// - Parameters:
    ///   - url: The whole URL, e.g. `http://127.0.0.1:8080/health`.
    ///   - apiKey: The bearer key, if the server wants one.
    ///   - timeout: How long the whole exchange may take.
    /// - Returns: The HTTP status.
    /// - Throws: ``ProviderError`` (`connect` when the server refuses the connection, `timeout`).
    public func probe(_ url: String, apiKey: String? = nil, timeout: Duration) async throws -> Int {
        try await withTotalTimeout(timeout) {
            var request = HTTPClientRequest(url: url)
            request.method = .GET
            if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
            do {
                let response = try await httpClient.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
                _ = try await response.body.collect(upTo: 64 << 10)
                return Int(response.status.code)
            } catch {
                throw Self.map(error)
            }
        }
    }

    /// Reads a small document from a server: `GET url`, its status and body.
    /// - Parameters:
    ///   - url: The whole URL, e.g. `http://127.0.0.1:11434/api/ps`.
    ///   - apiKey: The bearer key, if the server wants one.
    ///   - timeout: How long the whole exchange may take.
    ///   - maxBytes: The largest body read (1 MiB); a longer one is an `invalidResponse`.
    /// - Returns: The HTTP status and the body.
    /// - Throws: ``ProviderError`` (`connect` when the server refuses the connection, `timeout`).
    public func get(_ url: String, apiKey: String? = nil, timeout: Duration, maxBytes: Int = 1 << 20) async throws -> (
        status: Int, body: Data
    ) {
        try await withTotalTimeout(timeout) {
            var request = HTTPClientRequest(url: url)
            request.method = .GET
            request.headers.add(name: "Accept", value: "application/json")
            if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
            do {
                let response = try await httpClient.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
                let body = try await response.body.collect(upTo: maxBytes)
                return (Int(response.status.code), Data(body.readableBytesView))
            } catch {
                throw Self.map(error)
            }
        }
    }

    private func send(
        path: String, method: HTTPMethod, body: Data?, contentType: String?, endpoint: ProviderEndpoint
    ) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: endpoint.url(path))
        request.method = method
        request.headers.add(name: "Accept", value: "application/json, text/event-stream")
        if let key = endpoint.apiKey {
            request.headers.add(name: "Authorization", value: "Bearer \(key)")
            // Anthropic's own API reads its key from x-api-key and wants a version; local servers
            // that serve /messages read the bearer and ignore these.
            if path == Endpoint.messages.path {
                request.headers.add(name: "x-api-key", value: key)
                request.headers.add(name: "anthropic-version", value: "2023-06-01")
            }
        }
        if let body {
            request.headers.add(name: "Content-Type", value: contentType ?? "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            return try await httpClient.execute(request, timeout: .nanoseconds(endpoint.firstByteTimeout.nanoseconds))
        } catch {
            throw Self.map(error)
        }
    }

    private func collect(_ response: HTTPClientResponse) async throws -> Data {
        do {
            let buffer = try await response.body.collect(upTo: maxResponseBytes)
            return Data(buffer.readableBytesView)
        } catch {
            throw Self.map(error)
        }
    }

    static func map(_ error: any Error) -> any Error {
        if error is ProviderError || error is CancellationError { return error }
        if error is NIOTooManyBytesError { return ProviderError(.invalidResponse, detail: "response body too large") }
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout:
                return ProviderError(.timeout, detail: "\(error)")
            case .cancelled:
                return CancellationError()
            default:
                return ProviderError(.connect, detail: "\(error)")
            }
        }
        return ProviderError(.connect, detail: "\(error)")
    }

    static func excerpt(_ data: Data) -> String {
        String(decoding: data.prefix(512), as: UTF8.self)
    }
}

/// A JSON answer of an upstream server.
public struct ProviderResponse: Sendable {
    /// The body, as the server sent it.
    public var body: Data
    /// The usage it reports, if any.
    public var usage: ChatUsage?
    /// Its `Content-Type`, as the server sent it (a transcription may be plain text).
    public var contentType: String?

    /// A response.
    /// - Parameters:
    ///   - body: The body.
    ///   - usage: The usage it reports.
    ///   - contentType: Its `Content-Type`.
    public init(body: Data, usage: ChatUsage?, contentType: String? = nil) {
        self.body = body
        self.usage = usage
        self.contentType = contentType
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// Runs `body`, failing with a ``ProviderError`` timeout when it takes longer than `limit`;
/// the body is cancelled then (which also stops a body being read).
func withTotalTimeout<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withTimeLimit(limit, timeoutError: { ProviderError(.timeout, detail: "overall deadline of \(limit) passed") }, body)
}
