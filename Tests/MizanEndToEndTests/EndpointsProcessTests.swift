import Foundation
import MizanPostgresTesting
import MizanTestSupport
import Testing

/// Embeddings, legacy completions, Responses and Anthropic Messages with real processes: the
/// official SDKs as clients, through a provider route, through an agent, and across two gateway
/// instances on PostgreSQL.
@Suite("Every endpoint, through routes and agents, with the official SDKs", .serialized)
struct EndpointsProcessTests {
    static let endpoints = ["embeddings", "completions", "responses", "messages"]

    /// Runs `Tests/sdk/endpoints_check.py` against a gateway for each model (one Python process).
    func runSDKCheck(gateway: String, key: String, models: [String]) async throws {
        let model = models.joined(separator: ",")
        let python = try await TestPython.python(requiring: ["openai", "anthropic"])
        let script = TestPython.packageRoot.appendingPathComponent("Tests/sdk/endpoints_check.py")
        let run = try ChildProcess(
            executable: python, arguments: [script.path],
            environment: ["MIZAN_BASE_URL": gateway, "MIZAN_API_KEY": key, "MIZAN_MODELS": model, "MIZAN_TOKENS": "4"])
        let status = try await run.waitForExit(timeout: .seconds(120))
        #expect(status == 0, "\(model): \(run.output)")
        #expect(run.output.contains("endpoints sdk check passed"), "\(model): \(run.output)")
    }

    /// The usage summary rows of a model, by endpoint.
    func usage(_ gateway: String, model: String) async throws -> [String: [String: Any]] {
        let rows = (try await call(.GET, "\(gateway)/admin/v1/usage", token: e2eAdminToken).json["data"] as? [[String: Any]]) ?? []
        var byEndpoint: [String: [String: Any]] = [:]
        for row in rows where row["model"] as? String == model { byEndpoint[row["endpoint"] as? String ?? "?"] = row }
        return byEndpoint
    }

    @Test func theSDKsThroughARouteAndThroughAnAgentWithUsagePerEndpoint() async throws {
        let (mock, mockURL) = try await startMock(["--models", "local", "--tokens", "4"])
        let routes = try writeRoutes(#"{"routes":[{"model":"routed","baseURL":"\#(mockURL)/v1","upstreamModel":"local"}]}"#)
        let (gateway, url) = try await startGateway(["--routes", routes])
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "all-endpoints")
        let (_, key) = try await createKey(gateway: url)
        try await runSDKCheck(gateway: url, key: key, models: ["routed", "local"])
        for model in ["routed", "local"] {
            // One record per request, with the endpoint; the provider's counts (4 words each).
            let rows = try await usage(url, model: model)
            let expected: [String: (requests: Int, completion: Int)] = [
                "embeddings": (3, 0), "completions": (2, 8), "responses": (3, 12), "messages": (2, 8),
            ]
            for (endpoint, counts) in expected {
                let row = rows[endpoint] ?? [:]
                #expect(row["requests"] as? Int == counts.requests, "\(model) \(endpoint): \(row)")
                #expect(row["completionTokens"] as? Int == counts.completion, "\(model) \(endpoint): \(row)")
                #expect((row["promptTokens"] as? Int ?? 0) > 0, "\(model) \(endpoint): \(row)")
            }
            // Transcriptions: one reported (4 words, the file's 2 kB as 2 tokens), one answered as
            // text and so estimated — from the answer and the form's text fields, never the file.
            let transcriptions = rows["audio/transcriptions"] ?? [:]
            #expect(transcriptions["requests"] as? Int == 2, "\(model): \(transcriptions)")
            #expect((transcriptions["completionTokens"] as? Int ?? 0) >= 5, "\(model): \(transcriptions)")
            #expect((transcriptions["promptTokens"] as? Int ?? 99) < 20, "the audio is not counted as a prompt: \(transcriptions)")
        }
        let served = try await jobs(url, state: "succeeded").compactMap { $0["endpoint"] as? String }
        #expect(Set(served) == Set(Self.endpoints + ["audio/transcriptions"]), "the agent's jobs record their endpoints: \(served)")
        for child in [agent, gateway, mock] { _ = try await child.terminate() }
    }

