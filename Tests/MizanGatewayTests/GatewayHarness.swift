import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MizanConsole
import MizanCore
import MizanDispatch
import MizanGateway
import MizanMockProvider
import MizanProvider
import MizanStore
import MizanTestSupport
import NIOCore
import NIOHTTP1
import Prometheus

/// Runs a mock provider and hands over its base URL (`http://127.0.0.1:P/v1`).
func withMock<T: Sendable>(_ configuration: MockProvider.Configuration = .init(), _ body: (String) async throws -> T) async throws -> T {
    try await withServer({ MockProvider.application(configuration, onServerRunning: $0) }) { port in
        try await body("http://127.0.0.1:\(port)/v1")
    }
}

/// A base URL where nothing listens.
func deadBaseURL() throws -> String {
    "http://127.0.0.1:\(try deadPort())/v1"
}

/// A gateway on a loopback port with an in-memory store, an admin token and one API key.
struct Harness: Sendable {
    static let adminToken = "admin-secret-for-tests"
    let gateway: Gateway
    let store: InMemoryStore
    let port: Int
    let apiKey: String
    /// Set when the gateway runs in process, without a port (MizanTesting's client).
    var inProcess: GatewayClient? = nil

    var http: HTTPClient { ProviderClient.shared.httpClient }

    /// Sends a request; `token` becomes the bearer credential.
    func send(
        _ method: HTTPMethod,
        _ path: String,
        token: String? = nil,
        body: String? = nil,
        headers: [(String, String)] = [],
        timeout: TimeAmount = .seconds(30)
    ) async throws -> HTTPAnswer {
        if let inProcess {
            var fields = HTTPFields()
            for (name, value) in headers { if let name = HTTPField.Name(name) { fields.append(HTTPField(name: name, value: value)) } }
            let answer = try await inProcess.send(
                HTTPRequest.Method(rawValue: method.rawValue)!, path, token: token, json: body, headers: fields)
            var converted = HTTPHeaders()
            for field in answer.headers { converted.add(name: field.name.rawName, value: field.value) }
            return HTTPAnswer(status: Int(answer.status.code), headers: converted, body: Data(answer.body.readableBytesView))
        }
        return try await sendHTTP(method, "http://127.0.0.1:\(port)\(path)", token: token, body: body, headers: headers, timeout: timeout)
    }

    /// A chat completion as a client sends it.
    func chat(
        model: String = "mock-model", stream: Bool = false, key: String? = nil, extra: String = "", headers: [(String, String)] = [],
        timeout: TimeAmount = .seconds(30)
    ) async throws -> HTTPAnswer {
        let options = stream ? #","stream_options":{"include_usage":true}"# : ""
        let body = #"{"model":"\#(model)","messages":[{"role":"user","content":"say two words"}],"stream":\#(stream)\#(options)\#(extra)}"#
        return try await send(.POST, "/v1/chat/completions", token: key ?? apiKey, body: body, headers: headers, timeout: timeout)
    }

    /// Starts a streaming chat completion, reads its first bytes, then drops the connection.
    func abandonStream(model: String) async throws {
        try await MizanTestSupport.abandonStream(
            "http://127.0.0.1:\(port)/v1/chat/completions", token: apiKey,
            body: #"{"model":"\#(model)","messages":[{"role":"user","content":"hi"}],"stream":true}"#
        )
    }

    /// Creates a node through the admin API and registers it through the agent API.
    func registerNode(
        models: [String], endpoints: [Endpoint] = Endpoint.all, maxConcurrency: Int = 4, name: String = "node"
    ) async throws -> (id: String, token: String) {
        let created = try await send(.POST, "/admin/v1/nodes", token: Self.adminToken, body: #"{"name":"\#(name)"}"#)
        guard created.status == 201, let registration = created.json["registrationToken"] as? String else {
            throw HarnessError("node creation failed: \(created.status) \(created.text)")
        }
        let report = NodeReport(models: models, endpoints: endpoints, maxConcurrency: maxConcurrency)
        let body = String(decoding: try AgentWire.encoder().encode(AgentWire.RegisterRequest(report: report)), as: UTF8.self)
        let registered = try await send(.POST, "/agent/v1/register", token: registration, body: body)
        guard registered.status == 201 else { throw HarnessError("registration failed: \(registered.status) \(registered.text)") }
        let answer = try AgentWire.decoder().decode(AgentWire.RegisterResponse.self, from: registered.body)
        return (answer.node.id.description, answer.nodeToken)
    }

    /// Leases through the agent API.
    func lease(token: String, limit: Int = 1, wait: Double = 5) async throws -> [AgentWire.Assignment] {
        let answer = try await send(.POST, "/agent/v1/lease", token: token, body: #"{"limit":\#(limit),"waitSeconds":\#(wait)}"#)
        guard answer.status == 200 else { throw HarnessError("lease failed: \(answer.status) \(answer.text)") }
        return try AgentWire.decoder().decode(AgentWire.LeaseResponse.self, from: answer.body).jobs
    }

    /// Completes a job through the agent API with a chat completion naming `content`.
    func complete(_ job: AgentWire.Assignment, token: String, attempt: Int? = nil, content: String = "from the node") async throws
        -> HTTPAnswer
    {
        let response = ChatCompletionResponse(
            id: "chatcmpl-node", created: 0, model: job.model,
            choices: [.init(index: 0, message: ChatMessage(role: "assistant", content: content), finishReason: "stop")],
            usage: ChatUsage(promptTokens: 7, completionTokens: 3)
        )
        let request = AgentWire.CompleteRequest(
            attempt: attempt ?? job.attempt,
            result: try JSONEncoder().encode(response),
            usage: TokenUsage(promptTokens: 7, completionTokens: 3)
        )
        let body = String(decoding: try AgentWire.encoder().encode(request), as: UTF8.self)
        return try await send(.POST, "/agent/v1/jobs/\(job.jobID)/complete", token: token, body: body)
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs a gateway over an in-memory store on a free port, with one API key issued.
func withGateway<T: Sendable>(
    routes: [ProviderRoute] = [],
    configuration: Gateway.Configuration = .init(),
    failuresBeforeCooldown: Int = 3,
    metricsRegistry: PrometheusCollectorRegistry? = nil,
    environment: [String: String] = [:],
    logger: Logger = Logger(label: "mizan.gateway"),
    adminToken: String? = Harness.adminToken,
    store: InMemoryStore = InMemoryStore(),
    inProcess: Bool = false,
    _ body: @Sendable (Harness) async throws -> T
) async throws -> T {
    let gateway = Gateway(
        store: store,
        routes: RouteTable(routes: routes, cooldown: .seconds(60), failuresBeforeCooldown: failuresBeforeCooldown),
        adminToken: adminToken,
        configuration: configuration,
        environment: environment,
        metricsRegistry: metricsRegistry,
        additions: [.console()],
        logger: logger
    )
    let key = try await gateway.credentials.issueKey(name: "tests")
    if inProcess {
        // No port: each request goes straight to the router (MizanTesting's in-process client).
        return try await gateway.withTestClient { client in
            try await body(Harness(gateway: gateway, store: store, port: 0, apiKey: key.secret, inProcess: client))
        }
    }
    return try await withServer({ gateway.application(port: 0, onServerRunning: $0) }) { port in
        try await body(Harness(gateway: gateway, store: store, port: port, apiKey: key.secret))
    }
}
