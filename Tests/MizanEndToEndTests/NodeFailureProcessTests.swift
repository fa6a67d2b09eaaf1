import Foundation
import MizanTestSupport
import NIOCore
import Testing

/// Real agents that die or stop, and clients that leave, with real gateway, agent and mock
/// provider processes.
@Suite("Node failures and leaving clients, with real processes")
struct NodeFailureProcessTests {
    static func mockStats(_ mock: String) async throws -> [String: Any] {
        try await call(.GET, "\(mock)/mock/stats").json
    }

    static func nodeConditions(_ gateway: String) async throws -> [String] {
        let (status, output) = try await mizan(["nodes", "list", "--json"], gateway: gateway)
        guard status == 0, let list = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any] else { return [] }
        return (list["data"] as? [[String: Any]] ?? []).compactMap { $0["condition"] as? String }
    }

    /// The only agent of a model is SIGKILLed: the request it ran and the one queued behind it
    /// are answered 503 within seconds (not after --max-queue-wait), new ones at once, and every
    /// view says the node is disconnected.
    @Test func aKilledAgentsQueueIsAnswered503WithinSeconds() async throws {
        let (mock, mockURL) = try await startMock(["--models", "m", "--latency-ms", "30000"])
        let (gateway, url) = try await startGateway(["--node-disconnect-grace", "2", "--max-queue-wait", "120"])
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "doomed", arguments: ["--max-concurrency", "1"])
        let (_, key) = try await createKey(gateway: url)
        let body = chatJSON(model: "m")
        async let running = call(.POST, "\(url)/v1/chat/completions", token: key, body: body)
        #expect(try await eventually { try await jobs(url, state: "leased").count == 1 })
        async let queued = call(.POST, "\(url)/v1/chat/completions", token: key, body: body)
        #expect(try await eventually { try await jobs(url, state: "accepted").count == 1 })
        #expect(try await Self.nodeConditions(url) == ["healthy"])
        let killed = ContinuousClock.now
        agent.signal(SIGKILL)
        let (first, second) = try await (running, queued)
        let waited = ContinuousClock.now - killed
        print("killed agent: its running and queued requests answered 503 \(waited) after the kill (grace 2 s)")
        #expect(first.status == 503 && second.status == 503, "\(first.text) \(second.text)")
        #expect(waited < .seconds(10), "answered \(waited) after the kill, not after the queue wait")
        let next = ContinuousClock.now
        #expect(try await call(.POST, "\(url)/v1/chat/completions", token: key, body: body).status == 503)
        #expect(ContinuousClock.now - next < .seconds(2))
        #expect(try await Self.nodeConditions(url) == ["disconnected"])
        let metrics = try await call(.GET, "\(url)/metrics").text
        #expect(metrics.contains(#"mizan_nodes{condition="disconnected"} 1"#), "\(metrics.prefix(4000))")
        #expect(
            try await eventually(timeout: .seconds(5)) {
                try await call(.GET, "\(url)/metrics").text.contains(#"mizan_dispatch_queue_depth{model="m"} 0"#)
            }, "the queue-depth gauge falls back to 0")
        mock.signal(SIGKILL)
        _ = try await gateway.terminate()
    }

    /// A stopped agent (SIGTERM) says goodbye: the next request for its model is answered at once.
    @Test func aStoppedAgentsNextRequestIsAnsweredAtOnce() async throws {
        let (mock, mockURL) = try await startMock(["--models", "m"])
        let (gateway, url) = try await startGateway()
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "leaving")
        let (_, key) = try await createKey(gateway: url)
        #expect(try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m")).status == 200)
        #expect(try await agent.terminate() == 0)
        let asked = ContinuousClock.now
        let answer = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m"))
        #expect(answer.status == 503, "\(answer.text)")
        // At once: without the goodbye it would wait for the node to go stale (30 s); the bound
        // leaves room for a machine busy with the whole suite.
        #expect(ContinuousClock.now - asked < .seconds(15))
        #expect(try await Self.nodeConditions(url) == ["disconnected"])
        for child in [gateway, mock] { _ = try await child.terminate() }
    }

    /// A client that leaves stops the local server's generation, streamed or not.
    @Test func aLeavingClientStopsTheLocalServer() async throws {
        let (mock, mockURL) = try await startMock(["--models", "m", "--tokens", "400", "--token-interval-ms", "25"])
        let (gateway, url) = try await startGateway()
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "box")
        let (_, key) = try await createKey(gateway: url)
        // Streamed: the client reads the first chunk and leaves.
        try await abandonStream(
            "\(url)/v1/chat/completions", token: key, body: #"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#)
        let streamLeft = Date().timeIntervalSince1970 * 1000
        #expect(try await eventually(timeout: .seconds(5)) { try await Self.mockStats(mockURL)["streamsAborted"] as? Int == 1 })
        let streamStopped = try #require(try await Self.mockStats(mockURL)["lastStreamAbortedAt"] as? Int)
        #expect(
            Double(streamStopped) - streamLeft < 1000,
            "the server's stream ended \(Double(streamStopped) - streamLeft) ms after the client left")
        // JSON: the agent asked for a stream; the client gives up after a second.
        let json = Task {
            try await sendHTTP(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m"), timeout: .seconds(1))
        }
        _ = await json.result
        let jsonLeft = Date().timeIntervalSince1970 * 1000
        #expect(try await eventually(timeout: .seconds(5)) { try await Self.mockStats(mockURL)["streamsAborted"] as? Int == 2 })
        let jsonStopped = try #require(try await Self.mockStats(mockURL)["lastStreamAbortedAt"] as? Int)
        #expect(
            Double(jsonStopped) - jsonLeft < 1000, "the server's stream ended \(Double(jsonStopped) - jsonLeft) ms after the client left")
        #expect(try await Self.mockStats(mockURL)["streamsCompleted"] as? Int == 0, "no generation ran to its end")
        print(
            "leaving clients: the server's stream ended \(Int(Double(streamStopped) - streamLeft)) ms after a streamed client left, "
                + "\(Int(Double(jsonStopped) - jsonLeft)) ms after a JSON client gave up")
        for child in [agent, gateway, mock] { _ = try await child.terminate() }
    }
}
