import AsyncHTTPClient
import Foundation
import MizanCore
import MizanGateway
import MizanMockProvider
import MizanStore
import MizanTestSupport
import Prometheus
import Testing

@Suite("Client API over loopback: provider routes")
struct ClientAPITests {
    @Test func answersThroughARouteRewritingOnlyTheModel() async throws {
        try await withMock(.init(models: ["mock-model"], tokens: 4)) { base in
            let route = ProviderRoute(model: "public-name", baseURL: base, upstreamModel: "mock-model")
            try await withGateway(routes: [route]) { (gateway: Harness) async throws in
                let answer = try await gateway.chat(
                    model: "public-name", extra: #","temperature":0.30000000000000004"#, headers: [("X-Request-Id", "trace-me-1")])
                #expect(answer.status == 200)
                #expect(answer.headers["X-Request-Id"].first == "trace-me-1")
                let completion = try JSONDecoder().decode(ChatCompletionResponse.self, from: answer.body)
                #expect(completion.choices.first?.message.content?.split(separator: " ").count == 4)
                // Upstream got the client's body byte for byte but for the model's name.
                let sent =
                    #"{"model":"public-name","messages":[{"role":"user","content":"say two words"}],"stream":false,"#
                    + #""temperature":0.30000000000000004}"#
                let received = try await mockLastRequest(base: base, gateway: gateway)
                #expect(received == sent.replacingOccurrences(of: #""model":"public-name""#, with: #""model":"mock-model""#))
                let summary = try await gateway.store.usageSummary()
                #expect(summary.count == 1)
                #expect(summary.first?.model == "public-name")
                #expect(summary.first?.requests == 1)
                #expect(summary.first?.completionTokens == 4)
            }
        }
    }

    @Test func streamsServerSentEventsWithUsage() async throws {
        try await withMock(.init(tokens: 3)) { base in
            try await withGateway(routes: [ProviderRoute(model: "mock-model", baseURL: base)]) { (gateway: Harness) async throws in
                let answer = try await gateway.chat(stream: true)
                #expect(answer.status == 200)
                #expect(answer.headers["Content-Type"].first == "text/event-stream")
                let events = answer.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
                #expect(events.allSatisfy { $0.hasPrefix("data: ") })
                #expect(events.last == "data: [DONE]")
                let chunks = try events.dropLast().map {
                    try JSONDecoder().decode(ChatCompletionChunk.self, from: Data($0.dropFirst(6).utf8))
                }
                #expect(chunks.compactMap { $0.choices.first?.delta.content }.joined() == "mizan balances every")
                #expect(chunks.last?.usage?.completionTokens == 3)
                #expect(try await eventually { try await gateway.store.usageSummary().first?.completionTokens == 3 })
            }
        }
    }

    @Test func fallsBackFromADeadRouteAndCoolsItDown() async throws {
        try await withMock { base in
            let dead = ProviderRoute(model: "mock-model", baseURL: try deadBaseURL(), priority: 1)
            let live = ProviderRoute(model: "mock-model", baseURL: base, priority: 2)
            try await withGateway(routes: [dead, live], failuresBeforeCooldown: 2) { (gateway: Harness) async throws in
                #expect(try await gateway.chat().status == 200)
                #expect(!gateway.gateway.routes.isCoolingDown(dead))
                #expect(try await gateway.chat(stream: true).status == 200)
                #expect(gateway.gateway.routes.isCoolingDown(dead))
                #expect(gateway.gateway.routes.candidates(for: "mock-model").map(\.name) == [live.name, dead.name])
                #expect(try await gateway.chat().status == 200)
            }
        }
    }

    @Test func fallsBackFromAFailingRouteAndReportsUpstreamFailure() async throws {
        try await withMock(.init(failureStatus: 500)) { failing in
            try await withMock(.init(tokens: 2)) { live in
                let routes = [
                    ProviderRoute(model: "mock-model", baseURL: failing, priority: 1),
                    ProviderRoute(model: "mock-model", baseURL: live, priority: 2),
                ]
                try await withGateway(routes: routes) { (gateway: Harness) async throws in
                    #expect(try await gateway.chat().status == 200)
                }
            }
            try await withGateway(routes: [ProviderRoute(model: "mock-model", baseURL: failing)]) { (gateway: Harness) async throws in
                let answer = try await gateway.chat()
                #expect(answer.status == 502)
                #expect(answer.errorCode == "upstream_error")
                #expect(answer.errorType == "server_error")
                #expect(answer.errorMessage?.contains("mock provider was told to fail") == false)
            }
        }
    }

    @Test func rateLimitedRouteIsRetriedElsewhereAndReported() async throws {
        try await withMock(.init(failureStatus: 429)) { limited in
            try await withMock(.init(tokens: 2)) { live in
                let routes = [
                    ProviderRoute(model: "mock-model", baseURL: limited, priority: 1),
                    ProviderRoute(model: "mock-model", baseURL: live, priority: 2),
                ]
                try await withGateway(routes: routes) { (gateway: Harness) async throws in
                    let answer = try await gateway.chat()
                    #expect(answer.status == 200, "the next route serves what the first refused with 429")
                    #expect(try await mockStats(base: limited, gateway: gateway)["failed"] == 1, "the limited route was tried first")
                    #expect(try await mockStats(base: live, gateway: gateway)["requests"] == 1)
                }
            }
            // With nowhere else to go, the client hears the rate limit as OpenAI's clients expect it.
            try await withGateway(routes: [ProviderRoute(model: "mock-model", baseURL: limited)]) { (gateway: Harness) async throws in
                let answer = try await gateway.chat()
                #expect(answer.status == 429)
                #expect(answer.errorType == "rate_limit_error")
            }
        }
    }

    @Test func invalidRequestUpstreamIsNotRetried() async throws {
        try await withMock(.init(failureStatus: 400)) { rejecting in
            try await withMock { live in
                let routes = [
                    ProviderRoute(model: "mock-model", baseURL: rejecting, priority: 1),
                    ProviderRoute(model: "mock-model", baseURL: live, priority: 2),
                ]
                try await withGateway(routes: routes) { (gateway: Harness) async throws in
                    let answer = try await gateway.chat()
                    #expect(answer.status == 400)
                    #expect(answer.errorType == "invalid_request_error")
                }
            }
        }
    }

    @Test func upstreamKeyComesFromTheEnvironment() async throws {
        try await withMock(.init(apiKey: "upstream-secret")) { base in
            let route = ProviderRoute(model: "mock-model", baseURL: base, apiKeyEnv: "MOCK_KEY")
            try await withGateway(routes: [route], environment: ["MOCK_KEY": "upstream-secret"]) { (gateway: Harness) async throws in
                #expect(try await gateway.chat().status == 200)
            }
            try await withGateway(routes: [route], environment: [:]) { (gateway: Harness) async throws in
                #expect(try await gateway.chat().status == 502)
            }
        }
    }

    @Test func deadlineHeaderBoundsASlowRoute() async throws {
        try await withMock(.init(latency: .seconds(20))) { slow in
            try await withGateway(routes: [ProviderRoute(model: "mock-model", baseURL: slow)]) { (gateway: Harness) async throws in
                let started = ContinuousClock.now
                let answer = try await gateway.chat(headers: [("X-Mizan-Deadline-Ms", "300")])
                #expect(answer.status == 504)
                #expect(answer.errorType == "timeout_error")
                // Far below the mock's 20 s: the deadline cut the call (generous for a loaded machine).
                #expect(ContinuousClock.now - started < .seconds(10))
                #expect(try await gateway.chat(headers: [("X-Mizan-Deadline-Ms", "soon")]).status == 400)
            }
        }
    }

    @Test func clientGoingAwayStopsTheUpstreamStream() async throws {
        try await withServer({ MockProvider.application(.init(tokens: 200, tokenInterval: .milliseconds(20)), onServerRunning: $0) }) {
            mockPort in
            let base = "http://127.0.0.1:\(mockPort)/v1"
            try await withGateway(routes: [ProviderRoute(model: "mock-model", baseURL: base)]) { (gateway: Harness) async throws in
                // The client reads the first chunk of a 4-second stream, then goes away.
                try await gateway.abandonStream(model: "mock-model")
                let stats = try await eventually(timeout: .seconds(5)) {
                    try await mockStats(port: mockPort, gateway: gateway)["streamsAborted"] == 1
                }
                #expect(stats)
                #expect(try await mockStats(port: mockPort, gateway: gateway)["streamsCompleted"] == 0)
            }
        }
    }

    @Test func refusesBadInputInOpenAIShape() async throws {
        try await withGateway(
            routes: [ProviderRoute(model: "mock-model", baseURL: try deadBaseURL())], configuration: .init(maxBodyBytes: 2048)
        ) { (gateway: Harness) async throws in
            let cases: [(String, Int, String)] = [
                ("{\"model\":", 400, "bad_request"),
                ("[1,2]", 400, "bad_request"),
                (#"{"messages":[]}"#, 400, "bad_request"),
                (#"{"model":"mock-model"}"#, 400, "bad_request"),
                (#"{"model":"mock-model","messages":"hi"}"#, 400, "bad_request"),
                (#"{"model":"mock-model","messages":[],"stream":"yes"}"#, 400, "bad_request"),
                (#"{"model":"unknown-model","messages":[]}"#, 404, "model_not_found"),
                (
                    #"{"model":"mock-model","messages":[{"role":"user","content":"\#(String(repeating: "x", count: 4096))"}]}"#, 413,
                    "payload_too_large"
                ),
            ]
            for (body, status, code) in cases {
                let answer = try await gateway.send(.POST, "/v1/chat/completions", token: gateway.apiKey, body: body)
                #expect(answer.status == status, "\(body.prefix(60))")
                #expect(answer.errorCode == code, "\(body.prefix(60))")
                #expect(answer.errorMessage?.isEmpty == false)
            }
            let unknown = try await gateway.send(.GET, "/v1/engines", token: gateway.apiKey)
            #expect(unknown.status == 404 && unknown.errorCode == "not_found")
        }
    }

    @Test func scopesNeverMix() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["m"])
            let chat = #"{"model":"m","messages":[]}"#
            for token in [nil, "wrong", node.token, Harness.adminToken] {
                let answer = try await gateway.send(.POST, "/v1/chat/completions", token: token, body: chat)
                #expect(answer.status == 401)
                #expect(answer.errorType == "authentication_error")
                #expect(try await gateway.send(.GET, "/v1/models", token: token).status == 401)
            }
            for token in [gateway.apiKey, node.token] {
                #expect(try await gateway.send(.GET, "/admin/v1/nodes", token: token).status == 401)
            }
            for token in [gateway.apiKey, Harness.adminToken] {
                #expect(try await gateway.send(.POST, "/agent/v1/lease", token: token, body: #"{"limit":1,"waitSeconds":0}"#).status == 401)
                #expect(try await gateway.send(.POST, "/agent/v1/heartbeat", token: token, body: "{}").status == 401)
            }
            // A registration token registers once and is nothing else.
            #expect(try await gateway.send(.POST, "/agent/v1/lease", token: "mzn_reg_unknown", body: "{}").status == 401)
        }
    }

    @Test func revokedKeyIsRefused() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let created = try await gateway.send(.POST, "/admin/v1/keys", token: Harness.adminToken, body: #"{"name":"short-lived"}"#)
            let key = try #require(created.json["key"] as? String)
            let id = try #require(created.json["id"] as? String)
            #expect(try await gateway.send(.GET, "/v1/models", token: key).status == 200)
            #expect(try await gateway.send(.DELETE, "/admin/v1/keys/\(id)", token: Harness.adminToken).status == 200)
            #expect(try await gateway.send(.GET, "/v1/models", token: key).status == 401)
        }
    }

    @Test func listsRouteAndAgentModelsOnce() async throws {
        let routes = [
            ProviderRoute(model: "b-model", baseURL: "http://127.0.0.1:1/v1", priority: 1),
            ProviderRoute(model: "b-model", baseURL: "http://127.0.0.1:2/v1", priority: 2),
        ]
        try await withGateway(routes: routes) { (gateway: Harness) async throws in
            _ = try await gateway.registerNode(models: ["a-model", "b-model"])
            let answer = try await gateway.send(.GET, "/v1/models", token: gateway.apiKey)
            #expect(answer.status == 200)
            let list = try JSONDecoder().decode(ModelList.self, from: answer.body)
            #expect(list.object == "list")
            #expect(list.data.map(\.id) == ["a-model", "b-model"])
            #expect(list.data.allSatisfy { $0.object == "model" })
        }
    }

    @Test func operationsEndpoints() async throws {
        let registry = PrometheusCollectorRegistry()
        try await withGateway(metricsRegistry: registry) { (gateway: Harness) async throws in
            #expect(try await gateway.send(.GET, "/healthz").status == 200)
            let ready = try await gateway.send(.GET, "/readyz")
            #expect(ready.status == 200 && ready.json["status"] as? String == "ready")
            registry.makeCounter(descriptor: .init(namespace: "mizan", metricName: "test", unitName: "total", helpText: "")).increment()
            let metrics = try await gateway.send(.GET, "/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.text.contains("mizan_test_total 1"))
        }
        try await withGateway { (gateway: Harness) async throws in
            #expect(try await gateway.send(.GET, "/metrics").status == 404)
        }
    }
}

/// The mock provider's counters, by its base URL (`http://127.0.0.1:P/v1`).
func mockStats(base: String, gateway: Harness) async throws -> [String: Int] {
    try await mockStats(port: Int(base.split(separator: ":").last!.split(separator: "/").first!)!, gateway: gateway)
}

/// The body of the last chat request the mock at `base` received, as text.
func mockLastRequest(base: String, gateway: Harness) async throws -> String {
    let url = base.replacingOccurrences(of: "/v1", with: "") + "/mock/last-request"
    let response = try await gateway.http.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
    let buffer = try await response.body.collect(upTo: 1 << 20)
    return String(buffer: buffer)
}

/// The mock provider's counters.
func mockStats(port: Int, gateway: Harness) async throws -> [String: Int] {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/mock/stats")
    request.method = .GET
    let response = try await gateway.http.execute(request, timeout: .seconds(5))
    let buffer = try await response.body.collect(upTo: 1 << 16)
    return (try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Int]) ?? [:]
}
