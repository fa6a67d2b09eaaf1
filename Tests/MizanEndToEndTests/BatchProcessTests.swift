import Foundation
import MizanPostgresTesting
import MizanTestSupport
import Testing

/// Batches over plain HTTP: upload, create, read, cancel, download.
struct BatchClient {
    let url: String
    let key: String

    /// Uploads JSONL lines as a `purpose=batch` file; returns its id.
    func upload(_ lines: [String]) async throws -> String {
        let boundary = "mizan-test-\(UUID().uuidString)"
        var body = "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
        body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
        body += "Content-Type: application/jsonl\r\n\r\n" + lines.joined(separator: "\n") + "\n\r\n--\(boundary)--\r\n"
        let answer = try await call(
            .POST, "\(url)/v1/files", token: key, body: body, headers: [("Content-Type", "multipart/form-data; boundary=\(boundary)")])
        guard answer.status == 200, let id = answer.json["id"] as? String else {
            throw ChildProcessError(message: "upload failed: \(answer.status) \(answer.text)")
        }
        return id
    }

    /// Creates a batch; returns its object.
    func create(file: String, endpoint: String = "/v1/chat/completions") async throws -> [String: Any] {
        let answer = try await call(
            .POST, "\(url)/v1/batches", token: key,
            body: #"{"input_file_id":"\#(file)","endpoint":"\#(endpoint)","completion_window":"24h"}"#)
        guard answer.status == 200 else { throw ChildProcessError(message: "create failed: \(answer.status) \(answer.text)") }
        return answer.json
    }

    func batch(_ id: String) async throws -> [String: Any] {
        try await call(.GET, "\(url)/v1/batches/\(id)", token: key).json
    }

    /// Waits for a batch to end; returns its object.
    func waitForEnd(_ id: String, timeout: Duration = .seconds(120)) async throws -> [String: Any] {
        var last: [String: Any] = [:]
        #expect(
            try await eventually(timeout: timeout) {
                last = try await batch(id)
                return ["completed", "failed", "expired", "cancelled"].contains(last["status"] as? String ?? "")
            }, "batch \(id) did not end: \(last)")
        return last
    }

    /// A file's lines, parsed.
    func lines(ofFile id: String?) async throws -> [[String: Any]] {
        guard let id else { return [] }
        let answer = try await call(.GET, "\(url)/v1/files/\(id)/content", token: key)
        return answer.text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// The output and error files' lines of an ended batch.
    func results(_ batch: [String: Any]) async throws -> (output: [[String: Any]], errors: [[String: Any]]) {
        (try await lines(ofFile: batch["output_file_id"] as? String), try await lines(ofFile: batch["error_file_id"] as? String))
    }
}

/// `n` chat lines for `model`, `custom_id` `line-0` …
func batchLines(_ count: Int, model: String) -> [String] {
    (0..<count).map {
        #"{"custom_id":"line-\#($0)","method":"POST","url":"/v1/chat/completions","body":{"model":"\#(model)","messages":[{"role":"user","content":"question \#($0)"}]}}"#
    }
}

/// The counts of a batch object.
func counts(_ batch: [String: Any]) -> (total: Int, completed: Int, failed: Int) {
    let counts = batch["request_counts"] as? [String: Any] ?? [:]
    return (counts["total"] as? Int ?? -1, counts["completed"] as? Int ?? -1, counts["failed"] as? Int ?? -1)
}

/// Where a batch's lines ran.
func served(_ batch: [String: Any]) -> (nodes: Int, routes: Int) {
    let served = batch["mizan_served"] as? [String: Any] ?? [:]
    return (served["nodes"] as? Int ?? -1, served["routes"] as? Int ?? -1)
}

// One test at a time: each starts a gateway, mocks and agents, and some read timings.
@Suite("Batches and background responses with real processes", .serialized)
struct BatchProcessTests {
    @Test func theOpenAISDKDrivesFilesBatchesAndBackgroundResponses() async throws {
        let python = try await TestPython.python(requiring: ["openai"])
        let (local, localURL) = try await startMock(["--models", "local-chat,local-embed", "--tokens", "4", "--slots", "8"])
        let (slow, slowURL) = try await startMock(["--models", "slow", "--latency-ms", "20000"])
        defer { _ = (local, slow) }
        let routes = try writeRoutes(
            """
            models:
              - {model: local-chat, placement: local-first}
              - {model: local-embed, placement: local-only}
            routes:
              - {model: slow, baseURL: "\(slowURL)/v1", upstreamModel: slow}
            """, ext: "yaml")
        let (gateway, url) = try await startGateway(["--routes", routes])
        defer { _ = gateway }
        let (agent, _) = try await startAgent(
            gateway: url, provider: localURL, name: "gpu-box", arguments: ["--models", "local-chat,local-embed", "--max-concurrency", "8"])
        defer { _ = agent }
        try await waitForNode(url)
        let (_, key) = try await createKey(gateway: url, name: "team-a")
        let (_, other) = try await createKey(gateway: url, name: "team-b")
        let script = TestPython.packageRoot.appendingPathComponent("Tests/sdk/batch_check.py")
        let run = try ChildProcess(
            executable: python, arguments: [script.path],
            environment: [
                "MIZAN_BASE_URL": url, "MIZAN_API_KEY": key, "MIZAN_OTHER_KEY": other, "MIZAN_CHAT_MODEL": "local-chat",
                "MIZAN_EMBED_MODEL": "local-embed", "MIZAN_SLOW_MODEL": "slow",
            ])
        let status = try await run.waitForExit(timeout: .seconds(400))
        #expect(status == 0, "\(run.output)")
        #expect(run.output.contains("batch sdk check passed"))
        // The chat lines ran on the node, none on a route (there is none for the model).
        let usage = try await call(.GET, "\(url)/admin/v1/usage", token: e2eAdminToken).json["data"] as? [[String: Any]] ?? []
        let chat = usage.first { $0["model"] as? String == "local-chat" && $0["endpoint"] as? String == "chat/completions" }
        #expect((chat?["requests"] as? Int ?? 0) >= 200, "\(usage)")
    }

