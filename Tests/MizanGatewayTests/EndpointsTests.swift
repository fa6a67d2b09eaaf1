import Foundation
import MizanCore
import MizanGateway
import MizanTestSupport
import Testing

/// The inference endpoints beside chat, over loopback: through a route to the mock provider and
/// through the agent API, with each endpoint's error paths.
@Suite("Client API over loopback: every endpoint")
struct EndpointsTests {
    /// A minimal valid body for an endpoint.
    static func body(_ endpoint: Endpoint, model: String = "mock-model", stream: Bool = false) -> String {
        if endpoint == .audioTranscriptions { return form(model: model, stream: stream) }
        let fields =
            switch endpoint {
            case .chatCompletions: #""messages":[{"role":"user","content":"hi"}]"#
            case .completions: #""prompt":"hi""#
            case .embeddings: #""input":["hi","there"]"#
            case .responses: #""input":"hi""#
            case .messages: #""max_tokens":2,"messages":[{"role":"user","content":"hi"}]"#
            case .audioTranscriptions: ""
            }
        return #"{"model":"\#(model)",\#(fields)\#(stream ? #","stream":true"# : "")}"#
    }

    static let boundary = "mizan-test-boundary"

    /// A transcription's form: a small "audio" file and the model.
    static func form(model: String, stream: Bool = false, audio: String = "RIFF-not-really-audio") -> String {
        var parts = [
            "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hello.wav\"\r\nContent-Type: audio/wav\r\n\r\n\(audio)\r\n",
            "--\(boundary)\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n\(model)\r\n",
        ]
        if stream { parts.append("--\(boundary)\r\nContent-Disposition: form-data; name=\"stream\"\r\n\r\ntrue\r\n") }
        return parts.joined() + "--\(boundary)--\r\n"
    }

    /// The headers a body of an endpoint is sent with (a form names its boundary).
    static func headers(_ endpoint: Endpoint) -> [(String, String)] {
        endpoint.bodyKind == .multipart ? [("Content-Type", "multipart/form-data; boundary=\(boundary)")] : []
    }

