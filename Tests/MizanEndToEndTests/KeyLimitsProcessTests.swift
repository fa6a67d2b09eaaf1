import Foundation
import MizanPostgresTesting
import MizanTestSupport
import Testing

/// Per-key limits held exactly by two `mizan-gateway` processes sharing one PostgreSQL, keys
/// set up with the `mizan` CLI.
@Suite("Per-key limits across two gateways on one PostgreSQL", .serialized)
struct KeyLimitsProcessTests {
    /// Creates a key with the CLI and its settings flags; returns `(id, key)`.
    func createLimitedKey(gateway: String, _ flags: [String]) async throws -> (id: String, key: String) {
        let (status, output) = try await mizan(["keys", "create", "--name", "limited", "--json"] + flags, gateway: gateway)
        guard status == 0, let json = try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
            let id = json["id"] as? String, let key = json["key"] as? String
        else { throw ChildProcessError(message: "keys create failed (\(status)): \(output)") }
        return (id, key)
    }

    @Test func twoGatewaysTogetherAdmitExactlyTheLimitAndShareBudgetsAndSettings() async throws {
        try await PostgresTestDatabase.withDatabase(maximumConnections: 4) { _, databaseURL in
            let (mock, mockURL) = try await startMock(["--models", "local", "--tokens", "4"])
            let routes = try writeRoutes(
                #"{"routes":[{"model":"local","baseURL":"\#(mockURL)/v1"},{"model":"other","baseURL":"\#(mockURL)/v1","upstreamModel":"local"}]}"#
            )
            let (gatewayA, urlA) = try await startGateway(["--database-url", databaseURL, "--routes", routes])
            let (gatewayB, urlB) = try await startGateway(["--database-url", databaseURL, "--routes", routes])
            let urls = [urlA, urlB]

            // Ten requests per minute, 24 sent alternating between the two instances.
            let rated = try await createLimitedKey(gateway: urlA, ["--rpm", "10"])
            var answered = 0
            var refused = 0
            var refusedByA = 0
            let started = ContinuousClock.now
            for index in 0..<24 {
                let answer = try await call(
                    .POST, "\(urls[index % 2])/v1/chat/completions", token: rated.key, body: chatJSON(model: "local"))
                if answer.status == 200 {
                    answered += 1
                } else {
                    #expect(answer.status == 429, "\(answer.text)")
                    #expect((answer.json["error"] as? [String: Any])?["code"] as? String == "rate_limit_exceeded")
                    #expect(Int(answer.headers["Retry-After"].first ?? "") ?? 0 >= 1, "a refusal says when to come back")
                    refused += 1
                    if index.isMultiple(of: 2) { refusedByA += 1 }
                }
            }
            // The bucket refills one request every 6 s: within that, exactly 10; on a machine so
            // slow that the loop took longer, one more per 6 s and never another.
            let elapsed = (ContinuousClock.now - started).timeInterval
            let refills = Int(elapsed / 6)
            #expect(answered >= 10 && answered <= 10 + refills, "exactly the limit across both instances: \(answered) in \(elapsed) s")
            if refills == 0 { #expect(answered == 10 && refused == 14, "exactly 10 of 24: \(answered) / \(refused)") }
            let metrics = try await call(.GET, "\(urlA)/metrics").text
            #expect(metrics.contains(#"mizan_gateway_refusals_total{reason="requests"} \#(refusedByA)"#), "A counted its refusals")

            // A token budget spent through one instance is spent on the other.
            let budgeted = try await createLimitedKey(gateway: urlB, ["--budget-tokens", "12", "--budget-period", "month"])
            var spentAt: Int?
            for index in 0..<12 where spentAt == nil {
                let answer = try await call(
                    .POST, "\(urls[index % 2])/v1/chat/completions", token: budgeted.key, body: chatJSON(model: "local"))
                if answer.status == 429 {
                    #expect((answer.json["error"] as? [String: Any])?["code"] as? String == "insufficient_quota", "\(answer.text)")
                    spentAt = index
                } else {
                    #expect(answer.status == 200, "\(answer.text)")
                    // Counted once the answer is written: wait for it, so the next request sees it.
                    _ = try await eventually {
                        let view = try await call(.GET, "\(urlA)/admin/v1/keys/\(budgeted.id)", token: e2eAdminToken)
                        return ((view.json["consumption"] as? [String: Any])?["budgetTokensUsed"] as? Int ?? 0) > 0
                    }
                }
            }
            let spent = try #require(spentAt, "the budget of 12 tokens runs out")
            #expect(spent >= 1, "at least one request fits the budget")
            for url in urls {
                let answer = try await call(.POST, "\(url)/v1/chat/completions", token: budgeted.key, body: chatJSON(model: "local"))
                #expect(answer.status == 429, "spent on both instances: \(answer.text)")
            }

            // An allow-list, and a change through A that B obeys within its key cache's second.
            let listed = try await createLimitedKey(gateway: urlA, ["--models", "local"])
            #expect(try await call(.POST, "\(urlB)/v1/chat/completions", token: listed.key, body: chatJSON(model: "local")).status == 200)
            #expect(try await call(.POST, "\(urlB)/v1/chat/completions", token: listed.key, body: chatJSON(model: "other")).status == 404)
            let (updated, output) = try await mizan(["keys", "update", listed.id, "--expires", "2020-01-01"], gateway: urlA)
            #expect(updated == 0, "\(output)")
            #expect(
                try await eventually(timeout: .seconds(5)) {
                    try await call(.POST, "\(urlB)/v1/chat/completions", token: listed.key, body: chatJSON(model: "local")).status == 401
                }, "the expiry set through A reaches B")
            let (shown, view) = try await mizan(["keys", "show", rated.id], gateway: urlB)
            #expect(shown == 0 && view.contains("\"requestsPerMinute\" : 10"), "\(view)")
            for child in [gatewayA, gatewayB, mock] { _ = try await child.terminate() }
        }
    }
}
