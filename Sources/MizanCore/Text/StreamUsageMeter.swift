import Foundation

/// Watches a stream's events for the usage the provider reports; without it, estimates usage
/// from the sizes of the request and of the streamed events. The gateway (streams from a
/// provider route) and the agent (streams from its local server) count the same way.
///
/// Reported usage is read where each endpoint puts it (``ReportedUsage``): a final chunk's
/// `usage` (chat, completions), `response.completed` (Responses), `message_start` for the input
/// and `message_delta` for the output (Anthropic Messages); a later count replaces an earlier one.
public struct StreamUsageMeter: Sendable {
    /// The request body's size in bytes.
    public let requestBytes: Int
    private var promptTokens: Int?
    private var completionTokens: Int?
    private var bytes = 0

    /// Starts a meter for a request of `requestBytes` bytes.
    public init(requestBytes: Int) { self.requestBytes = requestBytes }

    /// The usage the provider reported in the stream, if it reported both counts.
    public var reported: ChatUsage? {
        guard let promptTokens, let completionTokens else { return nil }
        return ChatUsage(promptTokens: promptTokens, completionTokens: completionTokens)
    }

    /// Counts one event (in ``SSEEvent``'s carried form; `[DONE]` is ignored).
    public mutating func observe(_ event: String) {
        let data = SSEEvent.data(of: event)
        guard data != "[DONE]" else { return }
        bytes += data.utf8.count
        guard Self.mentionsUsage(data), let counts = ReportedUsage.counts(in: Data(data.utf8)) else { return }
        if let prompt = counts.prompt { promptTokens = prompt }
        if let completion = counts.completion { completionTokens = completion }
    }

    /// The usage so far: the provider's (when its counts are plausible), or an estimate (about four bytes per prompt token;
    /// each chunk carries ~150 bytes of JSON around its content).
    public var usage: TokenUsage {
        if let reported, let usage = TokenUsage(reported: reported) { return usage }
        return TokenUsage(promptTokens: Self.estimateTokens(requestBytes), completionTokens: max(0, bytes / 150), source: .estimated)
    }

    /// Whether the data holds `"usage"` (byte-wise: every event passes here).
    static func mentionsUsage(_ data: String) -> Bool {
        let needle: [UInt8] = Array(#""usage""#.utf8)
        var matched = 0
        for byte in data.utf8 {
            if byte == needle[matched] {
                matched += 1
                if matched == needle.count { return true }
            } else {
                matched = byte == needle[0] ? 1 : 0
            }
        }
        return false
    }

    /// A rough token count of a text of `bytes` bytes (about four bytes per token).
    public static func estimateTokens(_ bytes: Int) -> Int { max(1, bytes / 4) }
}