    @Test func aBatchKilledMidwayResumesOnTheSameSQLiteFile() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (mock, mockURL) = try await startMock(["--models", "llama", "--slots", "2", "--service-ms", "150", "--tokens", "5"])
        defer { _ = mock }
        var (gateway, url) = try await startGateway(["--batch-claim-lifetime", "2"], workingDirectory: folder)
        let port = String(url.split(separator: ":").last!)
        let (agent, _) = try await startAgent(
            gateway: url, provider: mockURL, name: "box", arguments: ["--models", "llama", "--max-concurrency", "2"])
        defer { _ = agent }
        try await waitForNode(url)
        let (keyID, key) = try await createKey(gateway: url)
        var batches = BatchClient(url: url, key: key)
        let file = try await batches.upload(batchLines(60, model: "llama"))
        let id = try await batches.create(file: file)["id"] as? String ?? ""
        #expect(try await eventually { counts(try await batches.batch(id)).completed >= 10 })
        gateway.signal(SIGKILL)
        _ = try await gateway.waitForExit()

        (gateway, url) = try await startGateway(["--port", port, "--batch-claim-lifetime", "2"], workingDirectory: folder)
        batches = BatchClient(url: url, key: key)
        let ended = try await batches.waitForEnd(id)
        #expect(ended["status"] as? String == "completed", "\(ended)")
        #expect(counts(ended) == (60, 60, 0))
        let (output, errors) = try await batches.results(ended)
        #expect(errors.isEmpty)
        #expect(output.compactMap { $0["custom_id"] as? String }.sorted() == (0..<60).map { "line-\($0)" }.sorted(), "every line once")
        // No line ran twice at the server, and usage counts each line's tokens once.
        let stats = try await call(.GET, "\(mockURL)/mock/stats").json
        #expect(stats["requests"] as? Int == 60, "\(stats)")
        let usage = try await call(.GET, "\(url)/admin/v1/usage", token: e2eAdminToken).json["data"] as? [[String: Any]] ?? []
        let mine = usage.filter { $0["apiKeyID"] as? String == keyID }
        #expect(mine.reduce(0) { $0 + ($1["completionTokens"] as? Int ?? 0) } == 60 * 5, "\(mine)")
        _ = try await gateway.terminate()
    }

