import Foundation
import MizanTestSupport
import Testing

/// The model a chat answer names (each mock here serves its own name, so it says who answered).
private func answeredModel(_ answer: HTTPAnswer) -> String? {
    if let model = answer.json["model"] as? String { return model }
    // A stream: the first chunk names it.
    for line in answer.text.split(separator: "\n") where line.hasPrefix("data: {") {
        let chunk = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Any]
        if let model = chunk?["model"] as? String { return model }
    }
    return nil
}

// One test at a time: each starts a gateway, mocks and agents, and their timings are read.
@Suite("The scheduler with real processes: placement, spills, classes, queue caps, affinity", .serialized)
struct SchedulingProcessTests {
    // A local-first model: the node's one slot holds one request; the others, JSON and streams,
    // wait the spill time and go to the route, each counted once, none also run on the node.
    @Test func localFirstSpillsWhatNoNodeTakesToTheRoute() async throws {
        let (local, localURL) = try await startMock(["--models", "llama", "--slots", "1", "--service-ms", "30000"])
        let (cloud, cloudURL) = try await startMock(["--models", "cloud-llama"])
        defer { _ = (local, cloud) }
        let routes = try writeRoutes(
            """
            models:
              - {model: llama, placement: local-first, spillAfterMs: 1000}
            routes:
              - {model: llama, baseURL: "\(cloudURL)/v1", upstreamModel: cloud-llama}
            """, ext: "yaml")
        let (gateway, url) = try await startGateway(["--routes", routes])
        defer { _ = gateway }
        let (_, key) = try await createKey(gateway: url)
        let (agent1, _) = try await startAgent(
            gateway: url, provider: localURL, name: "gpu-box", arguments: ["--models", "llama", "--max-concurrency", "1"])
        defer { _ = agent1 }
        try await waitForNode(url)

        // The node's one slot takes the first request (its 30 s answer is not waited for). On a
        // machine too busy for the node to take it within the spill time it spills: then again.
        var held: [Task<HTTPAnswer, any Error>] = []
        defer { for task in held { task.cancel() } }
        for _ in 0..<3 where try await jobs(url, state: "leased").isEmpty {
            held.append(
                Task {
                    try await sendHTTP(
                        .POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "llama"), timeout: .seconds(60))
                })
            for _ in 0..<40 where try await jobs(url, state: "leased").isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(try await jobs(url, state: "leased").count == 1, "the node holds the first request")
        let spilledBefore = try await jobs(url).filter { $0["errorCode"] as? String == "spilled" }.count

        let answers = try await withThrowingTaskGroup(of: (HTTPAnswer, Duration).self) { group in
            for index in 0..<4 {
                group.addTask {
                    let sent = ContinuousClock.now
                    let answer = try await call(
                        .POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "llama", stream: index % 2 == 0))
                    return (answer, ContinuousClock.now - sent)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.allSatisfy { $0.0.status == 200 }, "\(answers.map { ($0.0.status, $0.0.text.prefix(200)) })")
        let models = answers.map { answeredModel($0.0) ?? "?" }
        #expect(models == Array(repeating: "cloud-llama", count: 4), "all four spilled to the route: \(models)")
        // A spill waits its spill time and the route's, not the node's 30 s (room left for a busy machine).
        for (_, took) in answers { #expect(took < .seconds(10), "a spilled request took \(took)") }
        // The spilled jobs failed as spilled; the node's server saw the first request only.
        let listed = try await jobs(url)
        #expect(listed.filter { $0["errorCode"] as? String == "spilled" }.count == spilledBefore + 4, "\(listed)")
        #expect(listed.filter { $0["state"] as? String == "leased" }.count == 1)
        let stats = try await call(.GET, "\(localURL)/mock/stats").json
        #expect(stats["requests"] as? Int == 1, "\(stats)")
        // Usage: each spilled request once, served by the route.
        // (A record is written once its answer's last byte is, so it may come a moment after the client read it.)
        var usage: [[String: Any]] = []
        for _ in 0..<50 {
            usage = try await call(.GET, "\(url)/admin/v1/usage", token: e2eAdminToken).json["data"] as? [[String: Any]] ?? []
            if usage.map({ $0["requests"] as? Int ?? 0 }).reduce(0, +) >= spilledBefore + 4 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(usage.map { $0["requests"] as? Int ?? 0 }.reduce(0, +) == spilledBefore + 4, "\(usage)")
    }

    // local-only never uses the route; cloud-only never uses the node.
    @Test func localOnlyAndCloudOnlyKeepToTheirKind() async throws {
        let (local, localURL) = try await startMock(["--models", "a,b"])
        let (cloud, cloudURL) = try await startMock(["--models", "cloud-a,cloud-b"])
        defer { _ = (local, cloud) }
        let routes = try writeRoutes(
            #"{"models":[{"model":"a","placement":"local-only"},{"model":"b","placement":"cloud-only"}],"routes":["#
                + #"{"model":"a","baseURL":"\#(cloudURL)/v1","upstreamModel":"cloud-a"},{"model":"b","baseURL":"\#(cloudURL)/v1","upstreamModel":"cloud-b"}]}"#
        )
        let (gateway, url) = try await startGateway(["--routes", routes])
        defer { _ = gateway }
        let (_, key) = try await createKey(gateway: url)
        // Before any node: local-only is refused as no healthy node (not as an unknown model).
        let refused = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "a"))
        #expect(refused.status == 503, "\(refused.text)")
        let (agent, _) = try await startAgent(gateway: url, provider: localURL, name: "both", arguments: ["--models", "a,b"])
        defer { _ = agent }
        try await waitForNode(url)
        for _ in 0..<3 {
            let a = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "a"))
            #expect(a.status == 200 && answeredModel(a) == "a", "\(a.text)")
            let b = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "b"))
            #expect(b.status == 200 && answeredModel(b) == "cloud-b", "\(b.text)")
        }
        // A bad placement is refused at start, naming the file's problem.
        let bad = try writeRoutes(#"{"models":[{"model":"a","placement":"gpu-first"}],"routes":[]}"#)
        let failed = try ChildProcess("mizan-gateway", arguments: ["--port", "0", "--database-url", "memory:", "--routes", bad])
        #expect(try await failed.waitForExit(timeout: .seconds(20)) != 0)
        #expect(failed.output.contains("unknown placement 'gpu-first'"), "\(failed.output)")
    }

    // A batch key's flood waits behind an interactive request; a request may lower its class,
    // never raise it; a queued job rises after --promote-after; --max-queued refuses at once.
    // Order is read from the jobs' lease times (each job holds the one slot for 2 s), not timed.
    @Test func classesPromotionAndAQueueCap() async throws {
        let (local, localURL) = try await startMock(["--models", "m", "--slots", "1", "--service-ms", "2000"])
        defer { _ = local }
        let (gateway, url) = try await startGateway(["--promote-after", "5"])
        defer { _ = gateway }
        let batchKey = try await createKeyWith(url, name: "nightly", ["--priority", "batch", "--max-queued", "3"])
        let chatKey = try await createKeyWith(url, name: "dev", ["--priority", "interactive"])
        let (agent2, _) = try await startAgent(
            gateway: url, provider: localURL, name: "one-slot", arguments: ["--models", "m", "--max-concurrency", "1"])
        defer { _ = agent2 }
        try await waitForNode(url)

        // The class applied is echoed; asking higher gets the key's own; a made-up class is refused.
        let wrong = try await call(
            .POST, "\(url)/v1/chat/completions", token: batchKey, body: chatJSON(model: "m"), headers: [("X-Mizan-Priority", "urgent")])
        #expect(wrong.status == 400, "\(wrong.text)")
        async let lowered = call(
            .POST, "\(url)/v1/chat/completions", token: chatKey, body: chatJSON(model: "m"), headers: [("X-Mizan-Priority", "batch")])
        async let raised = call(
            .POST, "\(url)/v1/chat/completions", token: batchKey, body: chatJSON(model: "m"), headers: [("X-Mizan-Priority", "interactive")]
        )
        let (low, high) = try await (lowered, raised)
        #expect(low.status == 200 && low.headers["X-Mizan-Priority"].first == "batch")
        #expect(high.status == 200 && high.headers["X-Mizan-Priority"].first == "batch")

        // The batch key fills its queue: the node runs one, three wait; a fifth is refused at once.
        let flood = Task {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await call(.POST, "\(url)/v1/chat/completions", token: batchKey, body: chatJSON(model: "m")).status
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
        }
        var settled = false
        for _ in 0..<300 where !settled {
            let waiting = try await jobs(url, state: "accepted").count
            let running = try await jobs(url, state: "leased").count
            settled = waiting == 3 && running == 1
            if !settled { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(settled, "one batch job runs and three wait")
        let capped = try await call(.POST, "\(url)/v1/chat/completions", token: batchKey, body: chatJSON(model: "m"))
        #expect(capped.status == 429 && capped.headers["Retry-After"].first != nil, "\(capped.status) \(capped.text)")

        // The interactive request is leased before the three batch jobs that waited before it.
        let urgent = try await call(.POST, "\(url)/v1/chat/completions", token: chatKey, body: chatJSON(model: "m"))
        #expect(urgent.status == 200 && urgent.headers["X-Mizan-Priority"].first == "interactive")
        let statuses = try await flood.value
        #expect(statuses == [200, 200, 200, 200], "\(statuses)")
        let listed = try await jobs(url)
        let urgentJob = try #require(listed.first { $0["priorityClass"] as? String == "interactive" })
        let urgentLeased = try #require(urgentJob["leasedAt"] as? String)
        let batchLeases = listed.filter { $0["apiKeyID"] as? String != urgentJob["apiKeyID"] as? String }.compactMap {
            ($0["createdAt"] as? String ?? "", $0["leasedAt"] as? String ?? "")
        }
        let waitedBefore = batchLeases.filter { $0.0 <= urgentJob["createdAt"] as? String ?? "" && $0.1 > urgentLeased }
        #expect(waitedBefore.count >= 2, "batch jobs queued before the interactive one were leased after it: \(listed)")
        // The last of them waited past --promote-after (5 s) in its class: it rose to standard.
        #expect(
            listed.contains {
                $0["priorityClass"] as? String == "standard" && $0["apiKeyID"] as? String != urgentJob["apiKeyID"] as? String
            },
            "a batch job that waited rose to standard: \(listed)")
        let metrics = try await call(.GET, "\(url)/metrics").text
        #expect(metrics.contains("mizan_dispatch_jobs_promoted_total"), "\(metrics.prefix(1500))")
        // Usage by class: each request in the class it was served in — the six batch-class answers
        // and the one refused at the cap; the made-up class was refused before it had one.
        let usage =
            try await call(.GET, "\(url)/admin/v1/usage?groupBy=priority", token: e2eAdminToken).json["data"] as? [[String: Any]] ?? []
        let byClass = Dictionary(uniqueKeysWithValues: usage.map { ($0["priority"] as? String ?? "-", $0["requests"] as? Int ?? 0) })
        #expect(byClass["interactive"] == 1 && byClass["batch"] == 7, "\(usage)")
    }

    // Two agents serve one model; each conversation's later turns go to the node that answered
    // its earlier ones (each node names itself through its alias).
    @Test func laterTurnsGoToTheNodeOfTheEarlierOnes() async throws {
        let (first, firstURL) = try await startMock(["--models", "box-a", "--prefix-cache"])
        let (second, secondURL) = try await startMock(["--models", "box-b", "--prefix-cache"])
        defer { _ = (first, second) }
        let (gateway, url) = try await startGateway()
        defer { _ = gateway }
        let (_, key) = try await createKey(gateway: url)
        let (agent3, _) = try await startAgent(
            gateway: url, provider: firstURL, name: "a", arguments: ["--models", "", "--model", "chat=box-a"])
        let (agent4, _) = try await startAgent(
            gateway: url, provider: secondURL, name: "b", arguments: ["--models", "", "--model", "chat=box-b"])
        defer { _ = (agent3, agent4) }
        try await waitForNode(url, count: 2)
        var same = 0
        var later = 0
        for conversation in 0..<6 {
            var messages: [[String: String]] = [["role": "system", "content": "You are helper \(conversation)."]]
            var home: String?
            for turn in 0..<3 {
                messages.append(["role": "user", "content": "turn \(turn) of conversation \(conversation)"])
                let body = String(
                    decoding: try JSONSerialization.data(withJSONObject: ["model": "chat", "messages": messages]), as: UTF8.self)
                let answer = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: body)
                #expect(answer.status == 200, "\(answer.text)")
                let node = answeredModel(answer)
                if let home {
                    later += 1
                    if node == home { same += 1 }
                } else {
                    home = node
                }
                let reply = ((answer.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String ?? ""
                messages.append(["role": "assistant", "content": reply])
            }
        }
        #expect(later == 12)
        #expect(same >= 11, "later turns on the node of the earlier ones: \(same) of \(later)")
        let listed = try await jobs(url)
        #expect(listed.contains { $0["affinity"] as? String == "prefix" }, "jobs record their affinity")
        let metrics = try await call(.GET, "\(url)/metrics").text
        #expect(metrics.contains(#"mizan_dispatch_affinity_leases_total{result="hit"}"#), "\(metrics.prefix(2000))")
    }
}

/// Creates a key with extra `mizan keys create` options; returns the key.
func createKeyWith(_ gateway: String, name: String, _ options: [String]) async throws -> String {
    let (status, output) = try await mizan(["keys", "create", "--name", name, "--json"] + options, gateway: gateway)
    let json = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
    guard status == 0, let key = json?["key"] as? String else { throw ChildProcessError(message: "keys create failed: \(output)") }
    return key
}

/// Waits until the gateway lists `count` healthy nodes.
func waitForNode(_ gateway: String, count: Int = 1) async throws {
    for _ in 0..<100 {
        let nodes = (try await call(.GET, "\(gateway)/admin/v1/nodes", token: e2eAdminToken).json["data"] as? [[String: Any]]) ?? []
        if nodes.filter({ $0["condition"] as? String == "healthy" }).count >= count { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw ChildProcessError(message: "fewer than \(count) healthy nodes after 10 s")
}
