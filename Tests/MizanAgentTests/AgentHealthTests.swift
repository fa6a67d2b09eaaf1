import Foundation
import Logging
import MizanCore
import MizanMockProvider
import MizanTestSupport
import Testing

@testable import MizanAgent

@Suite("A busy local server stays in service; a dead one leaves it")
struct AgentHealthTests {
    static let start = ContinuousClock.now

    @Test func theVerdictFollowsChecksProgressAndTheGrace() {
        var health = HandlerHealth(grace: .seconds(30))
        #expect(health.verdict == .unhealthy && !health.leases, "unhealthy until the first check")
        #expect(health.record(healthy: true, refused: false, progressed: false, at: Self.start) == .healthy)
        #expect(health.leases && health.reported == .healthy)
        // A slow check while a job streams: busy, still leasing.
        #expect(health.record(healthy: false, refused: false, progressed: true, at: Self.start + .seconds(10)) == .busy)
        #expect(health.leases && health.reported == .healthy)
        // A slow check without progress: suspect (reported healthy, not leasing) until the grace.
        #expect(health.record(healthy: false, refused: false, progressed: false, at: Self.start + .seconds(20)) == .suspect)
        #expect(!health.leases && health.reported == .healthy)
        #expect(health.record(healthy: false, refused: false, progressed: false, at: Self.start + .seconds(49)) == .suspect)
        #expect(health.record(healthy: false, refused: false, progressed: false, at: Self.start + .seconds(50)) == .unhealthy)
        #expect(health.reported == .unhealthy)
        // Progress or an answer bring it back.
        #expect(health.record(healthy: false, refused: false, progressed: true, at: Self.start + .seconds(60)) == .busy)
        #expect(health.record(healthy: true, refused: false, progressed: false, at: Self.start + .seconds(70)) == .healthy)
        // A refused connection is unhealthy at once, progress or not.
        #expect(health.record(healthy: false, refused: true, progressed: true, at: Self.start + .seconds(80)) == .unhealthy)
    }

    @Test func theHealthEndpointIsFoundAndARefusedServerIsDown() async throws {
        try await withServer({ MockProvider.application(.init(healthPath: "/health"), onServerRunning: $0) }) { port in
            // A check's time wide enough for a machine busy with the whole suite (its probes get 30 % of it).
            let catalog = try await ProviderHandler(baseURL: "http://127.0.0.1:\(port)/v1", checkTimeout: .seconds(30)).catalog()
            #expect(catalog.healthy && catalog.models == ["mock-model"])
            #expect(catalog.check == "GET http://127.0.0.1:\(port)/health (llama.cpp or vLLM)")
        }
        try await withServer({ MockProvider.application(.init(), onServerRunning: $0) }) { port in
            let catalog = try await ProviderHandler(baseURL: "http://127.0.0.1:\(port)/v1", checkTimeout: .seconds(30)).catalog()
            #expect(catalog.healthy && catalog.check == "GET http://127.0.0.1:\(port)/v1/models (no health endpoint found)")
        }
        let dead = try await ProviderHandler(baseURL: "http://127.0.0.1:\(try deadPort())/v1", models: ["m"]).catalog()
        #expect(!dead.healthy && dead.refused && dead.models == ["m"])
    }

