import Foundation
import MizanCore
import Testing

@Suite("Chat completion request")
struct ChatCompletionRequestTests {
    @Test func keepsUnknownFieldsVerbatimAndRewritesOnlyModel() throws {
        let text =
            #"{ "model" : "public-model", "temperature":0.30000000000000004, "tools":[{"type":"function","function":{"name":"f","#
            + #""parameters":{"model":"inner"}}}], "messages":[{"role":"user","content":"say \"model\""}], "#
            + #""response_format":{"type":"json_object"}, "n":12345678901234567890}"#
        let request = try ChatCompletionRequest(body: Data(text.utf8))
        #expect(request.model == "public-model")
        #expect(request.messages == [ChatMessage(role: "user", content: "say \"model\"")])
        let rewritten = String(decoding: request.withModel("upstream/model-7b"), as: UTF8.self)
        #expect(
            rewritten == text.replacingOccurrences(of: #""public-model""#, with: #""upstream\/model-7b""#)
                || rewritten == text.replacingOccurrences(of: #""public-model""#, with: #""upstream/model-7b""#))
        #expect(rewritten.contains(#""parameters":{"model":"inner"}"#))
        #expect(rewritten.contains("0.30000000000000004"))
        #expect(rewritten.contains("12345678901234567890"))
        #expect(request.withModel("public-model") == request.body)
    }

    @Test func exposesKnownFields() throws {
        let body =
            #"{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"max_completion_tokens":6,"#
            + #""messages":[{"role":"system","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},"#
            + #"{"role":"assistant","content":null}]}"#
        let request = try ChatCompletionRequest(body: Data(body.utf8))
        #expect(request.stream)
        #expect(request.includeUsageInStream)
        #expect(request.maxTokens == 5)
        #expect(request.maxCompletionTokens == 6)
        #expect(request.messages.map(\.content) == ["a\nb", nil])
    }

    @Test(arguments: [
        ("not json", "must be a JSON object"),
        ("{\"model\":", "not valid JSON"),
        ("[1,2]", "must be a JSON object"),
        (#"{"messages":[]}"#, "'model'"),
        (#"{"model":"m"}"#, "'messages'"),
        (#"{"model":5,"messages":[]}"#, "Invalid type for 'model'"),
        (#"{"model":"m","messages":"hi"}"#, "Invalid type for 'messages'"),
        (#"{"model":"m","messages":[],"stream":"yes"}"#, "Invalid type for 'stream'"),
        (#"{"model":"m","messages":[{"content":"x"}]}"#, "Missing required parameter: 'messages.0.role'"),
        (#"{"model":"m","messages":[],"max_tokens":1.5}"#, "Invalid value for 'max_tokens'"),
    ])
    func rejectsBadInput(body: String, message: String) {
        #expect {
            _ = try ChatCompletionRequest(body: Data(body.utf8))
        } throws: { error in
            guard let error = error as? MizanError else { return false }
            return error.code == .badRequest && error.httpStatus == 400 && error.message.contains(message)
        }
    }

    @Test func errorEnvelopeHasOpenAIShape() throws {
        let error = MizanError(.modelNotFound, "The model 'x' does not exist.")
        #expect(error.httpStatus == 404)
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(error.envelope)) as? [String: [String: String]]
        #expect(json?["error"]?["message"] == "The model 'x' does not exist.")
        #expect(json?["error"]?["type"] == "invalid_request_error")
        #expect(json?["error"]?["code"] == "model_not_found")
    }

    @Test func timeOrderedIDsSortByTime() {
        let earlier = JobID(at: Date(timeIntervalSince1970: 1_000))
        let later = JobID(at: Date(timeIntervalSince1970: 1_000.002))
        #expect(earlier < later)
        #expect(JobID(earlier.description) == earlier)
        #expect(earlier.description.dropFirst(14).first == "7")
    }
}

@Suite("Stream transcript")
struct StreamTranscriptTests {
    @Test func foldsContentToolCallsAndUsageAndReplaysThem() throws {
        var transcript = StreamTranscript()
        let events = [
            #"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"#
                + #""delta":{"role":"assistant","content":"Hel"}}]}"#,
            #"{"id":"c1","choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            #"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t1","type":"function","#
                + #""function":{"name":"get","arguments":"{\"a\""}}]}}]}"#,
            #"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"#
                + #""finish_reason":"tool_calls"}]}"#,
            #"{"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
            "not json", "[DONE]",
        ]
        for event in events { transcript.observe(event) }
        let completion = try JSONDecoder().decode(ChatCompletionResponse.self, from: transcript.completion())
        #expect(completion.id == "c1" && completion.model == "m" && completion.created == 7)
        #expect(completion.choices.first?.message.content == "Hello")
        #expect(completion.choices.first?.finishReason == "tool_calls")
        #expect(completion.usage?.completionTokens == 2)
        let object = try JSONSerialization.jsonObject(with: transcript.completion()) as? [String: Any]
        let call = ((((object?["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["tool_calls"]) as? [[String: Any]])?
            .first
        #expect((call?["function"] as? [String: Any])?["arguments"] as? String == #"{"a":1}"#)

        let replay = try #require(StreamTranscript.replay(transcript.completion()))
        #expect(replay.last == "[DONE]" && replay.count == 3)
        let chunk = try JSONDecoder().decode(ChatCompletionChunk.self, from: Data(replay[0].utf8))
        #expect(chunk.choices.first?.delta.content == "Hello")
        #expect(StreamTranscript().completion().isEmpty)
        #expect(StreamTranscript.replay(Data("nope".utf8)) == nil)
    }
}
