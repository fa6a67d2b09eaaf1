import Foundation
import Hummingbird
import MizanCore

/// Turns upstream event data back into SSE frames and keeps what usage accounting needs: the
/// provider's usage chunk if one comes, else an estimate from the streamed content.
struct StreamRelay {
    private var meter: StreamUsageMeter

    init(chat: ChatCompletionRequest) { meter = StreamUsageMeter(requestBytes: chat.body.count) }

    /// The SSE frame carrying `data`.
    mutating func frame(_ data: String) -> ByteBuffer {
        meter.observe(data)
        var buffer = ByteBuffer()
        buffer.reserveCapacity(data.utf8.count + 8)
        buffer.writeString("data: ")
        buffer.writeString(data)
        buffer.writeString("\n\n")
        return buffer
    }

    /// The usage of the stream so far.
    var usage: TokenUsage { meter.usage }

    /// An error event in OpenAI's shape, sent when a stream breaks after its head went out.
    static func errorFrame(_ error: MizanError) -> ByteBuffer {
        let json = (try? JSONEncoder().encode(error.envelope)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return ByteBuffer(string: "data: \(json)\n\n")
    }
}
