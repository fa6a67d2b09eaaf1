import Foundation
import MizanTestSupport
import Testing

/// Starts an example agent (`custom-agent`, `multi-backend-agent`) for a new node of `gateway`
/// and waits until it is connected.
func startExample(_ name: String, gateway: String, arguments: [String] = []) async throws -> ChildProcess {
    let registration = try await createNode(gateway: gateway, name: name)
    let tokenFile = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-\(name)-\(UUID().uuidString).token").path
    let child = try ChildProcess(
        name, arguments: arguments,
        environment: ["MIZAN_GATEWAY": gateway, "MIZAN_REGISTRATION_TOKEN": registration, "MIZAN_TOKEN_FILE": tokenFile])
    _ = try await child.waitForOutput("(agent connected)", timeout: .seconds(30))
    return child
}

@Suite("The examples, run against a real gateway")
struct ExamplesProcessTests {
    @Test func theCustomAgentsSwiftFunctionAnswersClients() async throws {
        let (gateway, url) = try await startGateway()
        let agent = try await startExample("custom-agent", gateway: url)
        let (_, key) = try await createKey(gateway: url)
        #expect(try await call(.GET, "\(url)/v1/models", token: key).text.contains("\"rules\""))
        let answer = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "rules", content: "hello rules"))
        #expect(answer.status == 200, "\(answer.text)")
        let choices = answer.json["choices"] as? [[String: Any]]
        #expect((choices?.first?["message"] as? [String: Any])?["content"] as? String == "Hello! I am a rule, not a model.")
        let stream = try await call(
            .POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: "rules", stream: true, content: "abc"))
        #expect(stream.status == 200)
        #expect(stream.text.contains(#""content":"characters. ""#), "\(stream.text)")
        #expect(stream.text.hasSuffix("data: [DONE]\n\n"))
        // The rules' own refusal reaches the client as the node's failure.
        let refused = try await call(
            .POST, "\(url)/v1/chat/completions", token: key, body: #"{"model":"rules","messages":[{"role":"user","content":[]}]}"#)
        // The handler's `invalid_request` is the client's fault: 400, with the handler's word.
        #expect(refused.status == 400 && refused.text.contains("The rules read chat requests with text messages only."), "\(refused.text)")
        #expect(try await agent.terminate() == 0, "it drains and stops on SIGTERM: \(agent.output)")
        _ = try await gateway.terminate()
    }

    @Test func theMultiBackendAgentServesTwoLocalServersByModel() async throws {
        let (first, firstURL) = try await startMock(["--models", "model-a"])
        let (second, secondURL) = try await startMock(["--models", "model-b"])
        let (gateway, url) = try await startGateway()
        let agent = try await startExample(
            "multi-backend-agent", gateway: url, arguments: ["model-a=\(firstURL)/v1", "model-b=\(secondURL)/v1"])
        let (_, key) = try await createKey(gateway: url)
        for model in ["model-a", "model-b", "model-b"] {
            let answer = try await call(.POST, "\(url)/v1/chat/completions", token: key, body: chatJSON(model: model))
            #expect(answer.status == 200, "\(model): \(answer.text)")
        }
        let stats = { (base: String) in try await call(.GET, "\(base)/mock/stats").json["requests"] as? Int }
        let (a, b) = (try await stats(firstURL), try await stats(secondURL))
        #expect(a == 1 && b == 2, "each server got its model's jobs: \(String(describing: a)), \(String(describing: b))")
        #expect(try await agent.terminate() == 0)
        _ = try await gateway.terminate()
        _ = try await first.terminate()
        _ = try await second.terminate()
    }

    @Test func theEmbeddedDispatcherAnswersItsOwnRouteThroughAJob() async throws {
        let database = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-embedded-\(UUID().uuidString).sqlite").path
        let app = try ChildProcess("embedded-dispatch", arguments: ["--port", "0", "--database", database])
        let port = try await app.waitForOutput(#"embedded-dispatch listening on http://127\.0\.0\.1:(\d+)"#, timeout: .seconds(30))
        let answers = try await withThrowingTaskGroup(of: String.self) { group in
            for word in ["one", "two", "three", "four", "five", "six"] {
                group.addTask { try await sendHTTP(.POST, "http://127.0.0.1:\(port)/shout", body: word).text }
            }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(answers == ["ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX"])
        #expect(try await app.terminate() == 0, "it stops on SIGTERM: \(app.output)")
        #expect(FileManager.default.fileExists(atPath: database), "the jobs were kept in the SQLite file")
    }
}