    /// A JSON request asked of the server as a stream folds into what the server answers as JSON.
    @Test(arguments: [Endpoint.chatCompletions, .completions])
    func aFoldedStreamAnswersAsTheServersOwnJSON(endpoint: Endpoint) async throws {
        try await withServer({ MockProvider.application(.init(tokens: 5), onServerRunning: $0) }) { port in
            let base = "http://127.0.0.1:\(port)/v1"
            let body =
                endpoint == .chatCompletions
                ? #"{"model":"mock-model","messages":[{"role":"user","content":"three words here"}],"temperature":0.5}"#
                : #"{"model":"mock-model","prompt":"three words here","max_tokens":4}"#
            let job = AgentJob(model: "mock-model", endpoint: endpoint, body: Data(body.utf8))
            let plain = try await ProviderHandler(baseURL: base, upstreamStream: .never).respond(to: job)
            let folded = try await ProviderHandler(baseURL: base, upstreamStream: .auto).respond(to: job)
            let sent = try await sendHTTP(.GET, "http://127.0.0.1:\(port)/mock/last-request", timeout: .seconds(5)).json
            #expect(sent["stream"] as? Bool == true && (sent["stream_options"] as? [String: Any])?["include_usage"] as? Bool == true)
            #expect(sent["temperature"] as? Double == 0.5 || sent["max_tokens"] as? Int == 4, "every other field travels as sent")
            let a = try #require(try JSONSerialization.jsonObject(with: plain.body) as? [String: Any])
            let b = try #require(try JSONSerialization.jsonObject(with: folded.body) as? [String: Any])
            for field in ["object", "model"] { #expect(a[field] as? String == b[field] as? String, "\(field)") }
            let usageA = try #require(a["usage"] as? [String: Any])
            let usageB = try #require(b["usage"] as? [String: Any])
            for field in ["prompt_tokens", "completion_tokens", "total_tokens"] {
                #expect(usageA[field] as? Int == usageB[field] as? Int, "usage.\(field)")
            }
            let choiceA = try #require((a["choices"] as? [[String: Any]])?.first)
            let choiceB = try #require((b["choices"] as? [[String: Any]])?.first)
            #expect(choiceA["index"] as? Int == choiceB["index"] as? Int)
            #expect(choiceA["finish_reason"] as? String == choiceB["finish_reason"] as? String)
            if endpoint == .chatCompletions {
                let messageA = try #require(choiceA["message"] as? [String: Any])
                let messageB = try #require(choiceB["message"] as? [String: Any])
                #expect(messageA["role"] as? String == messageB["role"] as? String)
                #expect(messageA["content"] as? String == messageB["content"] as? String)
                #expect((messageA["content"] as? String)?.isEmpty == false)
            } else {
                #expect(choiceA["text"] as? String == choiceB["text"] as? String)
                #expect((choiceA["text"] as? String)?.isEmpty == false)
            }
            #expect(plain.usage?.completionTokens == folded.usage?.completionTokens)
        }
    }

    /// A single-slot server answers nothing while it generates: the node stays in service, and a
    /// request that arrives meanwhile is served after the first, not refused with 503.
    @Test func aBusySingleSlotServerKeepsItsNodeInService() async throws {
        let mock = MockProvider.Configuration(tokens: 30, tokenInterval: .milliseconds(100), singleSlot: true)
        try await withStack(mock) { stack in
            var configuration = stack.configuration(
                tokenFile: try temporaryTokenFile(), registrationToken: try await stack.registrationToken(), maxConcurrency: 1)
            configuration.healthInterval = .milliseconds(300)
            configuration.unhealthyAfter = .seconds(1)
            let handler = ProviderHandler(baseURL: stack.providerURL, checkTimeout: .seconds(1))
            let agent = RunningAgent.start(configuration, handler: handler)
            try await waitUntil("the agent serves", poll: .milliseconds(20)) { try await stack.serves() }
            // A JSON request: asked of the server as a stream, so its progress counts as health.
            async let first = stack.chat()
            try await waitUntil("the server generates", poll: .milliseconds(20)) { try await stack.providerStats()["inFlight"] == 1 }
            var unhealthySeen = false
            for _ in 0..<10 {
                try await Task.sleep(for: .milliseconds(200))
                let serves = try await stack.serves()
                if !serves { unhealthySeen = true }
            }
            let second = try await stack.chat()
            #expect(try await first.status == 200)
            #expect(second.status == 200, "\(second.text)")
            #expect(!unhealthySeen, "the node stayed healthy while its server was busy")
            try await agent.stop()
        }
    }
}
