import Foundation
import MizanCore
import MizanTestSupport
import Testing

/// A node that reports names it never serves, and requests its local server refuses, with
/// real gateway, agent and mock processes.
@Suite("What a node reports and what its server refuses")
struct HostileNodeProcessTests {
    /// A node reports 300 made-up models (unhealthy) and a client asks for each: the metrics
    /// label only models that were served, so the series do not grow with the names.
    @Test func madeUpModelNamesDoNotBecomeMetricLabels() async throws {
        let (gateway, url) = try await startGateway()
        let registration = try await createNode(gateway: url, name: "names")
        let names = (0..<300).map { "made-up-\($0)" }
        let report = NodeReport(models: names, maxConcurrency: 1, health: .unhealthy)
        let body = String(decoding: try AgentWire.encoder().encode(AgentWire.RegisterRequest(report: report)), as: UTF8.self)
        #expect(try await call(.POST, "\(url)/agent/v1/register", token: registration, body: body).status == 201)
        let (_, key) = try await createKey(gateway: url)
        for name in names.prefix(50) {
            #expect(try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: name)).status == 503)
        }
        let metrics = try await call(.GET, "\(url)/metrics").text
        #expect(!metrics.contains("made-up-"), "no series per made-up name")
        #expect(metrics.contains(#"model="unknown""#))
        _ = try await gateway.terminate()
    }

    /// A body the node's local server refuses as too large is a 413 for the client, as through
    /// a provider route, not a 502.
    @Test func aBodyTheLocalServerRefusesAsTooLargeIsA413() async throws {
        let (mock, mockURL) = try await startMock(["--models", "local"])
        let routes = try writeRoutes(#"{"routes":[{"model":"routed","baseURL":"\#(mockURL)/v1","upstreamModel":"local"}]}"#)
        let (gateway, url) = try await startGateway(["--routes", routes])
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "big")
        let (_, key) = try await createKey(gateway: url)
        // Under the gateway's 8 MiB, over the mock's 4 MiB.
        let padding = String(repeating: "word ", count: 1_200_000)
        for model in ["routed", "local"] {
            let answer = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: model, content: padding))
            #expect(answer.status == 413, "\(model): \(answer.status) \(answer.text.prefix(300))")
        }
        for child in [agent, gateway, mock] { _ = try await child.terminate() }
    }
}
