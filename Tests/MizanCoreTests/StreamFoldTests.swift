import Foundation
import Testing

@testable import MizanCore

@Suite("Streams folded into the JSON answer they amount to")
struct StreamFoldTests {
    static func fold(_ endpoint: Endpoint, _ events: [String]) throws -> [String: Any] {
        var transcript = StreamTranscript(endpoint: endpoint)
        for event in events { transcript.observe(event) }
        return try #require(try JSONSerialization.jsonObject(with: transcript.completion()) as? [String: Any])
    }

    @Test func chatKeepsContentRefusalToolCallsLogprobsFingerprintAndUsage() throws {
        let object = try Self.fold(
            .chatCompletions,
            [
                #"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"logprobs":{"content":[{"token":"Hel","logprob":-0.1}]}}]}"#,
                #"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"content":"lo"},"logprobs":{"content":[{"token":"lo","logprob":-0.2}]}}]}"#,
                #"{"id":"c1","choices":[{"index":1,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get","arguments":"{\"q\":"}}]}}]}"#,
                #"{"id":"c1","choices":[{"index":1,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"finish_reason":"tool_calls"}]}"#,
                #"{"id":"c1","choices":[{"index":2,"delta":{"refusal":"No."},"finish_reason":"stop"}]}"#,
                #"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
                #"{"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
                "[DONE]",
            ])
        #expect(object["object"] as? String == "chat.completion")
        #expect(object["id"] as? String == "c1" && object["model"] as? String == "m" && object["created"] as? Int == 7)
        #expect(object["system_fingerprint"] as? String == "fp_1")
        #expect((object["usage"] as? [String: Any])?["total_tokens"] as? Int == 7)
        let choices = try #require(object["choices"] as? [[String: Any]])
        #expect(choices.count == 3)
        let first = try #require(choices[0]["message"] as? [String: Any])
        #expect(first["content"] as? String == "Hello" && first["role"] as? String == "assistant")
        #expect(choices[0]["finish_reason"] as? String == "stop")
        let logprobs = try #require((choices[0]["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
        #expect(logprobs.map { $0["token"] as? String } == ["Hel", "lo"])
        let call = try #require(((choices[1]["message"] as? [String: Any])?["tool_calls"] as? [[String: Any]])?.first)
        #expect(call["id"] as? String == "call_a")
        #expect((call["function"] as? [String: Any])?["arguments"] as? String == #"{"q":1}"#)
        #expect(choices[1]["finish_reason"] as? String == "tool_calls")
        #expect((choices[2]["message"] as? [String: Any])?["refusal"] as? String == "No.")
    }

    @Test func completionsKeepTextLogprobArraysAndUsage() throws {
        let object = try Self.fold(
            .completions,
            [
                #"{"id":"t1","object":"text_completion","created":3,"model":"m","choices":[{"index":0,"text":"a ","logprobs":{"tokens":["a"],"token_logprobs":[-1.5],"top_logprobs":[{"a":-1.5}],"text_offset":[0]},"finish_reason":null}]}"#,
                #"{"id":"t1","object":"text_completion","created":3,"model":"m","choices":[{"index":0,"text":"b","logprobs":{"tokens":["b"],"token_logprobs":[-0.5],"top_logprobs":[{"b":-0.5}],"text_offset":[2]},"finish_reason":"length"}]}"#,
                #"{"id":"t1","object":"text_completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
                "[DONE]",
            ])
        #expect(object["object"] as? String == "text_completion")
        let choice = try #require((object["choices"] as? [[String: Any]])?.first)
        #expect(choice["text"] as? String == "a b" && choice["finish_reason"] as? String == "length")
        let logprobs = try #require(choice["logprobs"] as? [String: Any])
        #expect(logprobs["tokens"] as? [String] == ["a", "b"])
        #expect(logprobs["text_offset"] as? [Int] == [0, 2])
        #expect((object["usage"] as? [String: Any])?["completion_tokens"] as? Int == 2)
    }

