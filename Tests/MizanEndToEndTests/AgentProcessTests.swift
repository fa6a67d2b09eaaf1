import AsyncHTTPClient
import Foundation
import MizanCore
import MizanPostgresTesting
import MizanProvider
import MizanTestSupport
import NIOCore
import Testing

/// Creates a node with the CLI and returns its registration token.
func createNode(gateway: String, name: String) async throws -> String {
    let (status, output) = try await mizan(["nodes", "create", "--name", name, "--json"], gateway: gateway)
    guard status == 0, let json = try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: String],
        let token = json["registrationToken"]
    else { throw ChildProcessError(message: "nodes create failed (\(status)): \(output)") }
    return token
}

/// Starts `mizan-agent` for a new node and waits until it is connected.
func startAgent(gateway: String, provider: String, name: String, arguments: [String] = []) async throws -> (ChildProcess, tokenFile: String)
{
    let registration = try await createNode(gateway: gateway, name: name)
    let tokenFile = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-agent-\(UUID().uuidString).token").path
    let child = try ChildProcess(
        "mizan-agent",
        arguments: [
            "--gateway", gateway, "--registration-token", registration, "--token-file", tokenFile,
            "--provider", "\(provider)/v1", "--heartbeat-interval", "0.5", "--name", name,
        ] + arguments
    )
    _ = try await child.waitForOutput("(agent connected)", timeout: .seconds(30))
    return (child, tokenFile)
}

/// The admin API's job list.
func jobs(_ gateway: String, state: String? = nil) async throws -> [[String: Any]] {
    let query = state.map { "?state=\($0)" } ?? ""
    return (try await call(.GET, "\(gateway)/admin/v1/jobs\(query)", token: e2eAdminToken).json["data"] as? [[String: Any]]) ?? []
}

