import Foundation
import Hummingbird
import MizanCore
import MizanMockProvider
import MizanProvider
import MizanTestSupport
import Synchronization
import Testing

/// Runs a mock provider on a free loopback port for the duration of `body`.
@discardableResult
func withMockProvider<T: Sendable>(
    _ configuration: MockProvider.Configuration = .init(),
    _ body: @Sendable (ProviderEndpoint) async throws -> T
) async throws -> T {
    try await withServer({ MockProvider.application(configuration, onServerRunning: $0) }) { port in
        try await body(ProviderEndpoint(baseURL: "http://127.0.0.1:\(port)/v1", apiKey: configuration.apiKey))
    }
}

func chatBody(model: String = "mock-model", stream: Bool = false, usage: Bool = false, extra: String = "") -> Data {
    let options = usage ? #","stream_options":{"include_usage":true}"# : ""
    return Data(#"{"model":"\#(model)","messages":[{"role":"user","content":"two words"}],"stream":\#(stream)\#(options)\#(extra)}"#.utf8)
}

@Suite("Provider client against the mock provider")
struct ProviderClientTests {
    let client = ProviderClient.shared

    @Test func listsModels() async throws {
        try await withMockProvider(.init(models: ["a", "b"])) { endpoint in
            let list = try await client.models(endpoint: endpoint)
            #expect(list.data.map(\.id) == ["a", "b"])
            #expect(list.object == "list")
        }
    }

    @Test func completesWithUsage() async throws {
        try await withMockProvider(.init(tokens: 5)) { endpoint in
            let response = try await client.chatCompletion(chatBody(extra: #","temperature":0.2"#), endpoint: endpoint)
            let completion = try JSONDecoder().decode(ChatCompletionResponse.self, from: response.body)
            #expect(completion.choices.first?.message.content?.split(separator: " ").count == 5)
            #expect(response.usage?.completionTokens == 5)
            #expect(response.usage?.promptTokens == completion.usage?.promptTokens)
        }
    }

    @Test func streamsChunksThenDone() async throws {
        try await withMockProvider(.init(tokens: 4)) { endpoint in
            let events = try await client.streamChatCompletion(chatBody(stream: true, usage: true), endpoint: endpoint)
            var collected: [String] = []
            for try await event in events { collected.append(event) }
            #expect(collected.last == "[DONE]")
            let chunks = try collected.dropLast().map { try JSONDecoder().decode(ChatCompletionChunk.self, from: Data($0.utf8)) }
            let text = chunks.compactMap { $0.choices.first?.delta.content }.joined()
            #expect(text.split(separator: " ").count == 4)
            #expect(chunks.last?.usage?.completionTokens == 4, "a final usage chunk when include_usage is set")
            #expect(chunks.dropLast().allSatisfy { $0.usage == nil })
        }
    }

    @Test func unknownModelAndBadBodyAreNotRetryable() async throws {
        try await withMockProvider { endpoint in
            await #expect {
                _ = try await client.chatCompletion(chatBody(model: "nope"), endpoint: endpoint)
            } throws: { error in
                guard let error = error as? ProviderError else { return false }
                return error.kind == .status(404) && !error.isRetryable && error.detail.contains("model_not_found")
            }
            await #expect {
                _ = try await client.chatCompletion(Data("{".utf8), endpoint: endpoint)
            } throws: { error in
                (error as? ProviderError)?.kind == .status(400)
            }
        }
    }

    @Test(arguments: [500, 503, 429])
    func serverFailuresAreRetryable(status: Int) async throws {
        try await withMockProvider(.init(failureStatus: status)) { endpoint in
            await #expect {
                _ = try await client.chatCompletion(chatBody(), endpoint: endpoint)
            } throws: { error in
                guard let error = error as? ProviderError else { return false }
                return error.kind == .status(status) && error.isRetryable
                    && error.mizanError.httpStatus == (status == 429 ? 429 : 502)
                    && !error.mizanError.message.contains("told to fail")
            }
        }
    }

    @Test func refusedConnectionIsRetryable() async throws {
        let port = try await withMockProvider { endpoint in endpoint.baseURL }
        // The mock has stopped: nothing listens on its port any more.
        await #expect {
            _ = try await client.chatCompletion(chatBody(), endpoint: ProviderEndpoint(baseURL: port))
        } throws: { error in
            guard let error = error as? ProviderError else { return false }
            return error.kind == .connect && error.isRetryable
        }
    }

    @Test func apiKeyIsSent() async throws {
        _ = try await withMockProvider(.init(apiKey: "sk-test")) { endpoint in
            _ = try await client.chatCompletion(chatBody(), endpoint: endpoint)
            var keyless = endpoint
            keyless.apiKey = nil
            await #expect {
                _ = try await client.models(endpoint: keyless)
            } throws: { error in
                (error as? ProviderError)?.kind == .status(401)
            }
        }
    }

    @Test func totalTimeoutBoundsTheCall() async throws {
        try await withMockProvider(.init(latency: .seconds(20))) { endpoint in
            var hurried = endpoint
            hurried.totalTimeout = .milliseconds(200)
            let started = ContinuousClock.now
            await #expect {
                _ = try await client.chatCompletion(chatBody(), endpoint: hurried)
            } throws: { error in
                (error as? ProviderError)?.kind == .timeout
            }
            // Far below the mock's 20 s: the limit cut the call (generous for a loaded machine).
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }

    @Test func cancellingAStreamStopsIt() async throws {
        // A stream of 100 s (2,000 tokens, one per 50 ms): bounds generous for a loaded machine.
        try await withMockProvider(.init(tokens: 2_000, tokenInterval: .milliseconds(50))) { endpoint in
            let seen = EventCount()
            let reader = Task { () -> (count: Int, error: (any Error)?) in
                var count = 0
                do {
                    for try await _ in try await client.streamChatCompletion(chatBody(stream: true), endpoint: endpoint) {
                        count += 1
                        seen.value.store(count, ordering: .relaxed)
                    }
                } catch {
                    return (count, error)
                }
                return (count, nil)
            }
            // Cancel once the stream runs (events arrived), well before its 2,000 tokens.
            try await waitUntil("the first events", timeout: .seconds(20)) { seen.value.load(ordering: .relaxed) > 0 }
            let cancelled = ContinuousClock.now
            reader.cancel()
            let outcome = await reader.value
            #expect(outcome.count > 0, "events arrived before the cancel (the stream ran): \(String(describing: outcome.error))")
            #expect(outcome.count < 2_000, "the stream stopped before its end")
            #expect(ContinuousClock.now - cancelled < .seconds(10), "the stream stopped soon after the cancel, not at its end")
        }
    }
}

/// Events a reader has seen so far, read from another task.
final class EventCount: Sendable {
    let value = Atomic<Int>(0)
}
