import Foundation
import MizanPostgresTesting
import Testing

/// Parallel bursts of one key with a token limit or budget, sent with the official `openai`
/// SDK: admission reserves each request's tokens, so a burst cannot overrun the limit by more
/// than one request's reservation.
@Suite("Token limits and budgets hold under parallel bursts")
struct KeyBurstProcessTests {
    struct Burst: Decodable {
        var answered: Int
        var tokens: Int
        var refused: [String: Int]
    }

    static func burst(targets: [String], key: String, model: String, requests: Int, stream: Bool) async throws -> Burst {
        let python = try await TestPython.python(requiring: ["openai"])
        let script = TestPython.packageRoot.appendingPathComponent("Tests/sdk/burst_check.py")
        let spec: [String: Any] = ["targets": targets, "key": key, "model": model, "requests": requests, "stream": stream]
        let run = try ChildProcess(
            executable: python, arguments: [script.path, String(decoding: try JSONSerialization.data(withJSONObject: spec), as: UTF8.self)])
        guard try await run.waitForExit(timeout: .seconds(120)) == 0, let line = run.output.split(separator: "\n").last else {
            throw ChildProcessError(message: "burst_check.py failed: \(run.output)")
        }
        return try JSONDecoder().decode(Burst.self, from: Data(line.utf8))
    }

    static func limitedKey(_ gateway: String, _ flags: [String]) async throws -> String {
        let (status, output) = try await mizan(["keys", "create", "--name", "burst", "--json"] + flags, gateway: gateway)
        guard status == 0, let json = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
            let key = json["key"] as? String
        else { throw ChildProcessError(message: "keys create failed (\(status)): \(output)") }
        return key
    }

    /// The overrun a burst may make: one request's reservation past what was left, here the
    /// prompt's estimate and the default reservation (256).
    static let slack = 256 + 64

    @Test(arguments: [false, true])
    func aBurstThroughARouteStaysWithinTheTokenLimitAndTheBudget(stream: Bool) async throws {
        let (mock, mockURL) = try await startMock(["--models", "local", "--tokens", "40"])
        let routes = try writeRoutes(#"{"routes":[{"model":"local","baseURL":"\#(mockURL)/v1"}]}"#)
        let (gateway, url) = try await startGateway(["--routes", routes])
        let perMinute = try await Self.limitedKey(url, ["--tpm", "200"])
        let minute = try await Self.burst(targets: [url], key: perMinute, model: "local", requests: 50, stream: stream)
        print("burst tpm=200 stream=\(stream): \(minute)")
        #expect(minute.answered >= 1 && minute.answered + minute.refused.values.reduce(0, +) == 50)
        #expect(minute.tokens <= 200 + Self.slack, "a minute's burst used \(minute.tokens) tokens of 200")
        #expect(minute.refused.keys.allSatisfy { $0.hasPrefix("429") }, "\(minute.refused)")
        let budgeted = try await Self.limitedKey(url, ["--budget-tokens", "100", "--budget-period", "total"])
        let budget = try await Self.burst(targets: [url], key: budgeted, model: "local", requests: 40, stream: stream)
        print("burst budget=100 stream=\(stream): \(budget)")
        #expect(budget.answered >= 1 && budget.tokens <= 100 + Self.slack, "a budget of 100 served \(budget.tokens) tokens")
        #expect(budget.refused.keys.allSatisfy { $0.hasPrefix("429") }, "\(budget.refused)")
        for child in [gateway, mock] { _ = try await child.terminate() }
    }

    @Test func aBurstThroughAnAgentStaysWithinADailyBudget() async throws {
        let (mock, mockURL) = try await startMock(["--models", "local", "--tokens", "20"])
        let (gateway, url) = try await startGateway()
        let (agent, _) = try await startAgent(gateway: url, provider: mockURL, name: "burst", arguments: ["--max-concurrency", "8"])
        let key = try await Self.limitedKey(url, ["--budget-tokens", "50", "--budget-period", "day"])
        let burst = try await Self.burst(targets: [url], key: key, model: "local", requests: 30, stream: false)
        print("burst agent budget=50/day: \(burst)")
        #expect(burst.answered >= 1 && burst.tokens <= 50 + Self.slack, "a budget of 50 served \(burst.tokens) tokens")
        for child in [agent, gateway, mock] { _ = try await child.terminate() }
    }

    @Test func aBurstAcrossTwoGatewaysOnPostgresStaysWithinTheBudget() async throws {
        try await PostgresTestDatabase.withDatabase(maximumConnections: 4) { _, databaseURL in
            let (mock, mockURL) = try await startMock(["--models", "local", "--tokens", "40"])
            let routes = try writeRoutes(#"{"routes":[{"model":"local","baseURL":"\#(mockURL)/v1"}]}"#)
            let (gatewayA, urlA) = try await startGateway(["--database-url", databaseURL, "--routes", routes])
            let (gatewayB, urlB) = try await startGateway(["--database-url", databaseURL, "--routes", routes])
            let key = try await Self.limitedKey(urlA, ["--budget-tokens", "100", "--budget-period", "total"])
            let burst = try await Self.burst(targets: [urlA, urlB], key: key, model: "local", requests: 40, stream: false)
            print("burst two instances budget=100: \(burst)")
            #expect(burst.answered >= 1 && burst.tokens <= 100 + Self.slack, "two instances served \(burst.tokens) tokens of 100")
            for child in [gatewayA, gatewayB, mock] { _ = try await child.terminate() }
        }
    }
}
