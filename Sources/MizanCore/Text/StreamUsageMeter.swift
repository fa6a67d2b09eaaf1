import Foundation

/// Watches a stream's event data for the provider's usage chunk; without one, estimates
/// usage from the sizes of the request and of the streamed chunks. The gateway (streams from a
/// provider route) and the agent (streams from its local server) count the same way.
public struct StreamUsageMeter: Sendable {
    /// The request body's size in bytes.
    public let requestBytes: Int
    /// The usage the provider reported in the stream, if any.
    public private(set) var reported: ChatUsage?
    private var bytes = 0

    private struct Probe: Decodable { var usage: ChatUsage? }

    /// Starts a meter for a request of `requestBytes` bytes.
    public init(requestBytes: Int) { self.requestBytes = requestBytes }

    /// Counts one event's data (`[DONE]` is ignored).
    public mutating func observe(_ data: String) {
        guard data != "[DONE]" else { return }
        bytes += data.utf8.count
        if data.contains("\"usage\":{") || data.contains("\"usage\": {"),
            let probe = try? JSONDecoder().decode(Probe.self, from: Data(data.utf8)), let usage = probe.usage
        {
            reported = usage
        }
    }

    /// The usage so far: the provider's (when its counts are plausible), or an estimate (about four bytes per prompt token;
    /// each chunk carries ~150 bytes of JSON around its content).
    public var usage: TokenUsage {
        if let reported, let usage = TokenUsage(reported: reported) { return usage }
        return TokenUsage(promptTokens: Self.estimateTokens(requestBytes), completionTokens: max(0, bytes / 150), source: .estimated)
    }

    /// A rough token count of a text of `bytes` bytes (about four bytes per token).
    public static func estimateTokens(_ bytes: Int) -> Int { max(1, bytes / 4) }
}
