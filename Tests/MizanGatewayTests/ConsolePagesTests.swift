import Foundation
import MizanCore
import MizanGateway
import MizanProvider
import MizanStore
import MizanTestSupport
import NIOHTTP1
import Testing

@Suite("Console pages and their actions")
struct ConsolePagesTests {
    @Test func emptyPagesSaySoAndNamesAreEscaped() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            try await browser.signIn(Harness.adminToken)
            #expect(try await browser.send(.GET, "/console/nodes").text.contains("No nodes yet — create one"))
            #expect(try await browser.send(.GET, "/console/jobs").text.contains("No jobs yet"))
            #expect(try await browser.send(.GET, "/console/usage").text.contains("No requests in this range."))
            #expect(try await browser.send(.GET, "/console").text.contains("No job is waiting for a node."))

            let hostile = "<script>alert('x')</script>\"&"
            let created = try await browser.submit("/console/keys", from: "/console/keys", ["name": hostile])
            #expect(created.status == 201)
            #expect(!created.text.contains("<script>alert"))
            #expect(created.text.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"))
        }
    }

    @Test func aKeyIsShownOnceAndItsSettingsAreEditedAndRevoked() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            try await browser.signIn(Harness.adminToken)
            let created = try await browser.submit(
                "/console/keys", from: "/console/keys",
                [
                    "name": "team-a", "models": "mock-model, other", "rpm": "60", "budgetTokens": "1000", "budgetPeriod": "day",
                    "expires": "2099-01-01",
                ])
            #expect(created.status == 201)
            let secret = try #require(created.value(ofID: "new-key-secret"))
            #expect(secret.hasPrefix("mzn_sk_"))
            let key = try #require(try await gateway.store.apiKeys().first { $0.name == "team-a" })
            #expect(key.policy.models == ["mock-model", "other"] && key.policy.limits?.requestsPerMinute == 60)
            #expect(key.policy.budget == KeyPolicy.Budget(tokens: 1000, period: .day))
            #expect(key.policy.expiresAt == ISO8601Text.date(from: "2099-01-01", allowingDate: true))
            let list = try await browser.send(.GET, "/console/keys")
            #expect(!list.text.contains(secret), "the key is shown once")
            #expect(list.text.contains("team-a") && list.text.contains("60 requests/min") && list.text.contains("1,000 tokens a day"))
            #expect(list.text.contains("60 of 60 requests left"), "consumption is shown")

            // Bad settings are refused in the page, naming the field, and nothing changes.
            let bad = try await browser.submit("/console/keys", from: "/console/keys", ["name": "team-b", "rpm": "-3"])
            #expect(bad.status == 400 && bad.text.contains("Requests per minute must be a whole number"))
            #expect(bad.value(ofID: "key-name") == "team-b", "the form keeps what was typed")
            #expect(try await gateway.store.apiKeys().count == 2)

            // Edit: the page shows the settings; an emptied field removes its setting.
            let page = try await browser.send(.GET, "/console/keys/\(key.id)")
            #expect(page.status == 200 && page.value(ofID: "key-rpm") == "60" && page.value(ofID: "key-models") == "mock-model, other")
            let saved = try await browser.submit(
                "/console/keys/\(key.id)", from: "/console/keys/\(key.id)",
                ["name": "team-a2", "rpm": "", "tpm": "5000", "budgetPeriod": "month"])
            #expect(saved.status == 303 && saved.location == "/console/keys/\(key.id)?notice=key-saved")
            let changed = try #require(try await gateway.store.apiKeys().first { $0.id == key.id })
            #expect(changed.name == "team-a2" && changed.policy.limits == KeyPolicy.Limits(tokensPerMinute: 5000))
            #expect(changed.policy.models == nil && changed.policy.budget == nil && changed.policy.expiresAt == nil)
            #expect(try await browser.send(.GET, saved.location!).text.contains("The key&#39;s settings were saved."))

            // Revoke: without the script's confirmation the console asks on a page of its own.
            let asked = try await browser.submit("/console/keys/\(key.id)/revoke", from: "/console/keys", [:])
            #expect(
                asked.status == 200 && asked.text.contains("Revoke the key “team-a2”?")
                    && asked.text.contains("name=\"confirmed\" value=\"1\""))
            #expect(try await gateway.store.apiKeys().first { $0.id == key.id }?.isActive == true)
            let revoked = try await browser.submit("/console/keys/\(key.id)/revoke", from: "/console/keys", ["confirmed": "1"])
            #expect(revoked.status == 303 && revoked.location == "/console/keys?notice=key-revoked")
            #expect(try await gateway.store.apiKeys().first { $0.id == key.id }?.isActive == false)
            #expect(try await gateway.chat(key: secret).status == 401)
            #expect(try await browser.send(.GET, "/console/keys/\(key.id)").status == 404)
        }
    }

    @Test func aNodeIsCreatedWithItsCommandShownOnceAndRevoked() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            try await browser.signIn(Harness.adminToken)
            let created = try await browser.submit("/console/nodes", from: "/console/nodes", ["name": "GPU Box 1"])
            #expect(created.status == 201)
            let token = try #require(created.value(ofID: "registration-token"))
            #expect(created.text.contains("export MIZAN_REGISTRATION_TOKEN=&#39;\(token)&#39;"))
            #expect(
                created.text.contains("mizan-agent --gateway http://127.0.0.1:\(gateway.port) --token-file ~/.config/mizan/gpu-box-1.token")
            )
            let list = try await browser.send(.GET, "/console/nodes")
            #expect(!list.text.contains(token) && list.text.contains("GPU Box 1") && list.text.contains(">pending<"))
            #expect(try await browser.submit("/console/nodes", from: "/console/nodes", ["name": "   "]).status == 400)

            // A registered node shows its models, slots, version and health.
            let (id, _) = try await gateway.registerNode(models: ["llama3"], maxConcurrency: 3, name: "worker")
            let live = try await browser.send(.GET, "/console/nodes")
            #expect(
                live.text.contains("worker") && live.text.contains("llama3") && live.text.contains("0 / 3")
                    && live.text.contains(">healthy<"))

            let asked = try await browser.submit("/console/nodes/\(id)/revoke", from: "/console/nodes", [:])
            #expect(asked.status == 200 && asked.text.contains("Revoke the node “worker”?"))
            let revoked = try await browser.submit("/console/nodes/\(id)/revoke", from: "/console/nodes", ["confirmed": "1"])
            #expect(revoked.status == 303 && revoked.location == "/console/nodes?notice=node-revoked")
            let after = try await browser.send(.GET, revoked.location!)
            #expect(!after.text.contains("<strong>worker</strong>") && after.text.contains("1 revoked node is not shown."))
            #expect(after.text.contains("The node was revoked"))
            #expect(try await browser.submit("/console/nodes/not-an-id/revoke", from: "/console/nodes", ["confirmed": "1"]).status == 404)
        }
    }

    @Test func jobsAreFilteredPagedAndShownWithoutTheirContents() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            try await browser.signIn(Harness.adminToken)
            let start = Date().addingTimeInterval(-600)
            var ids: [JobID] = []
            for index in 0..<55 {
                let job = Job(
                    id: JobID(at: start.addingTimeInterval(Double(index))), requestID: "r\(index)",
                    model: index % 5 == 0 ? "rare" : "common",
                    body: Data(#"{"model":"common","messages":[{"role":"user","content":"secret-words-\#(index)"}]}"#.utf8),
                    deadline: Date().addingTimeInterval(600), now: start.addingTimeInterval(Double(index)))
                ids.append(try await gateway.store.insert(job).job.id)
            }
            let first = try await browser.send(.GET, "/console/jobs")
            #expect(first.status == 200 && !first.text.contains("secret-words"))
            #expect(first.text.contains(ids[54].description) && !first.text.contains(ids[4].description), "newest first, 50 a page")
            let older = try #require(first.text.range(of: "href=\"/console/jobs?before=")).upperBound
            let cursor = String(first.text[older...].prefix { $0 != "\"" })
            #expect(cursor == ids[5].description)
            let second = try await browser.send(.GET, "/console/jobs?before=\(cursor)")
            #expect(
                second.text.contains(ids[4].description) && second.text.contains(ids[0].description) && !second.text.contains("Older →"))
            #expect(second.text.contains("← Newest"))

            let rare = try await browser.send(.GET, "/console/jobs?state=accepted&model=rare")
            let rareCount = rare.text.components(separatedBy: "href=\"/console/jobs/").count - 1
            #expect(rareCount == 11, "the 11 rare jobs")
            #expect(try await browser.send(.GET, "/console/jobs?state=succeeded").text.contains("No job matches these filters."))
            #expect(try await browser.send(.GET, "/console/jobs?state=bogus").status == 400)
            #expect(try await browser.send(.GET, "/console/jobs?before=nope").status == 400)

            let detail = try await browser.send(.GET, "/console/jobs/\(ids[54])")
            #expect(detail.status == 200 && detail.text.contains("Accepted") && detail.text.contains("Waiting"))
            #expect(!detail.text.contains("secret-words"), "never the messages")
            #expect(try await browser.send(.GET, "/console/jobs/\(JobID())").status == 404)
        }
    }

    @Test func aJobsStoryShowsEveryAttempt() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            try await browser.signIn(Harness.adminToken)
            let (_, firstToken) = try await gateway.registerNode(models: ["local"], name: "first-box")
            let (_, secondToken) = try await gateway.registerNode(models: ["local"], name: "second-box")
            async let answer = gateway.chat(model: "local")
            let job = try #require(try await gateway.lease(token: firstToken).first)
            let failure = #"{"attempt":\#(job.attempt),"failure":{"code":"gpu_busy","message":"busy","retryable":true}}"#
            #expect(try await gateway.send(.POST, "/agent/v1/jobs/\(job.jobID)/fail", token: firstToken, body: failure).status == 200)
            let again = try #require(try await gateway.lease(token: secondToken).first)
            #expect(again.attempt == 2)
            #expect(try await gateway.complete(again, token: secondToken).status == 200)
            #expect(try await answer.status == 200)
            let page = try await browser.send(.GET, "/console/jobs/\(job.jobID)")
            #expect(page.status == 200)
            #expect(
                page.text.contains("(attempt 1)") && page.text.contains("by first-box") && page.text.contains("<code>gpu_busy</code>"),
                "\(page.text)")
            #expect(page.text.contains("(attempt 2)") && page.text.contains("by second-box") && page.text.contains("Succeeded"))
            #expect(page.text.contains("2 of at most 3"))
            // The admin API tells the same story.
            let summary = try await gateway.send(.GET, "/admin/v1/jobs/\(job.jobID)", token: Harness.adminToken).json
            let attempts = summary["earlierAttempts"] as? [[String: Any]] ?? []
            #expect(attempts.count == 1 && attempts.first?["reason"] as? String == "gpu_busy" && attempts.first?["attempt"] as? Int == 1)
        }
    }

    @Test func usageIsShownByKeyAndModelAndAsCSV() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            try await browser.signIn(Harness.adminToken)
            let key = try await gateway.gateway.credentials.issueKey(name: "=HYPERLINK(\"x\")")
            let today = Date()
            for (index, day) in ([0, -86_400, -3 * 86_400] as [Double]).enumerated() {
                _ = try await gateway.store.recordUsage(
                    UsageRecord(
                        requestID: "u\(index)", apiKeyID: key.key.id, model: "llama3", servedBy: "node/x", status: 200,
                        latencyMilliseconds: 5,
                        usage: TokenUsage(promptTokens: 100, completionTokens: 10 * (index + 1)), createdAt: today.addingTimeInterval(day)))
            }
            let page = try await browser.send(.GET, "/console/usage")
            #expect(page.status == 200 && page.text.contains("llama3") && page.text.contains("=HYPERLINK(&quot;x&quot;)"))
            #expect(page.text.contains(">360<"), "300 prompt + 60 completion tokens in the last 7 days")
            let narrow = try await browser.send(.GET, "/console/usage?since=\(Self.day(today))&until=\(Self.day(today))")
            #expect(narrow.text.contains(">110<") && !narrow.text.contains(">360<"), "one day's usage")

            let csv = try await browser.send(.GET, "/console/usage.csv")
            #expect(csv.status == 200 && csv.headers["Content-Type"].first?.hasPrefix("text/csv") == true)
            #expect(csv.headers["Content-Disposition"].first?.hasPrefix("attachment; filename=\"mizan-usage-") == true)
            let lines = csv.text.split(separator: "\r\n").map(String.init)
            #expect(lines.first == "day,key_id,key_name,model,requests,prompt_tokens,completion_tokens")
            #expect(lines.count == 4, "\(lines)")
            #expect(
                lines.contains("\(Self.day(today)),\(key.key.id),\"'=HYPERLINK(\"\"x\"\")\",llama3,1,100,10"),
                "a formula is defused: \(lines)")

            #expect(try await browser.send(.GET, "/console/usage?since=yesterday").status == 400)
            #expect(try await browser.send(.GET, "/console/usage?since=2026-02-01&until=2026-01-01").status == 400)
            #expect(try await browser.send(.GET, "/console/usage?since=2000-01-01&until=2026-01-01").status == 400)
        }
    }

    @Test func batchesAreListedShownAndCancelledBySignedInOperatorsOnly() async throws {
        try await withGateway { (gateway: Harness) async throws in
            // A node knows the model, so that the batch's lines wait for it (nothing leases them).
            _ = try await gateway.registerNode(models: ["llama"], name: "idle-box")
            let key = try #require(try await gateway.store.apiKeys().first)
            let batch = try await Self.batch(in: gateway.store, key: key.id, lines: 3, metadata: ["team": "<b>a</b>"])
            #expect(batch.counts.total == 3)

            // Signed out: the pages lead to the sign-in form and a cancel does nothing.
            let stranger = ConsoleClient(port: gateway.port)
            for path in ["/console/batches", "/console/batches/\(batch.id)"] {
                let answer = try await stranger.send(.GET, path)
                #expect(answer.status == 303 && answer.location == "/console/sign-in", "\(path): \(answer.status)")
            }
            let sneaky = try await stranger.send(.POST, "/console/batches/\(batch.id)/cancel", form: ["confirmed": "1"])
            #expect(sneaky.status == 303 && sneaky.location == "/console/sign-in")
            let untouched = try await gateway.store.batch(batch.id, apiKeyID: nil)?.status
            #expect(untouched == .validating || untouched == .inProgress, "\(String(describing: untouched))")

            let browser = ConsoleClient(port: gateway.port)
            try await browser.signIn(Harness.adminToken)
            let list = try await browser.send(.GET, "/console/batches")
            #expect(list.status == 200 && list.text.contains("aria-current=\"page\">Batches</a>"))
            #expect(list.text.contains("href=\"/console/batches/\(batch.id)\"") && list.text.contains(">tests<"), "the key's name")
            #expect(list.text.contains("0 / 3") && list.text.contains("<progress max=\"3\" value=\"0\""))
            #expect(list.text.contains("0 nodes · 0 routes"))
            #expect(list.text.contains("action=\"/console/batches/\(batch.id)/cancel\""), "a cancel for a batch not ended")

            let detail = try await browser.send(.GET, "/console/batches/\(batch.id)")
            #expect(detail.status == 200 && detail.text.contains("/v1/chat/completions") && detail.text.contains(batch.inputFileID))
            #expect(detail.text.contains("&lt;b&gt;a&lt;/b&gt;") && !detail.text.contains("<b>a</b>"), "metadata is escaped")
            #expect(detail.text.contains("No errors.") && detail.text.contains("24 h"))
            #expect(try await browser.send(.GET, "/console/batches/batch_nope").status == 404)

            // Without the script's confirmation the console asks first; with it, the batch cancels.
            let asked = try await browser.submit("/console/batches/\(batch.id)/cancel", from: "/console/batches", [:])
            #expect(asked.status == 200 && asked.text.contains("name=\"confirmed\" value=\"1\""))
            // A form without the session's CSRF token is refused.
            let forged = try await browser.send(.POST, "/console/batches/\(batch.id)/cancel", form: ["confirmed": "1", "csrf": "forged"])
            #expect(forged.status == 403)
            let cancelled = try await browser.submit(
                "/console/batches/\(batch.id)/cancel", from: "/console/batches/\(batch.id)", ["confirmed": "1", "from": "batch"])
            #expect(cancelled.status == 303 && cancelled.location == "/console/batches/\(batch.id)?notice=batch-cancelling")
            let status = try await gateway.store.batch(batch.id, apiKeyID: nil)?.status
            #expect(status == .cancelling || status == .cancelled, "\(String(describing: status))")
            #expect(try await browser.send(.GET, cancelled.location!).text.contains("The batch is cancelling"))

            // An ended batch cannot be cancelled: the list says so.
            let ended = try await Self.batch(in: gateway.store, key: key.id, lines: 1)
            _ = try await gateway.store.moveBatch(ended.id, to: .completed, from: [.validating, .inProgress], failure: nil, now: Date())
            let refused = try await browser.submit("/console/batches/\(ended.id)/cancel", from: "/console/batches", ["confirmed": "1"])
            #expect(refused.status == 303 && refused.location == "/console/batches?notice=batch-ended")
            #expect(
                try await browser.send(.GET, refused.location!).text.contains(
                    "class=\"notice error\" role=\"alert\">The batch had already ended"))
            #expect(try await gateway.store.batch(ended.id, apiKeyID: nil)?.status == .completed)
        }
    }

    /// A batch of `lines` chat lines for `llama`, created through the store as `POST /v1/batches` does.
    static func batch(in store: InMemoryStore, key: String, lines: Int, metadata: [String: String]? = nil) async throws -> Batch {
        let input = (1...lines).map { number in
            InputLine(
                number: number, customID: "line-\(number)", url: "/v1/chat/completions",
                raw: Data(
                    #"{"custom_id":"line-\#(number)","method":"POST","url":"/v1/chat/completions","body":{"model":"llama","messages":[{"role":"user","content":"hi"}]}}"#
                        .utf8))
        }
        let file = try await store.createFile(
            StoredFile(
                apiKeyID: key, purpose: "batch", filename: "in.jsonl", bytes: input.reduce(0) { $0 + $1.raw.count + 1 }, lines: lines,
                createdAt: Date()),
            lines: input)
        return try await store.createBatch(
            Batch(apiKeyID: key, endpoint: .chatCompletions, inputFileID: file.id, metadata: metadata, createdAt: Date()))
    }

    @Test func theOverviewCountsTheLastHour() async throws {
        try await withMock(.init(models: ["mock-model"], tokens: 4)) { base in
            let route = ProviderRoute(model: "mock-model", baseURL: base, upstreamModel: "mock-model")
            try await withGateway(routes: [route]) { (gateway: Harness) async throws in
                for _ in 0..<3 { #expect(try await gateway.chat().status == 200) }
                #expect(try await gateway.chat(model: "no-such-model").status == 404)
                let browser = ConsoleClient(port: gateway.port)
                try await browser.signIn(Harness.adminToken)
                let page = try await browser.send(.GET, "/console")
                #expect(page.text.contains("<div class=\"label\">Requests, last hour</div><div class=\"value\">4</div>"), "\(page.text)")
                #expect(page.text.contains("0 failed (5xx) · 1 refused (4xx)"))
                // Each minute's bar says what it counts (the four requests may straddle a minute).
                let bars = page.text.matches(of: /(\d+) requests, (\d+) failed, (\d+) refused/).map {
                    [Int($0.output.1)!, Int($0.output.2)!, Int($0.output.3)!]
                }
                #expect(
                    bars.reduce([0, 0, 0]) { [$0[0] + $1[0], $0[1] + $1[1], $0[2] + $1[2]] } == [4, 0, 1],
                    "the minutes' bars count 4 requests, 1 refused: \(bars)")
                #expect(page.text.contains("data-live=\"5\""))
            }
        }
    }

    static func day(_ date: Date) -> String { String(ISO8601Text.text(date).prefix(10)) }
}
