import Foundation
import MizanPostgresTesting
import MizanTestSupport
import Synchronization
import Testing

/// PostgreSQL restarts under a gateway that serves a limited key: nothing served is lost.
@Suite("A database restart loses no usage and no budget")
struct DatabaseBlipProcessTests {
    @Test func everyTokenServedAcrossAPostgresRestartIsRecordedAndCountedInTheBudget() async throws {
        let server = try await ThrowawayPostgres.dedicated()
        defer { server.stop() }
        let (mock, mockURL) = try await startMock(["--models", "local", "--tokens", "5"])
        let routes = try writeRoutes(#"{"routes":[{"model":"local","baseURL":"\#(mockURL)/v1"}]}"#)
        let (gateway, url) = try await startGateway(["--database-url", server.url, "--routes", routes])
        let (status, output) = try await mizan(
            ["keys", "create", "--name", "budgeted", "--budget-tokens", "1000000", "--budget-period", "total", "--json"], gateway: url)
        let created = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any], "\(status) \(output)")
        let keyID = try #require(created["id"] as? String)
        let key = try #require(created["key"] as? String)

        // Three clients send requests one after another while the database restarts.
        let tally = Tally()
        let clients = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        while !tally.stopped {
                            // Paced (about 50 a second each): the suite's other tests share the machine.
                            try? await Task.sleep(for: .milliseconds(20))
                            guard
                                let answer = try? await call(
                                    .POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "local"))
                            else { continue }
                            let total = ((answer.json["usage"] as? [String: Any])?["total_tokens"] as? Int) ?? 0
                            tally.counts.withLock {
                                if answer.status == 200 {
                                    $0.answers += 1
                                    $0.tokens += total
                                } else {
                                    $0.refused += 1
                                }
                            }
                        }
                    }
                }
            }
        }
        try await Task.sleep(for: .seconds(2))
        try await server.restart(down: .seconds(1))
        try await Task.sleep(for: .seconds(3))
        tally.stop()
        await clients.value
        let (answers, tokens, refused) = tally.counts.withLock { $0 }
        print(
            "blip: \(answers) answered, \(tokens) tokens, \(refused) refused; failed writes: \(gateway.output.components(separatedBy: "not be stored yet").count - 1), read again: \(gateway.output.components(separatedBy: "reading again").count - 1), spool retries: \(gateway.output.components(separatedBy: "does not take usage").count - 1), errors: \(gateway.output.components(separatedBy: " error ").count - 1)"
        )
        #expect(answers > 0, "requests were served before and after the restart (\(answers) answered, \(refused) refused)")
        // Once the spool has written what waited, the records and the budget hold every token.
        let settled = try await eventually(timeout: .seconds(30)) {
            let usage = (try await call(.GET, "\(url)/admin/v1/usage", token: e2eAdminToken).json["data"] as? [[String: Any]]) ?? []
            let row = usage.first { $0["apiKeyID"] as? String == keyID }
            let recordedTokens = ((row?["promptTokens"] as? Int) ?? 0) + ((row?["completionTokens"] as? Int) ?? 0)
            let view = try await call(.GET, "\(url)/admin/v1/keys/\(keyID)", token: e2eAdminToken).json
            let used = (view["consumption"] as? [String: Any])?["budgetTokensUsed"] as? Int ?? -1
            // Every answer has its record (a client that timed out may have one more), and the
            // budget holds every recorded token. An admission whose answer was lost as the
            // database stopped (its client got 503) may have kept its reservation: the key is
            // charged at most one reservation (under 300 tokens here) for each such request.
            return recordedTokens >= tokens && used >= recordedTokens && used <= recordedTokens + refused * 300
        }
        let view = try await call(.GET, "\(url)/admin/v1/keys/\(keyID)", token: e2eAdminToken).json
        let usage = (try await call(.GET, "\(url)/admin/v1/usage", token: e2eAdminToken).json["data"] as? [[String: Any]]) ?? []
        if !settled {
            let warnings = gateway.output.split(separator: "\n").filter { $0.contains("warning") || $0.contains("error") }
            print("blip mismatch: usage \(usage) view \(view)\n" + warnings.suffix(40).joined(separator: "\n"))
        }
        #expect(
            settled,
            "\(answers) answers of \(tokens) tokens; the key says \(view["consumption"] ?? "nothing"); gateway log: \(gateway.output.suffix(2000))"
        )
        for child in [gateway, mock] { _ = try await child.terminate() }
    }
}

/// What the clients of a test saw, and when they should stop.
private final class Tally: Sendable {
    let counts = Mutex<(answers: Int, tokens: Int, refused: Int)>((0, 0, 0))
    private let done = Atomic<Bool>(false)
    var stopped: Bool { done.load(ordering: .acquiring) }
    func stop() { done.store(true, ordering: .releasing) }
}