    @Test func eachEndpointThroughARouteAnswersInItsShape() async throws {
        try await withMock(.init(tokens: 2)) { base in
            try await withGateway(routes: [ProviderRoute(model: "mock-model", baseURL: base)], inProcess: true) {
                (gateway: Harness) async throws in
                for endpoint in Endpoint.allCases {
                    let answer = try await gateway.send(
                        .POST, "/v1/\(endpoint.rawValue)", token: gateway.apiKey, body: Self.body(endpoint), headers: Self.headers(endpoint)
                    )
                    #expect(answer.status == 200, "\(endpoint): \(answer.text)")
                    #expect(answer.json["usage"] != nil, "\(endpoint): \(answer.text)")
                }
                // Streams: chat and completions end with [DONE]; Responses and Messages keep their event names.
                let completions = try await gateway.send(
                    .POST, "/v1/completions", token: gateway.apiKey, body: Self.body(.completions, stream: true))
                #expect(completions.text.hasSuffix("data: [DONE]\n\n") && !completions.text.contains("event:"))
                let responses = try await gateway.send(
                    .POST, "/v1/responses", token: gateway.apiKey, body: Self.body(.responses, stream: true))
                let names = responses.text.split(separator: "\n").filter { $0.hasPrefix("event: ") }.map { $0.dropFirst(7) }
                #expect(names.first == "response.created" && names.last == "response.completed", "\(names)")
                #expect(names.filter { $0 == "response.output_text.delta" }.count == 2)
                #expect(!responses.text.contains("[DONE]"))
                let messages = try await gateway.send(
                    .POST, "/v1/messages", token: nil, body: Self.body(.messages, stream: true), headers: [("x-api-key", gateway.apiKey)])
                #expect(
                    messages.text.hasPrefix("event: message_start\n")
                        && messages.text.hasSuffix("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"))
                #expect(
                    try await gateway.send(.POST, "/v1/embeddings", token: gateway.apiKey, body: Self.body(.embeddings, stream: true))
                        .status == 400)
                // Usage is recorded per endpoint (the recorder runs once the answer is written).
                #expect(
                    try await eventually {
                        Set(try await gateway.store.usageSummary().map(\.endpoint)) == Set(Endpoint.allCases)
                    })
            }
        }
    }

    @Test func errorsTakeTheEndpointsShape() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            for endpoint in Endpoint.allCases where endpoint != .chatCompletions {
                let missing = try await gateway.send(.POST, "/v1/\(endpoint.rawValue)", token: gateway.apiKey, body: #"{"model":"m"}"#)
                #expect(missing.status == 400, "\(endpoint): \(missing.text)")
                let unknown = try await gateway.send(
                    .POST, "/v1/\(endpoint.rawValue)", token: gateway.apiKey, body: Self.body(endpoint, model: "nope"),
                    headers: Self.headers(endpoint))
                #expect(unknown.status == 404, "\(endpoint): \(unknown.text)")
                let unauthenticated = try await gateway.send(
                    .POST, "/v1/\(endpoint.rawValue)", body: Self.body(endpoint), headers: Self.headers(endpoint))
                #expect(unauthenticated.status == 401)
                let get = try await gateway.send(.GET, "/v1/\(endpoint.rawValue)", token: gateway.apiKey)
                #expect(get.status == 405)
                for answer in [missing, unknown, unauthenticated, get] {
                    if endpoint == .messages {
                        let error = answer.json["error"] as? [String: Any]
                        #expect(
                            answer.json["type"] as? String == "error" && error?["type"] is String && error?["message"] is String,
                            "\(answer.text)")
                    } else {
                        #expect(answer.errorType != nil && answer.errorMessage != nil, "\(endpoint): \(answer.text)")
                    }
                }
            }
            let wrongKey = try await gateway.send(
                .POST, "/v1/messages", body: Self.body(.messages), headers: [("x-api-key", "mzn_sk_nope")])
            #expect(wrongKey.status == 401 && (wrongKey.json["error"] as? [String: Any])?["type"] as? String == "authentication_error")
            // x-api-key is Anthropic's header: the OpenAI endpoints take the bearer only.
            let openAI = try await gateway.send(
                .POST, "/v1/embeddings", body: Self.body(.embeddings), headers: [("x-api-key", gateway.apiKey)])
            #expect(openAI.status == 401)
        }
    }

    @Test func aNodeLeasesOnlyJobsOfItsEndpoints() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            let chatOnly = try await gateway.registerNode(models: ["m"], endpoints: [.chatCompletions], name: "chat-only")
            let embedder = try await gateway.registerNode(models: ["m"], endpoints: [.chatCompletions, .embeddings], name: "embedder")
            async let answer = gateway.send(.POST, "/v1/embeddings", token: gateway.apiKey, body: Self.body(.embeddings, model: "m"))
            #expect(try await eventually { try await gateway.store.jobs(state: .accepted, limit: 5).count == 1 })
            #expect(try await gateway.lease(token: chatOnly.token, wait: 0).isEmpty, "a chat-only node takes no embeddings job")
            let leased = try #require(try await gateway.lease(token: embedder.token, wait: 0).first)
            #expect(leased.endpoint == .embeddings)
            let request = AgentWire.CompleteRequest(
                attempt: leased.attempt, result: Data(#"{"object":"list","data":[],"usage":{"prompt_tokens":3,"total_tokens":3}}"#.utf8),
                usage: TokenUsage(promptTokens: 3, completionTokens: 0))
            let complete = try await gateway.send(
                .POST, "/agent/v1/jobs/\(leased.jobID)/complete", token: embedder.token,
                body: String(decoding: try AgentWire.encoder().encode(request), as: UTF8.self))
            #expect(complete.status == 200, "\(complete.text)")
            #expect(try await answer.status == 200)
            // Responses: no node of the model serves it, so the answer says so at once.
            let responses = try await gateway.send(.POST, "/v1/responses", token: gateway.apiKey, body: Self.body(.responses, model: "m"))
            #expect(responses.status == 404 && responses.errorMessage?.contains("not served on /v1/responses") == true, "\(responses.text)")
        }
    }

    @Test func anAgentThatNamesNoEndpointsServesChatOnly() throws {
        let old = #"{"models":["m"],"maxConcurrency":2,"health":"healthy","inFlight":0,"labels":{}}"#
        let report = try AgentWire.decoder().decode(NodeReport.self, from: Data(old.utf8))
        #expect(report.endpoints == [.chatCompletions])
        let future =
            #"{"models":["m"],"endpoints":["embeddings","images/generations"],"maxConcurrency":2,"health":"healthy","inFlight":0,"labels":{}}"#
        #expect(try AgentWire.decoder().decode(NodeReport.self, from: Data(future.utf8)).endpoints == [.embeddings])
        let assignment =
            #"{"jobID":"\#(JobID())","attempt":1,"requestID":"r","model":"m","body":"e30=","stream":false,"deadline":"2026-12-03T00:00:00Z"}"#
        #expect(try AgentWire.decoder().decode(AgentWire.Assignment.self, from: Data(assignment.utf8)).endpoint == .chatCompletions)
    }
}
