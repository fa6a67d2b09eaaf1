import Foundation
import MizanCore
import MizanTestSupport
import Testing

/// A new empty folder for a gateway's working directory.
func temporaryFolder() throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-e2e-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder.path
}

@Suite("mizan-gateway on its default SQLite file, with real processes")
struct SQLiteProcessTests {
    @Test func keepsKeysNodesAndAnInFlightJobAcrossAKill() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // The job must still run when the gateway is killed: long enough that a loaded machine's
        // polling sees it leased well before it could finish (with 3 s it once finished first).
        let (mock, mockURL) = try await startMock(["--models", "local-model", "--latency-ms", "8000"])
        // No --database-url: the gateway keeps its state in mizan.sqlite in its working directory.
        var (gateway, url) = try await startGateway(workingDirectory: folder)
        #expect(gateway.output.contains("mizan.store=sqlite"))
        #expect(gateway.output.contains("mizan.store.file=\(folder)/mizan.sqlite"))
        let port = String(url.split(separator: ":").last!)
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "box", arguments: ["--models", "local-model"])
        let (keyID, key) = try await createKey(gateway: url)

        // A request is running on the node when the gateway is killed.
        let firstURL = url
        let inFlight = Task { try? await call(.POST, "\(firstURL)/v1/chat/completions", token: key, body: chatJSON(model: "local-model")) }
        #expect(try await eventually { try await jobs(url, state: "leased").count == 1 })
        gateway.signal(SIGKILL)
        _ = try await gateway.waitForExit()
        _ = await inFlight.value

        // Started again in the same folder (and port, where the agent looks for it).
        (gateway, url) = try await startGateway(["--port", port], workingDirectory: folder)
        let models = try await call(.GET, "\(url)/v1/models", token: key)
        #expect(models.status == 200, "the key survived the restart: \(models.text)")
        // The node's result, retried by the agent while the gateway was down, lands.
        #expect(try await eventually(timeout: .seconds(30)) { try await jobs(url, state: "succeeded").count == 1 })
        // The agent kept its node token: no second registration, one node, still serving.
        let nodes = try await call(.GET, "\(url)/admin/v1/nodes", token: e2eAdminToken).json["data"] as? [[String: Any]] ?? []
        #expect(nodes.count == 1 && nodes.first?["status"] as? String == "active")
        #expect(agent.output.components(separatedBy: "node registered").count == 2, "registered once: \(agent.output)")
        #expect(agent.isRunning)
        let answer = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "local-model"))
        #expect(answer.status == 200, "\(answer.text)")
        // Usage: the killed request left no record (its client never got an answer); the next one, one.
        let usage = try await call(.GET, "\(url)/admin/v1/usage", token: e2eAdminToken).json["data"] as? [[String: Any]] ?? []
        #expect(usage.count == 1 && usage.first?["apiKeyID"] as? String == keyID && usage.first?["requests"] as? Int == 1, "\(usage)")

        // A second gateway on the same file is refused with one line that points to PostgreSQL.
        let second = try ChildProcess("mizan-gateway", arguments: ["--port", "0"], workingDirectory: folder)
        #expect(try await second.waitForExit() != 0)
        let refusals = second.output.split(separator: "\n").filter { $0.hasPrefix("mizan-gateway: ") }
        #expect(refusals.count == 1 && refusals.first?.contains("in use by another gateway") == true, "\(second.output)")
        #expect(second.output.contains("PostgreSQL"))

        #expect(try await agent.terminate() == 0)
        #expect(try await gateway.terminate() == 0)
        _ = try await mock.terminate()
        // A clean stop leaves the file whole, its log folded in.
        #expect(FileManager.default.fileExists(atPath: "\(folder)/mizan.sqlite"))
        #expect(!FileManager.default.fileExists(atPath: "\(folder)/mizan.sqlite-wal"))
    }

    @Test func anIdempotentRetryAfterARestartGetsTheOneJobsAnswer() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // The job must still run when the gateway is killed: long enough that a loaded machine's
        // polling sees it leased well before it could finish (with 3 s it once finished first).
        let (mock, mockURL) = try await startMock(["--models", "local-model", "--latency-ms", "8000"])
        var (gateway, url) = try await startGateway(workingDirectory: folder)
        let port = String(url.split(separator: ":").last!)
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "box", arguments: ["--models", "local-model"])
        let (_, key) = try await createKey(gateway: url)
        let body = chatJSON(model: "local-model")
        let header = [("Idempotency-Key", "retry-me-1")]

        let firstURL = url
        let first = Task { try? await sendHTTP(.POST, "\(firstURL)/v1/chat/completions", token: key, body: body, headers: header) }
        #expect(try await eventually { try await jobs(url, state: "leased").count == 1 })
        gateway.signal(SIGKILL)
        _ = try await gateway.waitForExit()
        _ = await first.value

        // The client retries with the same key against the restarted gateway: it gets the answer
        // of the job that kept running on the node, and nothing ran twice.
        (gateway, url) = try await startGateway(["--port", port], workingDirectory: folder)
        let retry = try await sendHTTP(.POST, "\(url)/v1/chat/completions", token: key, body: body, headers: header, timeout: .seconds(40))
        #expect(retry.status == 200, "\(retry.text)")
        #expect(try JSONDecoder().decode(ChatCompletionResponse.self, from: retry.body).choices.first?.message.content?.isEmpty == false)
        let all = try await jobs(url)
        #expect(all.count == 1 && all.first?["state"] as? String == "succeeded", "\(all)")
        let stats = try await call(.GET, "\(mockURL)/mock/stats").json
        #expect(stats["requests"] as? Int == 1, "the local server ran the request once: \(stats)")
        let usage = try await call(.GET, "\(url)/admin/v1/usage", token: e2eAdminToken).json["data"] as? [[String: Any]] ?? []
        #expect(usage.first?["requests"] as? Int == 1, "usage counted once: \(usage)")
        // The same key with another body is refused.
        let other = try await sendHTTP(
            .POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "local-model", content: "else"), headers: header)
        #expect(other.status == 400, "\(other.text)")
        // A streamed request's retry, once its job has succeeded, gets the kept answer as one chunk and [DONE].
        let streamBody = #"{"model":"local-model","messages":[{"role":"user","content":"hi"}],"stream":true}"#
        let streamKey = [("Idempotency-Key", "stream-me-1")]
        let streamed = try await sendHTTP(.POST, "\(url)/v1/chat/completions", token: key, body: streamBody, headers: streamKey)
        #expect(streamed.status == 200 && streamed.text.hasSuffix("data: [DONE]\n\n"), "\(streamed.text)")
        let text = streamed.text.components(separatedBy: "\n\n").compactMap { event -> String? in
            guard event.hasPrefix("data: {"),
                let chunk = try? JSONDecoder().decode(ChatCompletionChunk.self, from: Data(event.dropFirst(6).utf8))
            else { return nil }
            return chunk.choices.first?.delta.content
        }.joined()
        #expect(!text.isEmpty)
        #expect(try await eventually { try await jobs(url, state: "succeeded").count == 2 })
        let replayed = try await sendHTTP(.POST, "\(url)/v1/chat/completions", token: key, body: streamBody, headers: streamKey)
        #expect(replayed.status == 200 && replayed.text.hasSuffix("data: [DONE]\n\n"), "\(replayed.text)")
        #expect(replayed.text.contains(#""content":"\#(text)""#), "the whole answer again: \(replayed.text)")
        #expect(try await jobs(url).count == 2, "the retry ran nothing")

        #expect(try await agent.terminate() == 0)
        _ = try await gateway.terminate()
        _ = try await mock.terminate()
    }

    @Test func aCorruptOrUnwritableDatabaseIsOneClearLine() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: "\(folder)/mizan.sqlite"))
        for arguments in [["--port", "0"], ["--port", "0", "--database-url", "sqlite:/proc/mizan/mizan.sqlite"]] {
            let child = try ChildProcess("mizan-gateway", arguments: arguments, workingDirectory: folder)
            #expect(try await child.waitForExit() != 0)
            let lines = child.output.split(separator: "\n").filter { $0.hasPrefix("mizan-gateway: ") }
            #expect(lines.count == 1 && lines.first?.contains("Cannot use the SQLite database") == true, "\(child.output)")
        }
    }
}
