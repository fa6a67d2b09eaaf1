import Foundation
import Hummingbird
import MizanCore

/// The gateway's JSON responses: values, raw bytes and OpenAI-shaped errors.
enum JSONResponse {
    static let encoder = AgentWire.encoder()

    /// A JSON response of raw bytes.
    static func json(bytes: Data, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// An answer to an inference request, as its server wrote it: JSON, or for an endpoint
    /// whose answers may be text (a transcription's `response_format`), the server's
    /// `Content-Type` — or, when that is not known (a node's result), JSON when the bytes are a
    /// JSON object and plain text otherwise.
    static func answer(_ bytes: Data, endpoint: Endpoint, contentType: String? = nil) -> Response {
        guard endpoint.bodyKind != .json else { return json(bytes: bytes) }
        var headers = HTTPFields()
        headers[.contentType] =
            contentType ?? (bytes.first(where: { $0 > 32 }) == UInt8(ascii: "{") ? "application/json" : "text/plain; charset=utf-8")
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// A JSON response of an encodable value.
    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        json(bytes: try encoder.encode(value), status: status)
    }

    /// An error response in OpenAI's shape, or in Anthropic's (`anthropic`, on `/v1/messages`).
    static func error(_ error: MizanError, anthropic: Bool = false) -> Response {
        let body =
            (anthropic ? try? encoder.encode(error.anthropicEnvelope) : try? encoder.encode(error.envelope))
            ?? Data(#"{"error":{"message":"internal error","type":"server_error","code":"internal_error"}}"#.utf8)
        var response = json(bytes: body, status: HTTPResponse.Status(code: error.httpStatus))
        if let retryAfter = error.retryAfter {
            // Whole seconds, rounded up: a client that waits this long finds the limit open.
            response.headers[.retryAfter] = "\(max(1, Int(retryAfter.rounded(.up))))"
        }
        return response
    }
}
