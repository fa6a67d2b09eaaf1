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

    @Test(arguments: [
        (["--tokens=-4"], "--tokens must not be negative"),
        (["--single-slot", "--slots", "2"], "--single-slot is one slot"),
        (["--slots", "0"], "--slots must be 1-100000"),
        (["--service-ms", "100", "--token-interval-ms", "5"], "leave out --token-interval-ms"),
        (["--cached-prefill-ms", "5"], "--cached-prefill-ms needs --prefix-cache"),
    ])
    func rejectsBadFlagsWithAMessage(arguments: [String], message: String) async throws {
        let child = try ChildProcess("mizan-mock-provider", arguments: arguments)
        for _ in 0..<500 where child.isRunning { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!child.isRunning)
        #expect(child.terminationStatus != 0)
        #expect(child.output.contains(message), "\(child.output)")
    }

    @Test func servesWithSlotsAServiceTimeAndAPrefixCache() async throws {
        let child = try ChildProcess(
            "mizan-mock-provider",
            arguments: ["--port", "0", "--tokens", "3", "--slots", "1", "--service-ms", "200", "--prefix-cache", "--latency-ms", "100"])
        let port = try await child.waitForOutput(#"listening on http://127\.0\.0\.1:(\d+)"#)
        let url = "http://127.0.0.1:\(port)"
        let body = #"{"model":"mock-model","messages":[{"role":"system","content":"s"},{"role":"user","content":"q"}]}"#
        let statuses = try await withThrowingTaskGroup(of: String?.self) { group in
            for _ in 0..<3 {
                group.addTask { try await call(.POST, "\(url)/v1/chat/completions", body: body).headers.first(name: "X-Mock-Prefix-Cache") }
            }
            return try await group.reduce(into: [String?]()) { $0.append($1) }
        }
        #expect(statuses.sorted { ($0 ?? "") < ($1 ?? "") } == ["hit", "hit", "miss"])
        let stats = try await call(.GET, "\(url)/mock/stats").json
        #expect(stats["maxInFlight"] as? Int == 1 && stats["prefixHits"] as? Int == 2 && stats["prefixMisses"] as? Int == 1, "\(stats)")
        #expect(try await child.terminate() == 0)
    }
}