    @Test func bodiesGoUpstreamByteForByteButTheModel() async throws {
        let (mock, mockURL) = try await startMock(["--models", "local", "--tokens", "2"])
        let routes = try writeRoutes(#"{"routes":[{"model":"routed","baseURL":"\#(mockURL)/v1","upstreamModel":"local"}]}"#)
        let (gateway, url) = try await startGateway(["--routes", routes])
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "verbatim")
        let (_, key) = try await createKey(gateway: url)
        let fields: [String: String] = [
            "embeddings": #""input" : ["x",  "y"], "dimensions":8"#,
            "completions": #""prompt":"p", "echo" :false, "x_unknown":{"a":[1,2]}"#,
            "responses": #""input":[{"role":"user","content":"hi"}],"reasoning":{"effort":"low"}, "store":false"#,
            "messages": #""max_tokens":2, "messages":[{"role":"user","content":"hi"}], "system":"be brief","thinking":null"#,
        ]
        for endpoint in Self.endpoints {
            for model in ["routed", "local"] {
                let body = #"{ "model" : "\#(model)", \#(fields[endpoint]!) }"#
                let answer = try await call(.POST, "\(url)/v1/\(endpoint)", token: key, body: body)
                #expect(answer.status == 200, "\(endpoint) \(model): \(answer.text)")
                let received = try await call(.GET, "\(mockURL)/mock/last-request")
                // An agent asks its local server for JSON chat and completions as a stream (so
                // that a leaving client stops the generation): the two members are added, every
                // other byte is the client's.
                let asStream = model == "local" && endpoint == "completions"
                let added = asStream ? #","stream":true,"stream_options":{"include_usage":true}"# : ""
                #expect(received.text == #"{ "model" : "local", \#(fields[endpoint]!) \#(added)}"#, "\(endpoint) \(model)")
            }
        }
        for child in [agent, gateway, mock] { _ = try await child.terminate() }
    }