    @Test func responsesAreTheirCompletedResponse() throws {
        let object = try Self.fold(
            .responses,
            [
                SSEEvent.pack(
                    name: "response.created", data: #"{"type":"response.created","response":{"id":"r1","status":"in_progress"}}"#),
                SSEEvent.pack(name: "response.output_text.delta", data: #"{"type":"response.output_text.delta","delta":"hi"}"#),
                SSEEvent.pack(
                    name: "response.completed",
                    data:
                        #"{"type":"response.completed","response":{"id":"r1","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"hi"}]}],"usage":{"input_tokens":3,"output_tokens":1}}}"#
                ),
            ])
        #expect(object["id"] as? String == "r1" && object["status"] as? String == "completed")
        #expect((object["usage"] as? [String: Any])?["output_tokens"] as? Int == 1)
    }

    @Test func messagesKeepTheirBlocksStopReasonAndUsage() throws {
        let object = try Self.fold(
            .messages,
            [
                SSEEvent.pack(
                    name: "message_start",
                    data:
                        #"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"usage":{"input_tokens":4,"output_tokens":1}}}"#
                ),
                SSEEvent.pack(
                    name: "content_block_start",
                    data: #"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
                SSEEvent.pack(
                    name: "content_block_delta",
                    data: #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi "}}"#),
                SSEEvent.pack(
                    name: "content_block_delta",
                    data: #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"there"}}"#),
                SSEEvent.pack(
                    name: "content_block_start",
                    data:
                        #"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"tu_1","name":"get","input":{}}}"#
                ),
                SSEEvent.pack(
                    name: "content_block_delta",
                    data: #"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"q\": 2}"}}"#),
                SSEEvent.pack(
                    name: "message_delta",
                    data: #"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":9}}"#),
                SSEEvent.pack(name: "message_stop", data: #"{"type":"message_stop"}"#),
            ])
        #expect(object["id"] as? String == "msg_1" && object["stop_reason"] as? String == "tool_use")
        let usage = try #require(object["usage"] as? [String: Any])
        #expect(usage["input_tokens"] as? Int == 4 && usage["output_tokens"] as? Int == 9)
        let content = try #require(object["content"] as? [[String: Any]])
        #expect(content.first?["text"] as? String == "Hi there")
        #expect((content.last?["input"] as? [String: Any])?["q"] as? Int == 2)
    }

    @Test func theStreamingBodyAsksForAStreamAndKeepsEveryOtherByte() throws {
        let body = Data(#"{"model":"m", "temperature": 0.70, "stream": false,"messages":[]}"#.utf8)
        let streaming = try #require(StreamTranscript.streamingBody(body, endpoint: .chatCompletions))
        #expect(
            String(decoding: streaming, as: UTF8.self)
                == #"{"model":"m", "temperature": 0.70, "stream": true,"messages":[],"stream_options":{"include_usage":true}}"#)
        let responses = try #require(StreamTranscript.streamingBody(Data(#"{"model":"m","input":"x"}"#.utf8), endpoint: .responses))
        #expect(String(decoding: responses, as: UTF8.self) == #"{"model":"m","input":"x","stream":true}"#)
        #expect(StreamTranscript.streamingBody(Data("[1]".utf8), endpoint: .chatCompletions) == nil)
    }

    @Test func aParserDropsAnEventLongerThanItsBoundAndSaysSo() {
        var parser = ServerSentEventParser(maxEventBytes: 64)
        #expect(parser.feed(Array("data: short\n\n".utf8)) == ["short"])
        #expect(!parser.tooLarge)
        _ = parser.feed(Array(("data: " + String(repeating: "x", count: 100)).utf8))
        #expect(parser.tooLarge)
    }

    /// The hand reader of plain chunks reads escapes as JSON does, and the answer it writes is
    /// JSON that reads back to the same text.
    @Test func plainChunksWithEscapesFoldToTheSameText() throws {
        let pieces = [#"Line one\nline \"two\""#, #" caf\u00e9 \ud83d\ude00"#, #" tab\tend\\"#]
        var events = [
            #"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#
        ]
        for piece in pieces {
            events.append(
                #"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"\#(piece)"},"logprobs":null,"finish_reason":null}]}"#
            )
        }
        events.append(#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#)
        let object = try Self.fold(.chatCompletions, events)
        let content = try #require(((object["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String)
        let expected = pieces.map { piece in
            (try? JSONSerialization.jsonObject(with: Data("\"\(piece)\"".utf8), options: [.fragmentsAllowed]) as? String) ?? "?"
        }.joined()
        #expect(content == expected && content.contains("😀") && content.contains("one\nline \"two\""))
    }
}
