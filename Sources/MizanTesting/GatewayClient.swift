import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MizanGateway
import MizanMockProvider
import NIOCore

/// A client of a gateway run in process, without a port: each request goes straight to the
/// gateway's router, behind the same middleware as on a socket (Hummingbird's `.router` test
/// mode). What needs a real connection — a client that goes away, connection limits, the agent
/// channel — needs ``withServer(_:_:)`` and a real client instead.
///
/// ```swift
/// let gateway = Gateway(store: InMemoryStore(), adminToken: "admin")
/// try await gateway.withTestClient { client in
///     let answer = try await client.send(.GET, "/admin/v1/nodes", token: "admin")
///     #expect(answer.status == .ok)
/// }
/// ```
public struct GatewayClient: Sendable {
    let client: any TestClientProtocol

    /// Sends a request.
    /// - Parameters:
    ///   - method: The method.
    ///   - path: The path and query.
    ///   - token: Sent as `Authorization: Bearer TOKEN`.
    ///   - json: A body, sent with `Content-Type: application/json` unless `headers` name another
    ///     type (a form's).
    ///   - headers: More headers.
    /// - Returns: The whole answer.
    public func send(
        _ method: HTTPRequest.Method, _ path: String, token: String? = nil, json: String? = nil, headers: HTTPFields = [:]
    ) async throws -> TestResponse {
        var fields = headers
        if let token { fields[.authorization] = "Bearer \(token)" }
        if json != nil, fields[.contentType] == nil { fields[.contentType] = "application/json" }
        return try await client.executeRequest(uri: path, method: method, headers: fields, body: json.map { ByteBuffer(string: $0) })
    }
}

extension TestResponse {
    /// The body as text.
    public var text: String { String(buffer: body) }

    /// The body as a JSON object (empty when it is not one).
    public var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
    }
}

extension Gateway {
    /// Runs `body` with a client of this gateway in process (see ``GatewayClient``). The
    /// gateway's services (sweeper, usage spool) do not run: run them in a `ServiceGroup` of
    /// their own when a test needs them.
    /// - Parameter body: The test.
    /// - Returns: What `body` returns.
    public func withTestClient<T: Sendable>(_ body: @Sendable (GatewayClient) async throws -> T) async throws -> T {
        try await application(port: 0).test(.router) { client in try await body(GatewayClient(client: client)) }
    }
}

/// Runs the mock OpenAI-compatible provider (`MizanMockProvider`) on a free loopback port for
/// the duration of `body`.
/// - Parameters:
///   - configuration: Its models, latency, tokens and failures.
///   - body: Gets its base URL, `http://127.0.0.1:PORT/v1`.
/// - Returns: What `body` returns.
public func withMockProvider<T: Sendable>(
    _ configuration: MockProvider.Configuration = .init(), _ body: (String) async throws -> T
) async throws -> T {
    try await withServer({ MockProvider.application(configuration, onServerRunning: $0) }) { port in
        try await body("http://127.0.0.1:\(port)/v1")
    }
}
