import Foundation
import MizanCore
import Testing

@Suite("Untrusted input in MizanCore: usage counts, duplicate keys, model names, safe text")
struct UntrustedInputTests {
    @Test(arguments: ["9223372036854775807", "-5", "1000000001"])
    func refusesImpossibleTokenCounts(_ count: String) throws {
        let json = #"{"promptTokens":\#(count),"completionTokens":1,"source":"provider"}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(TokenUsage.self, from: Data(json.utf8)) }
        #expect(TokenUsage(reported: ChatUsage(promptTokens: Int(count) ?? .max, completionTokens: 1)) == nil)
    }

    @Test func acceptsPlausibleTokenCountsAndSaturatesSums() throws {
        let usage = try JSONDecoder().decode(TokenUsage.self, from: Data(#"{"promptTokens":12,"completionTokens":0}"#.utf8))
        #expect(usage == TokenUsage(promptTokens: 12, completionTokens: 0, source: .provider))
        #expect(Int.max.addingSaturated(1) == .max)
        #expect(Int.min.addingSaturated(-1) == .min)
        #expect(TokenUsage(promptTokens: .max, completionTokens: .max).totalTokens == .max)
        #expect(ChatUsage(promptTokens: .max, completionTokens: .max).totalTokens == .max)
    }

    @Test(arguments: [
        #"{"model":"a","model":"b","messages":[]}"#,
        #"{"model":"a","mod\u0065l":"b","messages":[]}"#,
        #"{"messages":[],"model":"a","messages":[{"role":"user","content":"x"}]}"#,
        #"{"model":"a","messages":[],"stream":true,"stream":false}"#,
        #"{"model":"a","messages":[],"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}"#,
    ])
    func refusesDuplicateTopLevelKeys(_ body: String) {
        #expect(throws: MizanError.self) { try ChatCompletionRequest(body: Data(body.utf8)) }
    }

    @Test func allowsTheSameKeyAtOtherDepths() throws {
        let body = #"{"model":"a","messages":[{"role":"user","content":"x"},{"role":"user","content":"y"}],"metadata":{"model":"z"}}"#
        let request = try ChatCompletionRequest(body: Data(body.utf8))
        #expect(request.model == "a")
        #expect(
            String(decoding: request.withModel("b"), as: UTF8.self) == body.replacingOccurrences(of: #""model":"a""#, with: #""model":"b""#)
        )
    }

    @Test func rewritesTheModelKeyEvenWhenEscaped() throws {
        let body = #"{"mod\u0065l":"a","messages":[]}"#
        let request = try ChatCompletionRequest(body: Data(body.utf8))
        #expect(request.model == "a")
        #expect(String(decoding: request.withModel("b"), as: UTF8.self) == #"{"mod\u0065l":"b","messages":[]}"#)
    }

    @Test func boundsModelNames() throws {
        #expect(throws: MizanError.self) { try ChatCompletionRequest.checkModelName(String(repeating: "x", count: 257)) }
        #expect(throws: MizanError.self) { try ChatCompletionRequest.checkModelName("x\ny") }
        #expect(throws: MizanError.self) { try ChatCompletionRequest.checkModelName("x\u{0}") }
        try ChatCompletionRequest.checkModelName(String(repeating: "x", count: 256))
        try ChatCompletionRequest.checkModelName("meta-llama/Llama-3.1-8B-Instruct:Q4_K_M")
    }

    @Test func namesTheFieldOfAFractionalInteger() {
        do {
            _ = try ChatCompletionRequest(body: Data(#"{"model":"m","messages":[],"max_tokens":1.5}"#.utf8))
            Issue.record("a fractional max_tokens was accepted")
        } catch let error as MizanError {
            #expect(error.message == "Invalid value for 'max_tokens': expected an integer.")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func escapesEveryControlCharacter() {
        #expect(SafeText.escaped("plain text, ünïcode") == "plain text, ünïcode")
        #expect(SafeText.escaped("a\nb\r\tc\0d\u{7}e\u{2028}f\\") == #"a\nb\r\tc\0d\u{7}e\u{2028}f\\"#)
        #expect(SafeText.excerpt(String(repeating: "z", count: 500), limit: 10) == "zzzzzzzzzz…")
        for scalar in (0..<0x20).compactMap(Unicode.Scalar.init) + ["\u{7F}", "\u{85}", "\u{2029}"] {
            let escaped = SafeText.escaped("x\(scalar)y")
            #expect(!escaped.unicodeScalars.contains(scalar), "U+\(String(scalar.value, radix: 16))")
        }
    }

    @Test func aTimeLimitEndsTheWorkAndHoldsNothing() async throws {
        struct Late: Error {}
        await #expect(throws: Late.self) {
            try await withTimeLimit(.milliseconds(50), timeoutError: { Late() }) {
                try await Task.sleep(for: .seconds(30))
            }
        }
        let value = try await withTimeLimit(.seconds(30), timeoutError: { Late() }) { 42 }
        #expect(value == 42)
        let fired = Fired()
        let timer = OneShotTimer(after: .milliseconds(20)) { fired.set() }
        _ = timer
        let cancelled = OneShotTimer(after: .milliseconds(20)) { fired.setCancelled() }
        cancelled.cancel()
        try await Task.sleep(for: .milliseconds(300))
        #expect(fired.state == (true, false))
    }
}

private final class Fired: @unchecked Sendable {
    private let lock = NSLock()
    private var fired = false
    private var cancelledFired = false
    func set() { lock.withLock { fired = true } }
    func setCancelled() { lock.withLock { cancelledFired = true } }
    var state: (Bool, Bool) { lock.withLock { (fired, cancelledFired) } }
}
