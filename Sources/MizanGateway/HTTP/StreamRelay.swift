import Foundation
import Hummingbird
import MizanCore

/// Turns upstream events back into SSE frames (named ones keep their `event:` name) and keeps
/// what usage accounting needs: the usage the provider reports in the stream, else an estimate
/// from the streamed events.
struct StreamRelay {
    private var meter: StreamUsageMeter
    /// The bytes of the events' data relayed so far.
    private(set) var bytes = 0

    init(chat: ClientRequest) { meter = StreamUsageMeter(requestBytes: chat.body.count) }

    /// The SSE frame carrying an event (``SSEEvent``'s carried form).
    mutating func frame(_ event: String) -> ByteBuffer {
        meter.observe(event)
        bytes += event.utf8.count
        return ByteBuffer(string: SSEEvent.frame(event))
    }

    /// The usage of the stream so far.
    var usage: TokenUsage { meter.usage }

    /// An error event, sent when a stream breaks after its head went out: OpenAI's error
    /// object on chat and completions, an `error` event in the endpoint's own shape on
    /// Responses (`{"type":"error","code","message"}`) and Anthropic Messages
    /// (`{"type":"error","error":{"type","message"}}`).
    static func errorFrame(_ error: MizanError, endpoint: Endpoint = .chatCompletions) -> ByteBuffer {
        let encoder = JSONEncoder()
        let json: Data?
        switch endpoint {
        case .messages:
            json = try? encoder.encode(error.anthropicEnvelope)
        case .responses:
            json = try? encoder.encode(ResponsesError(code: error.code.rawValue, message: error.message))
        default:
            json = try? encoder.encode(error.envelope)
        }
        let data = json.map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return ByteBuffer(string: SSEEvent.frame(SSEEvent.pack(name: endpoint.endsWithDone ? nil : "error", data: data)))
    }

    /// The Responses API's stream error event.
    private struct ResponsesError: Encodable {
        var type = "error"
        var code: String
        var message: String
    }
}

extension Response {
    /// A `text/event-stream` answer: the one head every streamed answer carries.
    /// - Parameter body: The events.
    /// - Returns: The response.
    static func eventStream(_ body: ResponseBody) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: body)
    }
}
