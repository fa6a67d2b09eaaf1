import Foundation
import Testing

@Suite("The official openai Python SDK as a client")
struct OpenAISDKTests {
    /// The package's root folder.
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A Python with the `openai` package: `MIZAN_OPENAI_PYTHON`, or a virtual environment in
    /// `.build/openai-venv` (made here, with `pip install openai`, when missing; `.ci/run` makes it first).
    static func python() async throws -> URL {
        if let path = ProcessInfo.processInfo.environment["MIZAN_OPENAI_PYTHON"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        let venv = packageRoot.appendingPathComponent(".build/openai-venv")
        let python = venv.appendingPathComponent("bin/python")
        if FileManager.default.isExecutableFile(atPath: python.path) {
            let probe = try ChildProcess(executable: python, arguments: ["-c", "import openai"])
            if try await probe.waitForExit() == 0 { return python }
        }
        let create = try ChildProcess(executable: URL(fileURLWithPath: "/usr/bin/env"), arguments: ["python3", "-m", "venv", venv.path])
        guard try await create.waitForExit() == 0 else { throw ChildProcessError(message: "python3 -m venv failed: \(create.output)") }
        let install = try ChildProcess(executable: venv.appendingPathComponent("bin/pip"), arguments: ["install", "--quiet", "openai"])
        guard try await install.waitForExit(timeout: .seconds(600)) == 0 else {
            throw ChildProcessError(message: "pip install openai failed: \(install.output)")
        }
        return python
    }

    @Test func chatStreamModelsAndAuthenticationError() async throws {
        let python = try await Self.python()
        let (mock, mockURL) = try await startMock(["--tokens", "4"])
        let routes = try writeRoutes(#"{"routes":[{"model":"sdk-model","baseURL":"\#(mockURL)/v1","upstreamModel":"mock-model"}]}"#)
        let (gateway, url) = try await startGateway(["--routes", routes])
        let (_, key) = try await createKey(gateway: url)
        let script = Self.packageRoot.appendingPathComponent("Tests/sdk/openai_sdk_check.py")
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