    /// A transcription's form goes upstream part for part, with the model's part rewritten: through
    /// a route, and through an agent (the job keeps the form alone; its first line names the
    /// boundary the agent sends it with).
    @Test func aFormGoesUpstreamPartForPartButTheModel() async throws {
        let (mock, mockURL) = try await startMock(["--models", "local", "--tokens", "2"])
        let routes = try writeRoutes(#"{"routes":[{"model":"routed","baseURL":"\#(mockURL)/v1","upstreamModel":"local"}]}"#)
        let (gateway, url) = try await startGateway(["--routes", routes])
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "forms")
        let (_, key) = try await createKey(gateway: url)
        func form(_ model: String) -> String {
            let boundary = "----form-boundary-7MA4YWxk"
            return [
                "--\(boundary)\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n\(model)\r\n",
                "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a b.wav\"\r\nContent-Type: audio/wav\r\n\r\n",
                "RIFF\u{01}\u{02} not really audio\r\n--not-the-boundary\r\n",
                "--\(boundary)\r\nContent-Disposition: form-data; name=\"x_unknown\"\r\n\r\nkept as sent\r\n",
                "--\(boundary)--\r\n",
            ].joined()
        }
        let headers = [("Content-Type", "multipart/form-data; boundary=----form-boundary-7MA4YWxk")]
        for model in ["routed", "local"] {
            let answer = try await call(.POST, "\(url)/v1/audio/transcriptions", token: key, body: form(model), headers: headers)
            #expect(answer.status == 200 && (answer.json["text"] as? String)?.isEmpty == false, "\(model): \(answer.text)")
            let received = try await call(.GET, "\(mockURL)/mock/last-request")
            #expect(received.text == form("local"), "\(model): \(received.text)")
        }
        let notAForm = try await call(.POST, "\(url)/v1/audio/transcriptions", token: key, body: #"{"model":"local"}"#)
        #expect(notAForm.status == 400 && notAForm.errorMessage?.contains("multipart/form-data") == true, "\(notAForm.text)")
        for child in [agent, gateway, mock] { _ = try await child.terminate() }
    }

    @Test func aModelServedForChatOnlyAnswersOtherEndpointsClearly() async throws {
        let (mock, mockURL) = try await startMock(["--models", "local"])
        let routes = try writeRoutes(
            #"{"routes":[{"model":"routed","baseURL":"\#(mockURL)/v1","upstreamModel":"local","endpoints":["chat/completions"]}]}"#)
        let (gateway, url) = try await startGateway(["--routes", routes])
        let (agent, _) = try await startAgent(
            gateway: url, provider: mockURL, name: "chat-only", arguments: ["--endpoints", "chat/completions,completions"])
        let (_, key) = try await createKey(gateway: url)
        for model in ["routed", "local"] {
            let answer = try await call(.POST, "\(url)/v1/embeddings", token: key, body: #"{"model":"\#(model)","input":"x"}"#)
            #expect(answer.status == 404, "\(model): \(answer.text)")
            #expect(answer.errorMessage?.contains("not served on /v1/embeddings") == true, "\(model): \(answer.text)")
            let messages = try await call(
                .POST, "\(url)/v1/messages", token: key, body: #"{"model":"\#(model)","max_tokens":2,"messages":[]}"#)
            #expect(messages.status == 404 && messages.json["type"] as? String == "error", "\(model): \(messages.text)")
            let chat = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: model))
            #expect(chat.status == 200, "\(model): \(chat.text)")
        }
        let completion = try await call(.POST, "\(url)/v1/completions", token: key, body: #"{"model":"local","prompt":"p"}"#)
        #expect(completion.status == 200, "\(completion.text)")
        #expect(try await jobs(url).allSatisfy { ["chat/completions", "completions"].contains($0["endpoint"] as? String ?? "") })
        for child in [agent, gateway, mock] { _ = try await child.terminate() }
    }

    @Test func clientLeavingAResponsesStreamStopsTheAgentsLocalCall() async throws {
        let (mock, mockURL) = try await startMock(["--models", "m", "--tokens", "300", "--token-interval-ms", "20"])
        let (gateway, url) = try await startGateway()
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "responder")
        let (_, key) = try await createKey(gateway: url)
        try await abandonStream("\(url)/v1/responses", token: key, body: #"{"model":"m","input":"hi","stream":true}"#)
        #expect(try await eventually { try await call(.GET, "\(mockURL)/mock/stats").json["streamsAborted"] as? Int == 1 })
        #expect(try await eventually { try await jobs(url, state: "failed").first?["errorCode"] as? String == "cancelled" })
        for child in [agent, gateway, mock] { _ = try await child.terminate() }
    }

    @Test func theSDKsAcrossTwoGatewaysOnOnePostgres() async throws {
        try await PostgresTestDatabase.withDatabase(maximumConnections: 2) { _, databaseURL in
            let (mock, mockURL) = try await startMock(["--models", "local", "--tokens", "4"])
            let (gatewayA, urlA) = try await startGateway(["--database-url", databaseURL])
            let (gatewayB, urlB) = try await startGateway(["--database-url", databaseURL])
            let (agent, _) = try await startAgent(gateway: urlB, provider: mockURL, name: "on-b")
            let (_, key) = try await createKey(gateway: urlA)
            // The client talks to A; the node leases from B; streams are relayed through PostgreSQL.
            try await runSDKCheck(gateway: urlA, key: key, models: ["local"])
            for child in [agent, gatewayA, gatewayB, mock] { _ = try await child.terminate() }
        }
    }
}
