import Foundation
import Testing

@Suite("The official openai Python SDK as a client")
struct OpenAISDKTests {
    /// A Python with the `openai` package (see ``TestPython``).
    static func python() async throws -> URL {
        try await TestPython.python(requiring: ["openai"])
    }

    @Test func chatStreamModelsAndAuthenticationError() async throws {
        let python = try await Self.python()
        let (mock, mockURL) = try await startMock(["--tokens", "4"])
        let routes = try writeRoutes(#"{"routes":[{"model":"sdk-model","baseURL":"\#(mockURL)/v1","upstreamModel":"mock-model"}]}"#)
        let (gateway, url) = try await startGateway(["--routes", routes])
        let (_, key) = try await createKey(gateway: url)
        let script = TestPython.packageRoot.appendingPathComponent("Tests/sdk/openai_sdk_check.py")
        let run = try ChildProcess(
            executable: python,
            arguments: [script.path],
            environment: ["MIZAN_BASE_URL": url, "MIZAN_API_KEY": key, "MIZAN_MODEL": "sdk-model"]
        )
        let status = try await run.waitForExit(timeout: .seconds(120))
        #expect(status == 0, "\(run.output)")
        #expect(run.output.contains("openai sdk check passed"))
        _ = try await gateway.terminate()
        _ = try await mock.terminate()
    }
}