    @Test func anInteractiveRequestWaitsAtMostOneLine() async throws {
        let service = 600
        let (mock, mockURL) = try await startMock(["--models", "llama", "--slots", "1", "--service-ms", "\(service)"])
        defer { _ = mock }
        let (gateway, url) = try await startGateway()
        defer { _ = gateway }
        let (agent, _) = try await startAgent(
            gateway: url, provider: mockURL, name: "box", arguments: ["--models", "llama", "--max-concurrency", "1"])
        defer { _ = agent }
        try await waitForNode(url)
        let (_, key) = try await createKey(gateway: url)
        let batches = BatchClient(url: url, key: key)
        let id = try await batches.create(file: try await batches.upload(batchLines(100, model: "llama")))["id"] as? String ?? ""
        #expect(try await eventually { try await jobs(url, state: "accepted").count >= 50 }, "the batch's lines are queued")
        var waits: [Duration] = []
        for _ in 0..<3 {
            let sent = ContinuousClock.now
            let answer = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "llama"))
            #expect(answer.status == 200, "\(answer.text)")
            waits.append(ContinuousClock.now - sent - .milliseconds(service))
        }
        // Each waited for the line on the node to finish, not for the queue: at most one line's
        // service (plus a loaded machine's slack), against 50 lines' (30 s) without classes.
        #expect(waits.min()! < .milliseconds(service + 1500), "waits \(waits)")
        #expect(try await batches.batch(id)["status"] as? String == "in_progress")
        _ = try await call(.POST, "\(url)/v1/batches/\(id)/cancel", token: key)
    }

    @Test func linesStillWaitingNearTheWindowsEndSpillOrExpire() async throws {
        // A node that takes 1.5 s a line, one at a time; a window of 9 s (24 h × 0.0001), spill
        // after half of it.
        let (local, localURL) = try await startMock(["--models", "llama,private", "--slots", "1", "--service-ms", "1500"])
        let (cloud, cloudURL) = try await startMock(["--models", "cloud-llama"])
        defer { _ = (local, cloud) }
        let routes = try writeRoutes(
            """
            models:
              - {model: llama, placement: local-first}
              - {model: private, placement: local-only}
            routes:
              - {model: llama, baseURL: "\(cloudURL)/v1", upstreamModel: cloud-llama}
            """, ext: "yaml")
        let (gateway, url) = try await startGateway(["--routes", routes, "--batch-window-scale", "0.0001", "--batch-spill-at", "0.5"])
        defer { _ = gateway }
        let (agent, _) = try await startAgent(
            gateway: url, provider: localURL, name: "box", arguments: ["--models", "llama,private", "--max-concurrency", "1"])
        defer { _ = agent }
        try await waitForNode(url)
        let (_, key) = try await createKey(gateway: url)
        let batches = BatchClient(url: url, key: key)
        let spilling = try await batches.create(file: try await batches.upload(batchLines(12, model: "llama")))["id"] as? String ?? ""
        let expiring = try await batches.create(file: try await batches.upload(batchLines(12, model: "private")))["id"] as? String ?? ""

        let spilled = try await batches.waitForEnd(spilling, timeout: .seconds(60))
        #expect(spilled["status"] as? String == "completed", "\(spilled)")
        #expect(counts(spilled) == (12, 12, 0))
        let places = served(spilled)
        #expect(places.nodes >= 1 && places.routes >= 1 && places.nodes + places.routes == 12, "\(places)")
        let cloudStats = try await call(.GET, "\(cloudURL)/mock/stats").json
        #expect(cloudStats["requests"] as? Int == places.routes, "\(cloudStats)")

        let expired = try await batches.waitForEnd(expiring, timeout: .seconds(60))
        #expect(expired["status"] as? String == "expired", "\(expired)")
        let (total, completed, failed) = counts(expired)
        #expect(total == 12 && completed + failed == 12 && failed >= 1)
        #expect(served(expired).routes == 0, "a local-only model never goes to a route")
        let (output, errors) = try await batches.results(expired)
        #expect(output.count == completed && errors.count == failed)
        let ids = (output + errors).compactMap { $0["custom_id"] as? String }
        #expect(ids.sorted() == (0..<12).map { "line-\($0)" }.sorted(), "every line once")
        #expect(errors.allSatisfy { ($0["error"] as? [String: Any])?["code"] as? String == "batch_expired" }, "\(errors.prefix(2))")
    }

    @Test func cancellingLetsTheRunningLineFinishAndStopsTheRest() async throws {
        let (mock, mockURL) = try await startMock(["--models", "llama", "--slots", "1", "--service-ms", "1500"])
        defer { _ = mock }
        let (gateway, url) = try await startGateway()
        defer { _ = gateway }
        let (agent, _) = try await startAgent(
            gateway: url, provider: mockURL, name: "box", arguments: ["--models", "llama", "--max-concurrency", "1"])
        defer { _ = agent }
        try await waitForNode(url)
        let (_, key) = try await createKey(gateway: url)
        let batches = BatchClient(url: url, key: key)
        let id = try await batches.create(file: try await batches.upload(batchLines(20, model: "llama")))["id"] as? String ?? ""
        #expect(try await eventually { try await jobs(url, state: "leased").count == 1 })
        let cancel = try await call(.POST, "\(url)/v1/batches/\(id)/cancel", token: key)
        #expect(cancel.status == 200 && cancel.json["status"] as? String == "cancelling", "\(cancel.text)")
        let ended = try await batches.waitForEnd(id, timeout: .seconds(30))
        #expect(ended["status"] as? String == "cancelled", "\(ended)")
        let (total, completed, failed) = counts(ended)
        #expect(total == 20 && completed >= 1 && completed <= 3 && completed + failed == 20, "\(ended)")
        let (output, errors) = try await batches.results(ended)
        #expect((output + errors).compactMap { $0["custom_id"] as? String }.sorted() == (0..<20).map { "line-\($0)" }.sorted())
        #expect(errors.allSatisfy { ($0["error"] as? [String: Any])?["code"] as? String == "batch_cancelled" })
        // Cancelling it again answers it as it is.
        #expect(try await call(.POST, "\(url)/v1/batches/\(id)/cancel", token: key).status == 200)
    }

    @Test func theCLIListsShowsAndCancelsEveryKeysBatches() async throws {
        let (mock, mockURL) = try await startMock(["--models", "llama", "--slots", "1", "--service-ms", "1500"])
        defer { _ = mock }
        let (gateway, url) = try await startGateway()
        defer { _ = gateway }
        let (agent, _) = try await startAgent(
            gateway: url, provider: mockURL, name: "box", arguments: ["--models", "llama", "--max-concurrency", "1"])
        defer { _ = agent }
        try await waitForNode(url)
        let (keyID, key) = try await createKey(gateway: url, name: "cli-team")
        let batches = BatchClient(url: url, key: key)
        let id = try await batches.create(file: try await batches.upload(batchLines(20, model: "llama")))["id"] as? String ?? ""
        #expect(id.hasPrefix("batch_"))

        let table = try await mizan(["batches", "list"], gateway: url)
        #expect(table.status == 0 && table.output.contains("PROGRESS") && table.output.contains("SERVED BY"), "\(table.output)")
        let row = table.output.split(separator: "\n").first { $0.hasPrefix(id) } ?? ""
        #expect(row.contains(keyID) && row.contains("/20") && row.contains("nodes,"), "\(table.output)")
        let listed = try await mizan(["batches", "list", "--key", keyID, "--limit", "5", "--json"], gateway: url)
        let page = try JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [String: Any] ?? [:]
        let data = page["data"] as? [[String: Any]] ?? []
        #expect(listed.status == 0 && data.count == 1 && data.first?["id"] as? String == id && page["has_more"] as? Bool == false)
        #expect(data.first?["mizan_key"] as? String == keyID)
        let other = try await mizan(["batches", "list", "--key", "some-other-key", "--json"], gateway: url)
        let otherData = (try JSONSerialization.jsonObject(with: Data(other.output.utf8)) as? [String: Any])?["data"] as? [Any]
        #expect(other.status == 0 && otherData?.isEmpty == true, "another key's batches only: \(other.output)")

        let shown = try await mizan(["batches", "show", id], gateway: url)
        #expect(shown.status == 0 && shown.output.contains("/v1/chat/completions") && shown.output.contains("20 total"), "\(shown.output)")
        let shownJSON = try await mizan(["batches", "show", id, "--json"], gateway: url)
        let object = try JSONSerialization.jsonObject(with: Data(shownJSON.output.utf8)) as? [String: Any] ?? [:]
        #expect(object["id"] as? String == id && (object["request_counts"] as? [String: Any])?["total"] as? Int == 20)

        let cancelled = try await mizan(["batches", "cancel", id], gateway: url)
        #expect(cancelled.status == 0 && cancelled.output.contains("batch \(id) cancelling"), "\(cancelled.output)")
        let ended = try await batches.waitForEnd(id, timeout: .seconds(30))
        #expect(ended["status"] as? String == "cancelled", "\(ended)")
        let again = try await mizan(["batches", "cancel", id, "--json"], gateway: url)
        let againJSON = try JSONSerialization.jsonObject(with: Data(again.output.utf8)) as? [String: Any]
        #expect(again.status == 0 && againJSON?["status"] as? String == "cancelled", "answered as it is: \(again.output)")

        let missing = try await mizan(["batches", "show", "batch_000000000000000000000000"], gateway: url)
        #expect(missing.status != 0 && missing.output.contains("404"), "\(missing.output)")
        #expect(missing.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count == 1)
        #expect(try await mizan(["batches", "show", "../keys"], gateway: url).status != 0, "an id is checked before it is sent")
    }

    @Test func aBatchWhoseKeyRunsOutOfBudgetStopsWithTheLinesSoFar() async throws {
        let (mock, mockURL) = try await startMock(["--models", "llama", "--tokens", "100"])
        defer { _ = mock }
        let (gateway, url) = try await startGateway(["--batch-lines-in-flight", "1"])
        defer { _ = gateway }
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "box", arguments: ["--models", "llama"])
        defer { _ = agent }
        try await waitForNode(url)
        let (status, output) = try await mizan(
            ["keys", "create", "--name", "capped", "--budget-tokens", "1000", "--budget-period", "day", "--json"], gateway: url)
        let created = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any], "\(status) \(output)")
        let batches = BatchClient(url: url, key: try #require(created["key"] as? String))
        let id = try await batches.create(file: try await batches.upload(batchLines(30, model: "llama")))["id"] as? String ?? ""
        let ended = try await batches.waitForEnd(id, timeout: .seconds(60))
        #expect(ended["status"] as? String == "failed", "\(ended)")
        let errors = (ended["errors"] as? [String: Any])?["data"] as? [[String: Any]] ?? []
        #expect(errors.first?["code"] as? String == "budget_exhausted", "\(ended)")
        let (total, completed, failed) = counts(ended)
        #expect(total == 30 && completed >= 1 && completed < 30 && completed + failed == 30, "\(ended)")
        let (answered, refused) = try await batches.results(ended)
        #expect(answered.count == completed)
        #expect(refused.allSatisfy { ($0["error"] as? [String: Any])?["code"] as? String == "budget_exhausted" })
        #expect((answered + refused).compactMap { $0["custom_id"] as? String }.sorted() == (0..<30).map { "line-\($0)" }.sorted())
    }

    @Test func anotherInstanceOnPostgreSQLFinishesABatchWhoseInstanceDied() async throws {
        let server = try await ThrowawayPostgres.dedicated()
        defer { server.stop() }
        let (mock, mockURL) = try await startMock(["--models", "llama", "--slots", "2", "--service-ms", "150", "--tokens", "5"])
        defer { _ = mock }
        let (first, firstURL) = try await startGateway(["--database-url", server.url, "--batch-claim-lifetime", "2"])
        let (second, secondURL) = try await startGateway(["--database-url", server.url, "--batch-claim-lifetime", "2"])
        defer { _ = second }
        // The node works through the second instance; the first holds the batch (it was made there).
        let (agent, _) = try await startAgent(
            gateway: secondURL, provider: mockURL, name: "box", arguments: ["--models", "llama", "--max-concurrency", "2"])
        defer { _ = agent }
        try await waitForNode(secondURL)
        let (keyID, key) = try await createKey(gateway: firstURL)
        let batches = BatchClient(url: firstURL, key: key)
        let id = try await batches.create(file: try await batches.upload(batchLines(60, model: "llama")))["id"] as? String ?? ""
        #expect(try await eventually { counts(try await batches.batch(id)).completed >= 10 })
        first.signal(SIGKILL)
        _ = try await first.waitForExit()

        let survivor = BatchClient(url: secondURL, key: key)
        let ended = try await survivor.waitForEnd(id)
        #expect(ended["status"] as? String == "completed", "\(ended)")
        #expect(counts(ended) == (60, 60, 0))
        let (output, errors) = try await survivor.results(ended)
        #expect(errors.isEmpty)
        #expect(output.compactMap { $0["custom_id"] as? String }.sorted() == (0..<60).map { "line-\($0)" }.sorted(), "every line once")
        let stats = try await call(.GET, "\(mockURL)/mock/stats").json
        #expect(stats["requests"] as? Int == 60, "no line ran twice: \(stats)")
        let usage = try await call(.GET, "\(secondURL)/admin/v1/usage", token: e2eAdminToken).json["data"] as? [[String: Any]] ?? []
        let mine = usage.filter { $0["apiKeyID"] as? String == keyID }
        #expect(mine.reduce(0) { $0 + ($1["completionTokens"] as? Int ?? 0) } == 60 * 5, "\(mine)")
    }
}
