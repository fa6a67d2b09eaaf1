import Foundation
import MizanCore
import MizanProvider
import Testing

@Suite("mizan-mock-provider as a process")
struct MockProviderProcessTests {
    @Test func servesOnAFreePortAndStopsOnSIGTERM() async throws {
        let child = try ChildProcess("mizan-mock-provider", arguments: ["--port", "0", "--models", "m-a,m-b", "--tokens", "3"])
        let port = try await child.waitForOutput(#"listening on http://127\.0\.0\.1:(\d+)"#)
        let endpoint = ProviderEndpoint(baseURL: "http://127.0.0.1:\(port)/v1")
        let models = try await ProviderClient.shared.models(endpoint: endpoint)
        #expect(models.data.map(\.id) == ["m-a", "m-b"])
        let body = Data(#"{"model":"m-b","messages":[{"role":"user","content":"hi"}]}"#.utf8)
        let response = try await ProviderClient.shared.chatCompletion(body, endpoint: endpoint)
        #expect(response.usage?.completionTokens == 3)
        let status = try await child.terminate()
        #expect(status == 0, "a graceful shutdown exits 0: \(child.output)")
    }

    @Test func rejectsBadFlagsWithAMessage() async throws {
        let child = try ChildProcess("mizan-mock-provider", arguments: ["--tokens=-4"])
        for _ in 0..<500 where child.isRunning { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!child.isRunning)
        #expect(child.terminationStatus != 0)
        #expect(child.output.contains("--tokens must not be negative"))
    }
}
