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
