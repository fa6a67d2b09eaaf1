import Foundation
import Hummingbird
import MizanCore

/// Turns upstream event data back into SSE frames and keeps what usage accounting needs: the
/// provider's usage chunk if one comes, else an estimate from the streamed content.
struct StreamRelay {
    let chat: ChatCompletionRequest
    private(set) var reported: ChatUsage?
    private var contentBytes = 0

    init(chat: ChatCompletionRequest) { self.chat = chat }

    private struct UsageProbe: Decodable { var usage: ChatUsage? }

    /// The SSE frame carrying `data`.
    mutating func frame(_ data: String) -> ByteBuffer {
        if data != "[DONE]" {
            contentBytes += data.utf8.count
            if data.contains("\"usage\":{") || data.contains("\"usage\": {"),
                let probe = try? JSONDecoder().decode(UsageProbe.self, from: Data(data.utf8)), let usage = probe.usage
            {
                reported = usage
            }
        }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(data.utf8.count + 8)
        buffer.writeString("data: ")
        buffer.writeString(data)
        buffer.writeString("\n\n")
        return buffer
    }

    /// The usage of the stream so far.
    var usage: TokenUsage {
        if let reported { return TokenUsage(promptTokens: reported.promptTokens, completionTokens: reported.completionTokens, source: .provider) }
        // Each chunk carries ~150 bytes of JSON around its content; a rough estimate is all we can give.
        return TokenUsage(promptTokens: Self.estimateTokens(chat.body.count), completionTokens: max(0, contentBytes / 150), source: .estimated)
    }

    /// A rough token count of a text of `bytes` bytes (about four bytes per token).
    static func estimateTokens(_ bytes: Int) -> Int { max(1, bytes / 4) }

    /// An error event in OpenAI's shape, sent when a stream breaks after its head went out.
    static func errorFrame(_ error: MizanError) -> ByteBuffer {
        let json = (try? JSONEncoder().encode(error.envelope)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return ByteBuffer(string: "data: \(json)\n\n")
    }
}
