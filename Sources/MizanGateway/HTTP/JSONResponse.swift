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
