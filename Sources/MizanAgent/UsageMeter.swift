import Foundation
import MizanCore

/// Watches a stream's event data for the provider's usage chunk; without one, estimates.
struct UsageMeter {
    let requestBytes: Int
    private var reported: ChatUsage?
    private var bytes = 0

    init(requestBytes: Int) { self.requestBytes = requestBytes }

    private struct Probe: Decodable { var usage: ChatUsage? }

    mutating func observe(_ data: String) {
        guard data != "[DONE]" else { return }
        bytes += data.utf8.count
        if data.contains("\"usage\""), let probe = try? JSONDecoder().decode(Probe.self, from: Data(data.utf8)), let usage = probe.usage {
            reported = usage
        }
    }

    var usage: TokenUsage {
        if let reported { return TokenUsage(promptTokens: reported.promptTokens, completionTokens: reported.completionTokens, source: .provider) }
        return TokenUsage(promptTokens: max(1, requestBytes / 4), completionTokens: bytes / 150, source: .estimated)
    }
}
