import Foundation
import MizanCore
import Testing

/// What Ollama, vLLM, llama.cpp's `llama-server`, llama-cpp-python and LM Studio answer, decoded
/// as the agent (model discovery) and the gateway (stream relay, usage) do: only what Mizan
/// needs is read, and the rest is tolerated.
@Suite("Real servers' answers")
struct RealServerFixturesTests {
    static let servers = ["ollama", "vllm", "llama-server", "llama-cpp-python", "lm-studio"]
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func fixture(_ name: String) throws -> Data {
        try Data(contentsOf: folder.appendingPathComponent(name))
    }

    @Test(arguments: servers)
    func modelListsDecodeToTheirIDs(_ server: String) throws {
        let list = try JSONDecoder().decode(ModelList.self, from: Self.fixture("\(server)-models.json"))
        let raw = try #require(try JSONSerialization.jsonObject(with: Self.fixture("\(server)-models.json")) as? [String: Any])
        let ids = (raw["data"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
        #expect(!ids.isEmpty)
        #expect(list.data.map(\.id) == ids)
        #expect(list.data.allSatisfy { $0.object == "model" })
    }

    @Test func aModelListSkipsEntriesWithoutAnIDAndNeedsNoCreatedOrOwner() throws {
        let body = #"{"data":[{"id":"a"},{"name":"no id"},{"id":7},{"id":"b","created":1.7e9,"owned_by":null}]}"#
        let list = try JSONDecoder().decode(ModelList.self, from: Data(body.utf8))
        #expect(list.data.map(\.id) == ["a", "b"])
        #expect(list.data[1].created == 1_700_000_000 && list.data[1].ownedBy == "")
        #expect(throws: (any Error).self) { try JSONDecoder().decode(ModelList.self, from: Data(#"{"object":"list"}"#.utf8)) }
    }

    @Test(arguments: servers)
    func chatStreamsRelayAndAddUp(_ server: String) throws {
        var parser = ServerSentEventParser()
        // Fed in small pieces, as a network delivers them.
        let bytes = [UInt8](try Self.fixture("\(server)-chat-stream.txt"))
        var events: [String] = []
        for start in stride(from: 0, to: bytes.count, by: 7) { events += parser.feed(bytes[start..<min(bytes.count, start + 7)]) }
        if let last = parser.finish() { events.append(last) }
        #expect(events.allSatisfy { SSEEvent.unpack($0).name == nil }, "chat events are unnamed")
        var transcript = StreamTranscript()
        var meter = StreamUsageMeter(requestBytes: 100)
        for event in events {
            transcript.observe(event)
            meter.observe(event)
        }
        let completion = try #require(try JSONSerialization.jsonObject(with: transcript.completion()) as? [String: Any])
        let message = (completion["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any]
        #expect(message?["content"] as? String == "Hello there")
        // Usage: the server's when it sends it (with include_usage), else an estimate.
        let reports = events.contains { $0.contains("\"usage\"") }
        #expect(meter.usage.source == (reports ? .provider : .estimated))
        if reports { #expect(meter.usage.promptTokens == 26 && meter.usage.completionTokens == 2) }
    }

    @Test func namedEventsKeepTheirNamesAndFrameBack() {
        var parser = ServerSentEventParser()
        let stream = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n: a comment\nevent: ping\ndata: {}\n\ndata: plain\n\n"
        let events = parser.feed(Array(stream.utf8))
        #expect(events.map { SSEEvent.unpack($0).name } == ["message_start", "ping", nil])
        #expect(events.map { SSEEvent.data(of: $0) } == [#"{"type":"message_start"}"#, "{}", "plain"])
        #expect(SSEEvent.frame(events[0]) == "event: message_start\ndata: {\"type\":\"message_start\"}\n\n")
        #expect(SSEEvent.frame("a\nb") == "data: a\ndata: b\n\n")
        // A name does not outlive its event, and an event with no data is not dispatched.
        #expect(parser.feed(Array("event: lone\n\ndata: x\n\n".utf8)) == ["x"])
    }

    @Test func usageIsReadInEveryEndpointsShape() {
        let anthropic = [
            #"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":12,"output_tokens":1}}}"#,
            #"{"type":"content_block_delta","delta":{"type":"text_delta","text":"hi"}}"#,
            #"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}"#,
        ]
        var meter = StreamUsageMeter(requestBytes: 10)
        for data in anthropic { meter.observe(SSEEvent.pack(name: "x", data: data)) }
        #expect(meter.usage == TokenUsage(promptTokens: 12, completionTokens: 7, source: .provider))

        var responses = StreamUsageMeter(requestBytes: 10)
        responses.observe(SSEEvent.pack(name: "response.created", data: #"{"type":"response.created","response":{"usage":null}}"#))
        responses.observe(
            SSEEvent.pack(
                name: "response.completed",
                data: #"{"type":"response.completed","response":{"usage":{"input_tokens":5,"output_tokens":3}}}"#
            ))
        #expect(responses.usage == TokenUsage(promptTokens: 5, completionTokens: 3, source: .provider))

        let embeddings = Data(#"{"object":"list","data":[],"usage":{"prompt_tokens":9,"total_tokens":9}}"#.utf8)
        #expect(ReportedUsage.of(answer: embeddings, endpoint: .embeddings) == ChatUsage(promptTokens: 9, completionTokens: 0))
        #expect(ReportedUsage.of(answer: embeddings, endpoint: .completions) == nil, "a completion without output tokens is estimated")
        let message = Data(#"{"type":"message","content":"odd","usage":{"input_tokens":4,"output_tokens":2}}"#.utf8)
        #expect(ReportedUsage.of(answer: message, endpoint: .messages) == ChatUsage(promptTokens: 4, completionTokens: 2))
        #expect(ReportedUsage.of(answer: Data(#"{"usage":{"prompt_tokens":"many"}}"#.utf8), endpoint: .chatCompletions) == nil)
        // Only the usage objects are read: a usage of the wrong shape gives way to a nested one,
        // whatever else the body holds, and a body that is not an object reports nothing.
        let odd = Data(#"{"usage":"n/a","message":{"usage":{"input_tokens":7,"output_tokens":1}},"content":[{"x":"}"}]}"#.utf8)
        #expect(ReportedUsage.counts(in: odd)! == (7, 1))
        #expect(ReportedUsage.counts(in: Data(#"{"message":"text","usage":{"prompt_tokens":2,"completion_tokens":3}}"#.utf8))! == (2, 3))
        #expect(ReportedUsage.counts(in: Data("[1,2]".utf8)) == nil)
        #expect(ReportedUsage.counts(in: Data(#"{"usage":{"prompt_tokens":2"#.utf8)) == nil)
        #expect(ReportedUsage.counts(in: Data(#"{"choices":[]}"#.utf8)) == nil)
    }

    @Test func clientRequestsAreCheckedPerEndpoint() throws {
        let embedding = try ClientRequest(endpoint: .embeddings, body: Data(#"{"model":"e","input":["a"]}"#.utf8))
        #expect(embedding.model == "e" && !embedding.stream)
        #expect(throws: MizanError.self) { try ClientRequest(endpoint: .embeddings, body: Data(#"{"model":"e"}"#.utf8)) }
        #expect(throws: MizanError.self) {
            try ClientRequest(endpoint: .embeddings, body: Data(#"{"model":"e","input":"a","stream":true}"#.utf8))
        }
        #expect(throws: MizanError.self) { try ClientRequest(endpoint: .messages, body: Data(#"{"model":"m","messages":[]}"#.utf8)) }
        #expect(throws: MizanError.self) {
            try ClientRequest(endpoint: .responses, body: Data(#"{"model":"r","input":"x","stream":"yes"}"#.utf8))
        }
        #expect(throws: MizanError.self) {
            try ClientRequest(endpoint: .completions, body: Data(#"{"model":"c","prompt":"x","prompt":"y"}"#.utf8))
        }
        let response = try ClientRequest(endpoint: .responses, body: Data(#"{"model":"r","input":"x","stream":true,"store":false}"#.utf8))
        #expect(response.stream)
        #expect(String(decoding: response.withModel("up"), as: UTF8.self) == #"{"model":"up","input":"x","stream":true,"store":false}"#)
        #expect(Endpoint(configured: "/v1/embeddings") == .embeddings && Endpoint(configured: "chat/completions") == .chatCompletions)
        #expect(Endpoint(configured: "images") == nil)
    }
}
