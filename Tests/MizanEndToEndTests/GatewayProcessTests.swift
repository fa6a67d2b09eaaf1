import AsyncHTTPClient
import Foundation
import MizanCore
import MizanPostgresTesting
import MizanProvider
import MizanTestSupport
import NIOCore
import Testing

@Suite("mizan-gateway, mizan and mizan-mock-provider as processes")
struct GatewayProcessTests {
    @Test func routesFallBackCoolDownAndRefuseBadRequests() async throws {
        let (live, liveURL) = try await startMock(["--tokens", "3"])
        let (failing, failingURL) = try await startMock(["--fail-status", "500"])
        defer { _ = (live, failing) }
        let closedPort = try deadPort()
        let routes = try writeRoutes(
            """
            {"routes":[
              {"model":"chat","baseURL":"http://127.0.0.1:\(closedPort)/v1","upstreamModel":"mock-model","priority":1},
              {"model":"chat","baseURL":"\(failingURL)/v1","upstreamModel":"mock-model","priority":2},
              {"model":"chat","baseURL":"\(liveURL)/v1","upstreamModel":"mock-model","priority":3},
              {"model":"broken","baseURL":"\(failingURL)/v1","upstreamModel":"mock-model"}
            ]}
            """)
        let (gateway, url) = try await startGateway(["--routes", routes, "--max-body-bytes", "4096", "--route-cooldown", "60"])
        let (keyID, key) = try await createKey(gateway: url)

        // Dead route, then a 500 route, then the live one: the client sees one clean answer.
        let answer = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "chat"))
        #expect(answer.status == 200, "\(answer.text)")
        #expect(try JSONDecoder().decode(ChatCompletionResponse.self, from: answer.body).usage?.completionTokens == 3)
        #expect(answer.headers["X-Request-Id"].first?.isEmpty == false)
        #expect(answer.headers["X-Mizan-Overhead-Ms"].first.flatMap(Double.init).map { $0 >= 0 } == true)

        let stream = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "chat", stream: true))
        #expect(stream.status == 200)
        #expect(stream.headers["Content-Type"].first == "text/event-stream")
        #expect(stream.text.hasSuffix("data: [DONE]\n\n"))

        // After three failures in a row, the first two routes cool down.
        #expect(try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "chat")).status == 200)
        let metrics = try await call(.GET, "\(url)/metrics")
        #expect(metrics.status == 200)
        #expect(
            metrics.text.contains(#"mizan_gateway_route_cooldowns_total{route="chat@127.0.0.1:\#(closedPort)#1"} 1"#),
            "\(metrics.text.prefix(3000))")
        #expect(metrics.text.contains("mizan_gateway_requests_total"))
        #expect(metrics.text.contains(#"mizan_gateway_overhead_seconds_count{route="chat@"#), "the overhead histogram")

        let broken = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "broken"))
        #expect(broken.status == 502 && broken.errorCode == "upstream_error")
        let unknown = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "no-such-model"))
        #expect(unknown.status == 404 && unknown.errorCode == "model_not_found")
        // The gateway answers 413 once it has read the head and closes the connection; a client
        // still writing the rest of the body may see the close before the answer. Either way the
        // gateway refused it with a 413 (its request log says so).
        do {
            let oversize = try await call(
                .POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "chat", content: String(repeating: "y", count: 5000))
            )
            #expect(oversize.status == 413 && oversize.errorCode == "payload_too_large")
        } catch {
            #expect(
                try await eventually { gateway.output.contains("http.status=413") }, "the connection closed without a 413 logged: \(error)")
        }
        #expect(try await call(.POST, "\(url)/v1/chat/completions", token: "mzn_sk_wrong", body: chatJSON(model: "chat")).status == 401)
        #expect(try await call(.POST, "\(url)/v1/chat/completions", token: e2eAdminToken, body: chatJSON(model: "chat")).status == 401)
        #expect(try await call(.GET, "\(url)/admin/v1/keys", token: key).status == 401)
        #expect(try await call(.POST, "\(url)/agent/v1/lease", token: key, body: "{}").status == 401)

        // The CLI: usage by key and model, a table, JSON, and one-line errors.
        let usage = try await mizan(["usage", "--json"], gateway: url)
        #expect(usage.status == 0)
        let rows = ((try JSONSerialization.jsonObject(with: Data(usage.output.utf8)) as? [String: Any])?["data"] as? [[String: Any]]) ?? []
        let chatRow = rows.first { $0["model"] as? String == "chat" && $0["apiKeyID"] as? String == keyID }
        #expect(chatRow?["requests"] as? Int == 3, "\(usage.output)")
        let table = try await mizan(["keys", "list"], gateway: url)
        #expect(table.status == 0 && table.output.contains("NAME") && table.output.contains("e2e") && !table.output.contains(key))
        let refused = try await mizan(["keys", "list"], gateway: url, token: "wrong")
        #expect(refused.status != 0)
        #expect(refused.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count == 1)
        #expect(refused.output.contains("401"))
        #expect(try await mizan(["keys", "revoke", keyID], gateway: url).status == 0)
        #expect(try await call(.GET, "\(url)/v1/models", token: key).status == 401)

        // The log names requests but never the key.
        #expect(gateway.output.contains("mizan.served_by=chat@127.0.0.1"))
        #expect(!gateway.output.contains(key))
        #expect(try await gateway.terminate() == 0)
        _ = try await live.terminate()
        _ = try await failing.terminate()
    }

    @Test func clientDisconnectStopsTheUpstreamCall() async throws {
        let (mock, mockURL) = try await startMock(["--tokens", "200", "--token-interval-ms", "20"])
        let routes = try writeRoutes(#"{"routes":[{"model":"mock-model","baseURL":"\#(mockURL)/v1"}]}"#)
        let (gateway, url) = try await startGateway(["--routes", routes])
        let (_, key) = try await createKey(gateway: url)
        try await abandonStream("\(url)/v1/chat/completions", token: key, body: chatJSON(model: "mock-model", stream: true))
        #expect(
            try await eventually {
                let stats = try await call(.GET, "\(mockURL)/mock/stats").json
                return stats["streamsAborted"] as? Int == 1 && stats["streamsCompleted"] as? Int == 0
            })
        _ = try await gateway.terminate()
        _ = try await mock.terminate()
    }

    @Test func yamlRoutesAndFlagErrors() async throws {
        let (mock, mockURL) = try await startMock()
        let routes = try writeRoutes(
            "routes:\n  - model: yaml-model\n    baseURL: \(mockURL)/v1\n    upstreamModel: mock-model\n", ext: "yaml")
        let (gateway, url) = try await startGateway([], environment: ["MIZAN_ROUTES": routes])
        let (_, key) = try await createKey(gateway: url)
        let models = try await call(.GET, "\(url)/v1/models", token: key)
        #expect(models.status == 200)
        #expect(models.text.contains("yaml-model"))
        #expect(try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "yaml-model")).status == 200)
        _ = try await gateway.terminate()
        _ = try await mock.terminate()

        let badRoutes = try writeRoutes(#"{"routes":[{"model":"x"}]}"#)
        let refused = try ChildProcess("mizan-gateway", arguments: ["--port", "0", "--database-url", "memory:", "--routes", badRoutes])
        #expect(try await refused.waitForExit() != 0)
        #expect(refused.output.contains("baseURL"))
        let badFlag = try ChildProcess("mizan-gateway", arguments: ["--port", "70000"])
        #expect(try await badFlag.waitForExit() != 0)
    }

    @Test func postgresStoreKeepsKeysAndUsageAcrossRestarts() async throws {
        try await PostgresTestDatabase.withDatabase(maximumConnections: 2) { _, databaseURL in
            let (mock, mockURL) = try await startMock()
            let routes = try writeRoutes(#"{"routes":[{"model":"mock-model","baseURL":"\#(mockURL)/v1"}]}"#)
            let (first, firstURL) = try await startGateway(["--routes", routes, "--database-url", databaseURL])
            #expect(first.output.contains("mizan.store=postgresql"))
            #expect(try await call(.GET, "\(firstURL)/readyz").status == 200)
            let (_, key) = try await createKey(gateway: firstURL)
            #expect(try await call(.POST, "\(firstURL)/v1/chat/completions", token: key, body: chatJSON(model: "mock-model")).status == 200)
            #expect(try await first.terminate() == 0)

            let (second, secondURL) = try await startGateway(["--routes", routes], environment: ["MIZAN_DATABASE_URL": databaseURL])
            #expect(
                try await call(.POST, "\(secondURL)/v1/chat/completions", token: key, body: chatJSON(model: "mock-model")).status == 200)
            let usage = try await call(.GET, "\(secondURL)/admin/v1/usage", token: e2eAdminToken)
            let rows = (usage.json["data"] as? [[String: Any]]) ?? []
            #expect(rows.first?["requests"] as? Int == 2, "\(usage.text)")
            #expect(try await second.terminate() == 0)
            _ = try await mock.terminate()
        }
    }
}