@Suite("mizan-agent with real gateway and provider processes")
struct AgentProcessTests {
    @Test func servesJSONAndStreamsAndListsAgentModels() async throws {
        let (mock, mockURL) = try await startMock(["--models", "local-model", "--tokens", "4", "--token-interval-ms", "10"])
        let (gateway, url) = try await startGateway()
        let (agent, tokenFile) = try await startAgent(gateway: url, provider: mockURL, name: "box-1")
        let (_, key) = try await createKey(gateway: url)
        let models = try await call(.GET, "\(url)/v1/models", token: key)
        #expect(models.text.contains("\"local-model\""))
        let answer = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "local-model"))
        #expect(answer.status == 200, "\(answer.text)")
        #expect(try JSONDecoder().decode(ChatCompletionResponse.self, from: answer.body).usage?.completionTokens == 4)
        let body =
            #"{"model":"local-model","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#
        let stream = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: body)
        #expect(stream.status == 200)
        #expect(stream.text.contains(#""completion_tokens":4"#))
        #expect(stream.text.hasSuffix("data: [DONE]\n\n"))
        // Every job ends succeeded: none stays leased to the node after its stream.
        for _ in 0..<5 { #expect(try await call(.POST, "\(url)/v1/chat/completions", token: key, body: body).status == 200) }
        #expect(
            try await eventually {
                let all = try await jobs(url)
                return all.count == 7 && all.allSatisfy { $0["state"] as? String == "succeeded" }
            })
        // The node token sits in the token file, readable by its owner only.
        let attributes = try FileManager.default.attributesOfItem(atPath: tokenFile)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(!agent.output.contains(try String(contentsOfFile: tokenFile, encoding: .utf8)))
        #expect(try await agent.terminate() == 0)
        _ = try await gateway.terminate()
        _ = try await mock.terminate()
    }

    @Test func servesAnAliasedModelUnderItsLocalNameAndReportsItLoaded() async throws {
        let (mock, mockURL) = try await startMock(["--models", "local-model", "--tokens", "3"])
        let (gateway, url) = try await startGateway()
        let (agent, _) = try await startAgent(
            gateway: url, provider: mockURL, name: "aliased",
            arguments: ["--model", "public-model=local-model", "--health-interval", "0.5"])
        let (_, key) = try await createKey(gateway: url)
        let models = try await call(.GET, "\(url)/v1/models", token: key)
        #expect(models.text.contains("\"public-model\"") && models.text.contains("\"local-model\""), "\(models.text)")
        for stream in [false, true] {
            let answer = try await call(
                .POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "public-model", stream: stream))
            #expect(answer.status == 200, "\(answer.text)")
            #expect(answer.text.contains(#""model":"local-model""#), "the answer as the local server wrote it")
            let received = try await call(.GET, "\(mockURL)/mock/last-request").json
            #expect(received["model"] as? String == "local-model", "the mock received the local name")
            #expect(received["stream"] as? Bool == true, "chat goes upstream as a stream either way")
        }
        #expect(
            try await eventually {
                let nodes = (try await call(.GET, "\(url)/admin/v1/nodes", token: e2eAdminToken).json["data"] as? [[String: Any]]) ?? []
                return nodes.first?["loadedModels"] as? [String] == ["local-model", "public-model"]
            }, "the node reports its loaded models under both names")
        #expect(try await agent.terminate() == 0)
        _ = try await gateway.terminate()
        _ = try await mock.terminate()
    }

    @Test func aBadModelAliasStopsTheAgentWithAMessage() async throws {
        for (arguments, message) in [
            (["--model", "nothing-to-map"], "not PUBLIC=LOCAL"),
            (["--model", "a=x", "--model", "a=y"], "each public name may have one"),
        ] {
            let child = try ChildProcess(
                "mizan-agent", arguments: ["--gateway", "http://127.0.0.1:9", "--provider", "http://127.0.0.1:9/v1"] + arguments)
            #expect(try await child.waitForExit(timeout: .seconds(30)) != 0)
            #expect(child.output.contains(message), "\(child.output)")
        }
    }

    @Test func spreadsLoadAndNeverExceedsMaxConcurrency() async throws {
        let (mockA, urlA) = try await startMock(["--models", "m", "--latency-ms", "300"])
        let (mockB, urlB) = try await startMock(["--models", "m", "--latency-ms", "300"])
        let (gateway, url) = try await startGateway()
        let (agentA, _) = try await startAgent(gateway: url, provider: urlA, name: "a", arguments: ["--max-concurrency", "2"])
        let (agentB, _) = try await startAgent(gateway: url, provider: urlB, name: "b", arguments: ["--max-concurrency", "2"])
        let (_, key) = try await createKey(gateway: url)
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<12 {
                group.addTask { try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m")).status }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses == Array(repeating: 200, count: 12))
        let statsA = try await call(.GET, "\(urlA)/mock/stats").json
        let statsB = try await call(.GET, "\(urlB)/mock/stats").json
        #expect((statsA["maxInFlight"] as? Int ?? 99) <= 2 && (statsB["maxInFlight"] as? Int ?? 99) <= 2)
        #expect((statsA["requests"] as? Int ?? 0) > 0 && (statsB["requests"] as? Int ?? 0) > 0)
        #expect((statsA["requests"] as? Int ?? 0) + (statsB["requests"] as? Int ?? 0) == 12)
        for child in [agentA, agentB, gateway, mockA, mockB] { _ = try await child.terminate() }
    }

    @Test func killedAgentsJobMovesToAnotherNodeAndItsLateReportIsRefused() async throws {
        let (slow, slowURL) = try await startMock(["--models", "m", "--latency-ms", "20000"])
        let (fast, fastURL) = try await startMock(["--models", "m", "--tokens", "3"])
        let (gateway, url) = try await startGateway(["--node-stale-after", "2"])
        let (doomed, doomedTokenFile) = try await startAgent(gateway: url, provider: slowURL, name: "doomed")
        let (_, key) = try await createKey(gateway: url)
        async let answer = call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m"))
        #expect(try await eventually { try await jobs(url, state: "leased").count == 1 })
        let leased = try #require(try await jobs(url, state: "leased").first)
        let jobID = try #require(leased["id"] as? String)
        let (rescuer, _) = try await startAgent(gateway: url, provider: fastURL, name: "rescuer")
        doomed.signal(SIGKILL)
        let result = try await answer
        #expect(result.status == 200, "\(result.text)")
        let job = try await call(.GET, "\(url)/admin/v1/jobs/\(jobID)", token: e2eAdminToken).json
        #expect(job["state"] as? String == "succeeded")
        #expect(job["attempt"] as? Int == 2)
        let usage = (try await call(.GET, "\(url)/admin/v1/usage", token: e2eAdminToken).json["data"] as? [[String: Any]]) ?? []
        #expect(usage.first?["requests"] as? Int == 1)
        // The killed node's late report for attempt 1 is refused.
        let token = try String(contentsOfFile: doomedTokenFile, encoding: .utf8)
        let late = try await call(.POST, "\(url)/agent/v1/jobs/\(jobID)/complete", token: token, body: #"{"attempt":1,"result":"e30="}"#)
        #expect(late.status == 409, "\(late.text)")
        slow.signal(SIGKILL)  // it would finish its 20-second answer first
        for child in [rescuer, gateway, fast] { _ = try await child.terminate() }
    }

    @Test func revokedNodeStopsAndItsJobMoves() async throws {
        let (slow, slowURL) = try await startMock(["--models", "m", "--latency-ms", "20000"])
        let (fast, fastURL) = try await startMock(["--models", "m"])
        let (gateway, url) = try await startGateway()
        let (revoked, _) = try await startAgent(gateway: url, provider: slowURL, name: "revoked")
        let (_, key) = try await createKey(gateway: url)
        async let answer = call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m"))
        #expect(try await eventually { try await jobs(url, state: "leased").count == 1 })
        let nodeID = try #require(try await jobs(url, state: "leased").first?["nodeID"] as? String)
        let (rescuer, _) = try await startAgent(gateway: url, provider: fastURL, name: "rescuer")
        #expect(try await mizan(["nodes", "revoke", nodeID], gateway: url).status == 0)
        #expect(try await answer.status == 200)
        #expect(try await revoked.waitForExit(timeout: .seconds(30)) != 0)
        #expect(revoked.output.contains("revoked"))
        slow.signal(SIGKILL)  // it would finish its 20-second answer first
        for child in [rescuer, gateway, fast] { _ = try await child.terminate() }
    }

    @Test func clientLeavingAStreamStopsTheAgentsLocalCall() async throws {
        let (mock, mockURL) = try await startMock(["--models", "m", "--tokens", "300", "--token-interval-ms", "20"])
        let (gateway, url) = try await startGateway()
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "streamer")
        let (_, key) = try await createKey(gateway: url)
        try await abandonStream("\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m", stream: true))
        #expect(
            try await eventually {
                try await call(.GET, "\(mockURL)/mock/stats").json["streamsAborted"] as? Int == 1
            })
        #expect(try await eventually { try await jobs(url, state: "failed").first?["errorCode"] as? String == "cancelled" })
        for child in [agent, gateway, mock] { _ = try await child.terminate() }
    }

    @Test func clientLeavingAJSONRequestAbortsTheNodesCall() async throws {
        // Generous for a loaded machine: the node must have leased the job before the client leaves.
        let (mock, mockURL) = try await startMock(["--models", "m", "--latency-ms", "30000"])
        let (gateway, url) = try await startGateway()
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "aborter")
        let (_, key) = try await createKey(gateway: url)
        // The client gives up after 2 s (no response head comes before the node answers).
        await #expect(throws: (any Error).self) {
            _ = try await sendHTTP(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m"), timeout: .seconds(2))
        }
        _ = try await agent.waitForOutput("(aborting job the gateway cancelled)", timeout: .seconds(30))
        #expect(try await jobs(url, state: "failed").first?["errorCode"] as? String == "cancelled")
        mock.signal(SIGKILL)
        for child in [agent, gateway] { _ = try await child.terminate() }
    }

    @Test func unhealthyProviderStopsLeasing() async throws {
        let (mock, mockURL) = try await startMock(["--models", "m"])
        let (gateway, url) = try await startGateway()
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "flaky", arguments: ["--health-interval", "0.3"])
        let (_, key) = try await createKey(gateway: url)
        #expect(try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m")).status == 200)
        _ = try await mock.terminate()
        #expect(
            try await eventually {
                let nodes = (try await call(.GET, "\(url)/admin/v1/nodes", token: e2eAdminToken).json["data"] as? [[String: Any]]) ?? []
                return nodes.first?["health"] as? String == "unhealthy"
            })
        let answer = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m"))
        #expect(answer.status == 503 && answer.errorCode == "no_healthy_node")
        for child in [agent, gateway] { _ = try await child.terminate() }
    }

    @Test func sigtermFinishesRunningJobsAndHandsBackTheRestAfterTheGrace() async throws {
        // Long enough for the job to be seen leased on a loaded machine.
        let (slow, slowURL) = try await startMock(["--models", "m", "--latency-ms", "10000"])
        let (stuck, stuckURL) = try await startMock(["--models", "m", "--latency-ms", "30000"])
        let (fast, fastURL) = try await startMock(["--models", "m"])
        let (gateway, url) = try await startGateway()
        let (_, key) = try await createKey(gateway: url)

        // Within the grace period: the running job finishes, then the agent exits cleanly.
        let (patient, _) = try await startAgent(gateway: url, provider: slowURL, name: "patient")
        async let finished = call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m"))
        let leased = try await eventually(timeout: .seconds(20)) { try await jobs(url, state: "leased").count == 1 }
        let seen = leased ? [] : try await jobs(url)
        #expect(leased, "jobs: \(seen); agent: \(patient.output.suffix(1500)); gateway: \(gateway.output.suffix(1500))")
        #expect(try await patient.terminate() == 0)
        #expect(try await finished.status == 200)

        // Past the grace period: the job is handed back (retryable) and another node serves it.
        let (hasty, _) = try await startAgent(gateway: url, provider: stuckURL, name: "hasty", arguments: ["--shutdown-grace", "0.5"])
        async let handedBack = call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m"))
        #expect(try await eventually { try await jobs(url, state: "leased").count == 1 })
        // Another node is there to take it (with none left, a queued request is answered 503).
        let (rescuer, _) = try await startAgent(gateway: url, provider: fastURL, name: "rescuer")
        #expect(try await hasty.terminate() == 0)
        let answer = try await handedBack
        #expect(answer.status == 200, "\(answer.text)")
        stuck.signal(SIGKILL)
        for child in [rescuer, gateway, slow, fast] { _ = try await child.terminate() }
    }

    @Test func gatewayRestartOnPostgresLosesNoResult() async throws {
        try await PostgresTestDatabase.withDatabase(maximumConnections: 2) { _, databaseURL in
            let (mock, mockURL) = try await startMock(["--models", "m", "--latency-ms", "3000"])
            let (first, url) = try await startGateway(["--database-url", databaseURL])
            let port = String(url.split(separator: ":").last ?? "")
            let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "steady")
            let (_, key) = try await createKey(gateway: url)
            let client = Task { try? await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m")) }
            #expect(try await eventually { try await jobs(url, state: "leased").count == 1 })
            let jobID = try #require(try await jobs(url, state: "leased").first?["id"] as? String)
            first.signal(SIGKILL)
            _ = await client.value
            let (second, _) = try await startGateway(["--database-url", databaseURL, "--port", port])
            #expect(
                try await eventually(timeout: .seconds(30)) {
                    try await call(.GET, "\(url)/admin/v1/jobs/\(jobID)", token: e2eAdminToken).json["state"] as? String == "succeeded"
                })
            for child in [agent, second, mock] { _ = try await child.terminate() }
        }
    }

    @Test func twoGatewaysOnOnePostgresServeClientsOnEither() async throws {
        try await PostgresTestDatabase.withDatabase(maximumConnections: 2) { _, databaseURL in
            let (mock, mockURL) = try await startMock(["--models", "m"])
            let (gatewayA, urlA) = try await startGateway(["--database-url", databaseURL])
            let (gatewayB, urlB) = try await startGateway(["--database-url", databaseURL])
            let (agent, _) = try await startAgent(gateway: urlB, provider: mockURL, name: "on-b")
            let (_, key) = try await createKey(gateway: urlA)
            for url in [urlA, urlB, urlA] {
                let answer = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "m"))
                #expect(answer.status == 200, "\(url): \(answer.text)")
            }
            // A stream whose node talks to B reaches a client on A, relayed through PostgreSQL.
            let body = #"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#
            for url in [urlA, urlB] {
                let stream = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: body)
                #expect(stream.status == 200, "\(url): \(stream.text)")
                let events = stream.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
                #expect(events.count == 16 + 4, "\(url): \(stream.text)")
                #expect(events.last == "data: [DONE]")
                #expect(stream.text.contains(#""completion_tokens":16"#))
            }
            for child in [agent, gatewayA, gatewayB, mock] { _ = try await child.terminate() }
        }
    }
}
