import Foundation
import MizanCore
import MizanGateway
import MizanStore
import MizanTestSupport
import Testing

@Suite("Per-key limits over loopback: admin API, answers and headers")
struct KeyLimitsTests {
    /// Creates a key through the admin API with `settings` (JSON members beside the name).
    func createKey(_ gateway: Harness, _ settings: String) async throws -> (id: String, secret: String, answer: HTTPAnswer) {
        let answer = try await gateway.send(.POST, "/admin/v1/keys", token: Harness.adminToken, body: #"{"name":"limited",\#(settings)}"#)
        guard answer.status == 201, let id = answer.json["id"] as? String, let secret = answer.json["key"] as? String else {
            throw HarnessError("key creation failed: \(answer.status) \(answer.text)")
        }
        return (id, secret, answer)
    }

    @Test func aRequestsPerMinuteLimitAdmitsItsBurstThenAnswers429WithRetryAfter() async throws {
        try await withMock(.init(tokens: 2)) { base in
            try await withGateway(routes: [ProviderRoute(model: "mock-model", baseURL: base)], inProcess: true) {
                (gateway: Harness) async throws in
                let key = try await createKey(gateway, #""limits":{"requestsPerMinute":3,"tokensPerMinute":100000}"#)
                #expect((key.answer.json["limits"] as? [String: Any])?["requestsPerMinute"] as? Int == 3, "\(key.answer.text)")
                // One request comes back every 20 s: the checks below allow for a slow machine.
                let started = ContinuousClock.now
                var remaining: [String] = []
                for _ in 0..<3 {
                    let answer = try await gateway.chat(key: key.secret)
                    #expect(answer.status == 200, "\(answer.text)")
                    #expect(answer.headers["x-ratelimit-limit-requests"].first == "3")
                    #expect(answer.headers["x-ratelimit-limit-tokens"].first == "100000")
                    #expect(answer.headers["x-ratelimit-reset-requests"].first?.hasSuffix("s") == true)
                    remaining.append(answer.headers["x-ratelimit-remaining-requests"].first ?? "")
                }
                let refused = try await gateway.chat(key: key.secret)
                let elapsed = (ContinuousClock.now - started).timeInterval
                guard elapsed < 19 else { return }  // a request refilled meanwhile: nothing exact to check
                #expect(remaining == ["2", "1", "0"])
                #expect(refused.status == 429)
                let error = refused.json["error"] as? [String: Any]
                #expect(error?["code"] as? String == "rate_limit_exceeded")
                #expect(error?["type"] as? String == "requests")
                let retryAfter = Int(refused.headers["Retry-After"].first ?? "") ?? 0
                #expect(retryAfter <= 20 && retryAfter >= 20 - Int(elapsed) - 1, "one request is back 20 s after the burst: \(retryAfter)")
                #expect(refused.headers["x-ratelimit-remaining-requests"].first == "0")
                // A stream is refused before its first byte, as JSON.
                let stream = try await gateway.chat(stream: true, key: key.secret)
                #expect(stream.status == 429)
                #expect(stream.headers["Content-Type"].first?.hasPrefix("application/json") == true)
                // The default key is not limited and carries no rate-limit headers.
                let other = try await gateway.chat()
                #expect(other.status == 200)
                #expect(other.headers["x-ratelimit-limit-requests"].isEmpty)
            }
        }
    }

    @Test func aSpentBudgetAnswersInsufficientQuotaAndTokensAreCountedAsRequestsEnd() async throws {
        try await withMock(.init(tokens: 4)) { base in
            try await withGateway(routes: [ProviderRoute(model: "mock-model", baseURL: base)], inProcess: true) {
                (gateway: Harness) async throws in
                let key = try await createKey(gateway, #""budget":{"tokens":5,"period":"day"}"#)
                let first = try await gateway.chat(key: key.secret)
                #expect(first.status == 200, "\(first.text)")
                // The tokens are counted once the answer is written; the next request sees them.
                #expect(
                    try await eventually {
                        let view = try await gateway.send(.GET, "/admin/v1/keys/\(key.id)", token: Harness.adminToken)
                        return ((view.json["consumption"] as? [String: Any])?["budgetTokensUsed"] as? Int ?? 0) > 0
                    })
                let view = try await gateway.send(.GET, "/admin/v1/keys/\(key.id)", token: Harness.adminToken)
                let used = (view.json["consumption"] as? [String: Any])?["budgetTokensUsed"] as? Int
                let usage = try await gateway.store.usageSummary().first { $0.apiKeyID == key.id }
                #expect(used == (usage?.promptTokens ?? -1) + (usage?.completionTokens ?? -1), "the usage record's figure: \(view.text)")
                // Under the budget still (an in-flight overrun is allowed), then spent.
                var answer = try await gateway.chat(key: key.secret)
                if answer.status == 200 {
                    _ = try await eventually {
                        let view = try await gateway.send(.GET, "/admin/v1/keys/\(key.id)", token: Harness.adminToken)
                        return ((view.json["consumption"] as? [String: Any])?["budgetTokensUsed"] as? Int ?? 0) >= 5
                    }
                    answer = try await gateway.chat(key: key.secret)
                }
                #expect(answer.status == 429)
                let error = answer.json["error"] as? [String: Any]
                #expect(error?["code"] as? String == "insufficient_quota", "\(answer.text)")
                #expect(error?["type"] as? String == "insufficient_quota")
                #expect(Int(answer.headers["Retry-After"].first ?? "") ?? 0 > 0, "until the next UTC day")
            }
        }
    }

    @Test func anAllowListHidesOtherModelsAndAnExpiredKeyIsRefused() async throws {
        try await withMock(.init(models: ["mock-model", "other-model"])) { base in
            let routes = [ProviderRoute(model: "mock-model", baseURL: base), ProviderRoute(model: "other-model", baseURL: base)]
            try await withGateway(routes: routes, inProcess: true) { (gateway: Harness) async throws in
                let key = try await createKey(gateway, #""models":["mock-model"]"#)
                #expect(try await gateway.chat(model: "mock-model", key: key.secret).status == 200)
                let hidden = try await gateway.chat(model: "other-model", key: key.secret)
                let unknown = try await gateway.chat(model: "no-such-model", key: key.secret)
                #expect(hidden.status == 404)
                let hiddenError = hidden.json["error"] as? [String: String]
                let unknownError = (unknown.json["error"] as? [String: String])?.mapValues {
                    $0.replacingOccurrences(of: "no-such-model", with: "other-model")
                }
                #expect(hiddenError != nil && hiddenError == unknownError, "no leak: \(hidden.text)")
                let models = try await gateway.send(.GET, "/v1/models", token: key.secret)
                let ids = (models.json["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
                #expect(ids == ["mock-model"], "\(models.text)")
                // Expired: an expiry in the past, set by PATCH, takes effect at once on this instance.
                let patched = try await gateway.send(
                    .PATCH, "/admin/v1/keys/\(key.id)", token: Harness.adminToken, body: #"{"expiresAt":"2020-01-01T00:00:00Z"}"#)
                #expect(patched.status == 200, "\(patched.text)")
                let expired = try await gateway.chat(model: "mock-model", key: key.secret)
                #expect(expired.status == 401)
                #expect((expired.json["error"] as? [String: Any])?["message"] as? String == "This API key has expired.")
                // null removes a setting.
                let cleared = try await gateway.send(
                    .PATCH, "/admin/v1/keys/\(key.id)", token: Harness.adminToken, body: #"{"expiresAt":null,"models":null}"#)
                #expect(cleared.status == 200)
                #expect(cleared.json["models"] == nil && cleared.json["expiresAt"] == nil, "\(cleared.text)")
                #expect(try await gateway.chat(model: "other-model", key: key.secret).status == 200)
            }
        }
    }

    @Test func badSettingsAreRefusedNamingTheField() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            let cases: [(String, String)] = [
                (#""limits":{"requestsPerMinute":0}"#, "limits.requestsPerMinute"),
                (#""models":[]"#, "models"),
                (#""budget":{"tokens":10,"period":"week"}"#, "budget.period"),
                (#""budget":{"tokens":10}"#, "period"),
                (#""expiresAt":"tomorrow""#, "expiresAt"),
                (#""priority":"urgent""#, "priority must be interactive, standard or batch"),
                (#""priority":3"#, "priority"),
                (#""weight":0"#, "weight must be a whole number from 1 to 100"),
                (#""weight":101"#, "weight must be a whole number from 1 to 100"),
                (#""maxQueued":0"#, "maxQueued must be a whole number from 1 to 1000000"),
                (#""maxQueued":1000001"#, "maxQueued"),
            ]
            for (settings, field) in cases {
                let answer = try await gateway.send(
                    .POST, "/admin/v1/keys", token: Harness.adminToken, body: #"{"name":"bad",\#(settings)}"#)
                #expect(answer.status == 400, "\(settings): \(answer.text)")
                let message = (answer.json["error"] as? [String: Any])?["message"] as? String ?? ""
                #expect(message.contains(field), "\(settings): \(message)")
            }
            // The same through PATCH, and nothing is changed.
            let key = try await createKey(gateway, #""weight":5"#)
            for (settings, field) in [
                (#""priority":"high""#, "priority must be interactive, standard or batch"), (#""weight":101"#, "weight"),
                (#""maxQueued":0"#, "maxQueued"),
            ] {
                let answer = try await gateway.send(.PATCH, "/admin/v1/keys/\(key.id)", token: Harness.adminToken, body: "{\(settings)}")
                #expect(answer.status == 400, "\(settings): \(answer.text)")
                let error = answer.json["error"] as? [String: Any]
                #expect((error?["message"] as? String ?? "").contains(field), "\(settings): \(answer.text)")
                #expect(error?["type"] as? String == "invalid_request_error", "\(answer.text)")
            }
            let view = try await gateway.send(.GET, "/admin/v1/keys/\(key.id)", token: Harness.adminToken)
            #expect(view.json["weight"] as? Int == 5 && view.json["priority"] == nil, "\(view.text)")
            let missing = try await gateway.send(.PATCH, "/admin/v1/keys/missing", token: Harness.adminToken, body: #"{"name":"x"}"#)
            #expect(missing.status == 404)
            let noName = try await gateway.send(.PATCH, "/admin/v1/keys/missing", token: Harness.adminToken, body: #"{"name":null}"#)
            #expect(noName.status == 400)
        }
    }

    @Test func queueingSettingsAreSetShownChangedAndCleared() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            let key = try await createKey(gateway, #""priority":"batch","weight":3,"maxQueued":40"#)
            #expect(key.answer.json["priority"] as? String == "batch", "\(key.answer.text)")
            #expect(key.answer.json["weight"] as? Int == 3 && key.answer.json["maxQueued"] as? Int == 40, "\(key.answer.text)")
            var view = try await gateway.send(.GET, "/admin/v1/keys/\(key.id)", token: Harness.adminToken)
            #expect(view.json["priority"] as? String == "batch" && view.json["weight"] as? Int == 3, "\(view.text)")
            #expect(view.json["maxQueued"] as? Int == 40 && view.json["consumption"] == nil, "not counted: \(view.text)")
            let list = try await gateway.send(.GET, "/admin/v1/keys", token: Harness.adminToken)
            let listed = (list.json["data"] as? [[String: Any]])?.first { $0["id"] as? String == key.id }
            #expect(listed?["priority"] as? String == "batch" && listed?["maxQueued"] as? Int == 40, "\(list.text)")
            // A value replaces, an absent field stays, null clears.
            var patched = try await gateway.send(
                .PATCH, "/admin/v1/keys/\(key.id)", token: Harness.adminToken, body: #"{"priority":"interactive","weight":100}"#)
            #expect(patched.status == 200, "\(patched.text)")
            #expect(patched.json["priority"] as? String == "interactive" && patched.json["weight"] as? Int == 100, "\(patched.text)")
            #expect(patched.json["maxQueued"] as? Int == 40, "kept: \(patched.text)")
            patched = try await gateway.send(
                .PATCH, "/admin/v1/keys/\(key.id)", token: Harness.adminToken, body: #"{"priority":null,"weight":null,"maxQueued":null}"#)
            #expect(patched.status == 200, "\(patched.text)")
            #expect(patched.json["priority"] == nil && patched.json["weight"] == nil && patched.json["maxQueued"] == nil, "\(patched.text)")
            view = try await gateway.send(.GET, "/admin/v1/keys/\(key.id)", token: Harness.adminToken)
            #expect(view.json["priority"] == nil && view.json["weight"] == nil && view.json["maxQueued"] == nil, "\(view.text)")
            let stored = try await gateway.store.apiKeys().first { $0.id == key.id }
            #expect(stored?.policy.priorityClass == .standard && stored?.policy.shareWeight == 1, "\(String(describing: stored))")
            // The key still works.
            let models = try await gateway.send(.GET, "/v1/models", token: key.secret)
            #expect(models.status == 200, "\(models.text)")
        }
    }

    @Test func concurrentRequestsBeyondTheLimitAreRefusedAndSlotsComeBack() async throws {
        try await withMock(.init(latency: .milliseconds(400))) { base in
            try await withGateway(routes: [ProviderRoute(model: "mock-model", baseURL: base)], inProcess: true) {
                (gateway: Harness) async throws in
                let key = try await createKey(gateway, #""limits":{"concurrentRequests":2}"#)
                let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<5 { group.addTask { try await gateway.chat(key: key.secret).status } }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(statuses.filter { $0 == 200 }.count == 2, "\(statuses)")
                #expect(statuses.filter { $0 == 429 }.count == 3, "\(statuses)")
                // Their slots are released as they end.
                #expect(
                    try await eventually {
                        let view = try await gateway.send(.GET, "/admin/v1/keys/\(key.id)", token: Harness.adminToken)
                        return (view.json["consumption"] as? [String: Any])?["inFlight"] as? Int == 0
                    })
                #expect(try await gateway.chat(key: key.secret).status == 200)
            }
        }
    }

    @Test func usageIsQueriedByTimeKeyAndModelAndGroupedAsAsked() async throws {
        try await withMock(.init(tokens: 3)) { base in
            try await withGateway(routes: [ProviderRoute(model: "mock-model", baseURL: base)], inProcess: true) {
                (gateway: Harness) async throws in
                let key = try await createKey(gateway, #""models":["mock-model"]"#)
                for secret in [key.secret, key.secret, gateway.apiKey] { #expect(try await gateway.chat(key: secret).status == 200) }
                func rows(_ query: String) async throws -> [[String: Any]] {
                    let answer = try await gateway.send(.GET, "/admin/v1/usage?\(query)", token: Harness.adminToken)
                    #expect(answer.status == 200, "\(query): \(answer.text)")
                    return answer.json["data"] as? [[String: Any]] ?? []
                }
                #expect(
                    try await eventually { try await rows("groupBy=").first?["requests"] as? Int == 3 }, "every request is recorded")
                let byKey = try await rows("groupBy=key")
                #expect(Set(byKey.compactMap { $0["requests"] as? Int }) == [1, 2], "\(byKey)")
                let oneKey = try await rows("key=\(key.id)&groupBy=day,model")
                #expect(oneKey.count == 1 && oneKey.first?["requests"] as? Int == 2 && oneKey.first?["model"] as? String == "mock-model")
                #expect(oneKey.first?["completionTokens"] as? Int == 6 && oneKey.first?["period"] as? String != nil, "\(oneKey)")
                #expect(try await rows("since=2099-01-01").isEmpty, "nothing after a future date")
                #expect(try await rows("until=2001-01-01T00:00:00Z").isEmpty, "nothing before 2001")
                for bad in ["groupBy=week", "since=yesterday"] {
                    let answer = try await gateway.send(.GET, "/admin/v1/usage?\(bad)", token: Harness.adminToken)
                    #expect(answer.status == 400, "\(bad): \(answer.text)")
                }
            }
        }
    }

    @Test func anIdempotentReplaySpendsTheBudgetOnce() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["local"])
            let key = try await createKey(gateway, #""budget":{"tokens":1000,"period":"total"}"#)
            let headers = [("Idempotency-Key", "once-only")]
            let first = Task { try await gateway.chat(model: "local", key: key.secret, headers: headers) }
            let leased = try await gateway.lease(token: node.token)
            #expect(try await gateway.complete(leased[0], token: node.token).status == 200)
            #expect(try await first.value.status == 200)
            func used() async throws -> Int? {
                let view = try await gateway.send(.GET, "/admin/v1/keys/\(key.id)", token: Harness.adminToken)
                return (view.json["consumption"] as? [String: Any])?["budgetTokensUsed"] as? Int
            }
            // The node reported 7 + 3 tokens.
            #expect(try await eventually { try await used() == 10 })
            let replay = try await gateway.chat(model: "local", key: key.secret, headers: headers)
            #expect(replay.status == 200)
            #expect(try await eventually { try await gateway.store.usageSummary().first { $0.apiKeyID == key.id }?.requests == 2 })
            #expect(try await used() == 10, "the replay got the one job's answer and spent nothing")
        }
    }
}
