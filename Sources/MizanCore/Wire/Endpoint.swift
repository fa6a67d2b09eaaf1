import Foundation

/// An inference endpoint a client calls under `/v1/` and a provider serves under its base URL.
///
/// Each request is served by capacity that serves its model *for its endpoint*: a provider
/// route lists the endpoints it serves, a node reports those of its local server. Bodies go
/// upstream byte for byte except `model`.
public enum Endpoint: String, Sendable, Codable, CaseIterable, Comparable {
    /// `POST /v1/chat/completions`: OpenAI chat completions, JSON or a stream ending in `[DONE]`.
    case chatCompletions = "chat/completions"
    /// `POST /v1/completions`: legacy text completions, JSON or a stream ending in `[DONE]`.
    case completions
    /// `POST /v1/embeddings`: embeddings of a string or an array of them; never streamed.
    case embeddings
    /// `POST /v1/responses`: the stateless Responses API, JSON or a stream of named events.
    case responses
    /// `POST /v1/messages`: Anthropic Messages, JSON or a stream of named events, and errors
    /// in Anthropic's shape.
    case messages
    /// `POST /v1/audio/transcriptions`: speech to text, a `multipart/form-data` body (`file`,
    /// `model`, …) answered with JSON (or text, as `response_format` asks); never streamed.
    case audioTranscriptions = "audio/transcriptions"

    /// How a request's body is written.
    public enum BodyKind: Sendable {
        /// A JSON object.
        case json
        /// A `multipart/form-data` form (RFC 7578), kept by Mizan in ``MultipartForm``'s
        /// canonical form: its first line names its boundary.
        case multipart
    }

    /// How this endpoint's requests are written.
    public var bodyKind: BodyKind { self == .audioTranscriptions ? .multipart : .json }

    /// The `Content-Type` a request body of this endpoint is sent with: `application/json`, or
    /// for a form `multipart/form-data` with the boundary the (canonical) body starts with.
    /// - Parameter body: The body as Mizan keeps it.
    /// - Returns: The header's value.
    public func contentType(of body: Data) -> String {
        switch bodyKind {
        case .json: return "application/json"
        case .multipart:
            let boundary = MultipartForm.boundary(ofCanonical: body) ?? ""
            return "multipart/form-data; boundary=\(boundary)"
        }
    }

    /// The path under a provider's base URL (`/chat/completions`), and under `/v1` for clients.
    public var path: String { "/" + rawValue }

    /// Whether a stream of this endpoint ends with `data: [DONE]` (OpenAI's chat and
    /// completions streams); the others end with a named final event.
    public var endsWithDone: Bool { self == .chatCompletions || self == .completions }

    /// Whether a request may ask for `stream: true`.
    public var streams: Bool { self != .embeddings && self != .audioTranscriptions }

    /// Whether errors take Anthropic's shape (`{"type":"error","error":{…}}`).
    public var anthropicErrors: Bool { self == .messages }

    /// The endpoints a node or route serves when it names none: all of them.
    public static let all: [Endpoint] = allCases

    /// Parses an endpoint as configured: its path with or without `/v1/` and slashes
    /// (`chat/completions`, `/v1/embeddings`, `messages`).
    /// - Parameter text: The configured name.
    public init?(configured text: String) {
        var name = Substring(text.trimmingCharacters(in: .whitespaces))
        if name.hasPrefix("/") { name = name.dropFirst() }
        if name.hasPrefix("v1/") { name = name.dropFirst(3) }
        self.init(rawValue: String(name))
    }

    /// Each endpoint once, in ``Endpoint``'s order.
    public static func normalized(_ endpoints: [Endpoint]) -> [Endpoint] {
        allCases.filter(endpoints.contains)
    }

    public static func < (lhs: Endpoint, rhs: Endpoint) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}
