import Foundation
import MizanCore
import Testing

@Suite("Batch input files: lines read, bad lines named")
struct BatchInputTests {
    static func line(_ id: String, url: String = "/v1/chat/completions", body: String = #"{"model":"m","messages":[]}"#) -> String {
        #"{"custom_id":"\#(id)","method":"POST","url":"\#(url)","body":\#(body)}"#
    }

    @Test func readsLinesSkippingBlankOnesAndKeepsTheBodyAsSent() throws {
        let text = Self.line("a") + "\r\n\n  \n" + Self.line("b", body: #"{"model":"m", "temperature": 0.70, "input":"x"}"#)
        let lines = try BatchInput.lines(of: Data(text.utf8), maxLineBytes: 1 << 20)
        #expect(lines.map(\.number) == [1, 2])
        #expect(lines.map(\.customID) == ["a", "b"])
        #expect(String(decoding: try BatchInput.body(of: lines[1]), as: UTF8.self) == #"{"model":"m", "temperature": 0.70, "input":"x"}"#)
    }

    @Test(arguments: [
        ("{not json}", "Line 2 is not a JSON object"),
        (#"{"method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#, "Line 2 needs a custom_id"),
        (#"{"custom_id":"b","method":"GET","url":"/v1/chat/completions","body":{"model":"m"}}"#, "Line 2 needs \"method\": \"POST\""),
        (#"{"custom_id":"b","method":"POST","url":"/v1/models","body":{"model":"m"}}"#, "Line 2 has an unsupported url"),
        (#"{"custom_id":"b","method":"POST","url":"/v1/embeddings","body":{"input":"x"}}"#, "Line 2 has a body without a model"),
        (#"{"custom_id":"a","method":"POST","url":"/v1/embeddings","body":{"model":"m"}}"#, "Line 2 repeats the custom_id 'a' of line 1"),
        (#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"m","stream":true}}"#, "Line 2 asks for a stream"),
        // Found by the fuzzer: the body checked and the body sent must be the same member.
        (
            #"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":"x","body":{"model":"m"}}"#,
            "Line 2 names the member 'body' twice"
        ),
    ])
    func namesTheFirstBadLine(_ bad: String, _ message: String) throws {
        let text = Self.line("a") + "\n" + bad + "\n"
        let error = #expect(throws: MizanError.self) { try BatchInput.lines(of: Data(text.utf8), maxLineBytes: 1 << 20) }
        #expect(error?.code == .badRequest)
        #expect(error?.message.hasPrefix(message) == true, "\(error?.message ?? "")")
    }

    @Test func boundsLinesAndTheirCount() throws {
        let long = Self.line("a", body: #"{"model":"m","input":"\#(String(repeating: "x", count: 200))"}"#)
        let error = #expect(throws: MizanError.self) { try BatchInput.lines(of: Data(long.utf8), maxLineBytes: 100) }
        #expect(error?.message.hasPrefix("Line 1 is") == true)
        #expect(throws: MizanError.self) { try BatchInput.lines(of: Data("\n \n".utf8), maxLineBytes: 100) }
        let many = (0...BatchInput.maxLines).map { Self.line("\($0)") }.joined(separator: "\n")
        let tooMany = #expect(throws: MizanError.self) { try BatchInput.lines(of: Data(many.utf8), maxLineBytes: 1 << 20) }
        #expect(tooMany?.message.contains("more than 50000 requests") == true)
    }

    @Test func writesResultLinesInOpenAIsShape() throws {
        let answered = BatchInput.resultLine(customID: "x\"1", status: 200, requestID: "req", body: Data("{\"a\":\n1}".utf8), error: nil)
        let object = try #require(try JSONSerialization.jsonObject(with: answered) as? [String: Any])
        #expect(object["custom_id"] as? String == "x\"1")
        #expect((object["id"] as? String)?.hasPrefix("batch_req_") == true)
        let response = try #require(object["response"] as? [String: Any])
        #expect(response["status_code"] as? Int == 200 && response["request_id"] as? String == "req")
        #expect((response["body"] as? [String: Any])?["a"] as? Int == 1)
        #expect(object["error"] is NSNull)
        #expect(!answered.contains(UInt8(ascii: "\n")))
        let expired = BatchInput.resultLine(customID: "y", status: nil, requestID: nil, body: nil, error: ("batch_expired", "late"))
        let failed = try #require(try JSONSerialization.jsonObject(with: expired) as? [String: Any])
        #expect(failed["response"] is NSNull)
        #expect((failed["error"] as? [String: Any])?["code"] as? String == "batch_expired")
    }
}
