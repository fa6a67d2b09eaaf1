import Foundation

/// A client's request to one of the inference endpoints, as it sent it: the body is kept
/// verbatim (fields Mizan does not know pass through); only `model` may be rewritten, in
/// place, by ``withModel(_:)``.
///
/// Mizan reads what it routes by and nothing more: `model`, `stream`, and that the field the
/// endpoint cannot do without is there (`messages` for chat, `prompt` for completions, `input`
/// for embeddings and Responses, `messages` and `max_tokens` for Anthropic Messages). A
/// chat completion is checked as ``ChatCompletionRequest`` checks it.
public struct ClientRequest: Sendable {
    /// The endpoint called.
    public let endpoint: Endpoint
    /// The client's JSON body, byte for byte.
    public let body: Data
    /// The requested model.
    public let model: String
    /// Whether the client asked for server-sent events.
    public let stream: Bool
    /// The bytes a prompt's tokens are estimated from: the whole JSON body, or a form's text
    /// fields (a file's bytes are not a prompt's). Read once, when the request is made.
    public let promptBytes: Int

    /// The fields each endpoint requires (besides `model`).
    static func required(for endpoint: Endpoint) -> [String] {
        switch endpoint {
        case .chatCompletions: ["messages"]
        case .completions: ["prompt"]
        case .embeddings: ["input"]
        case .responses: ["input"]
        case .messages: ["messages", "max_tokens"]
        case .audioTranscriptions: ["file"]
        }
    }

    private struct Known: Decodable {
        var model: String?
        var stream: Bool?
    }

    /// Parses and checks a client body for an endpoint.
    /// - Parameters:
    ///   - endpoint: The endpoint called.
    ///   - body: The body: JSON, or a form on an endpoint that takes one.
    ///   - contentType: The body's `Content-Type` (read for a form's boundary).
    /// - Throws: ``MizanError`` `badRequest` for malformed JSON, a key named twice, a missing
    ///   `model` or required field, a `model` or `stream` of the wrong type, or `stream: true`
    ///   on embeddings; for a form, a body that is not `multipart/form-data` or is malformed.
    public init(endpoint: Endpoint, body: Data, contentType: String? = nil) throws {
        if endpoint.bodyKind == .multipart {
            try self.init(endpoint: endpoint, form: body, contentType: contentType)
            return
        }
        if endpoint == .chatCompletions {
            let chat = try ChatCompletionRequest(body: body)
            self.init(endpoint: endpoint, body: body, model: chat.model, stream: chat.stream)
            return
        }
        guard JSONScanner.isObject(body) else { throw MizanError(.badRequest, "The request body must be a JSON object.") }
        let bytes = [UInt8](body)
        let members = JSONScanner.topLevelMembers(in: bytes) ?? []
        if let key = JSONScanner.firstDuplicate(members) {
            throw MizanError(
                .badRequest, "The request body names '\(SafeText.excerpt(key))' more than once; each key may appear only once.")
        }
        let known: Known
        do {
            known = try JSONDecoder().decode(Known.self, from: body)
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let field = context.codingPath.first?.stringValue ?? "model"
            throw MizanError(.badRequest, "Invalid type for '\(field)': expected \(field == "stream" ? "a boolean" : "a string").")
        } catch {
            throw MizanError(.badRequest, "The request body is not valid JSON.")
        }
        guard let model = known.model, !model.isEmpty else { throw MizanError(.badRequest, "Missing required parameter: 'model'.") }
        try ChatCompletionRequest.checkModelName(model)
        let present = Set(members.map(\.key))
        for field in Self.required(for: endpoint) where !present.contains(field) {
            throw MizanError(.badRequest, "Missing required parameter: '\(field)'.")
        }
        let stream = known.stream ?? false
        if stream, !endpoint.streams {
            throw MizanError(.badRequest, "'stream' is not supported on /v1/\(endpoint.rawValue).")
        }
        self.init(endpoint: endpoint, body: body, model: model, stream: stream)
    }

    /// Reads and checks a form: its `model` and required fields; the body is kept in the form's
    /// canonical form (its first line names its boundary).
    private init(endpoint: Endpoint, form body: Data, contentType: String?) throws {
        guard let contentType, let boundary = MultipartForm.boundary(fromContentType: contentType) else {
            throw MizanError(
                .badRequest, "/v1/\(endpoint.rawValue) takes a multipart/form-data body (Content-Type: multipart/form-data; boundary=…).")
        }
        let form = try MultipartForm(body: body, boundary: boundary)
        guard let model = form.text("model"), !model.isEmpty else { throw MizanError(.badRequest, "Missing required parameter: 'model'.") }
        try ChatCompletionRequest.checkModelName(model)
        for field in Self.required(for: endpoint) where !form.parts.contains(where: { $0.name == field }) {
            throw MizanError(.badRequest, "Missing required parameter: '\(field)'.")
        }
        if let stream = form.text("stream"), stream.lowercased() != "false" {
            throw MizanError(.badRequest, "'stream' is not supported on /v1/\(endpoint.rawValue).")
        }
        self.init(endpoint: endpoint, body: form.encoded, model: model, stream: false, promptBytes: form.textBytes)
    }

    /// A request already checked (a job's, replayed).
    /// - Parameters:
    ///   - endpoint: The endpoint.
    ///   - body: The body.
    ///   - model: Its model.
    ///   - stream: Whether it streams.
    public init(endpoint: Endpoint, body: Data, model: String, stream: Bool) {
        let promptBytes =
            switch endpoint.bodyKind {
            case .json: body.count
            case .multipart: MultipartForm(canonical: body)?.textBytes ?? 0
            }
        self.init(endpoint: endpoint, body: body, model: model, stream: stream, promptBytes: promptBytes)
    }

    private init(endpoint: Endpoint, body: Data, model: String, stream: Bool, promptBytes: Int) {
        self.endpoint = endpoint
        self.body = body
        self.model = model
        self.stream = stream
        self.promptBytes = promptBytes
    }

    /// The most output tokens the request allows, as its endpoint names it
    /// (`max_completion_tokens` or `max_tokens` on chat, `max_tokens` on completions and
    /// Messages, `max_output_tokens` on Responses); `nil` when it names none (or not as a
    /// whole number). Embeddings produce none: 0.
    public var outputLimit: Int? {
        if endpoint == .embeddings { return 0 }
        guard endpoint.bodyKind == .json else { return nil }
        let bytes = [UInt8](body)
        guard let members = JSONScanner.topLevelMembers(in: bytes) else { return nil }
        let names: [String] =
            switch endpoint {
            case .chatCompletions: ["max_completion_tokens", "max_tokens"]
            case .responses: ["max_output_tokens"]
            default: ["max_tokens"]
            }
        for name in names {
            guard let range = members.first(where: { $0.key == name })?.value,
                let value = Int(String(decoding: bytes[range], as: UTF8.self)), value >= 0
            else { continue }
            return value
        }
        return nil
    }

    /// The body with `model` replaced and every other byte unchanged.
    /// - Parameter model: The model to send upstream.
    /// - Returns: The rewritten body (the original when `model` is unchanged).
    public func withModel(_ model: String) -> Data {
        guard model != self.model else { return body }
        switch endpoint.bodyKind {
        case .json: return JSONScanner.replacingTopLevelString(in: body, key: "model", with: model) ?? body
        case .multipart: return MultipartForm(canonical: body)?.replacing("model", with: model).encoded ?? body
        }
    }
}

extension TokenUsage {
    /// The usage recorded for a JSON answer to a client request: as its server reported it, or
    /// estimated from the bytes when it did not (or reported counts that cannot be true).
    /// - Parameters:
    ///   - reported: What the answer's `usage` said, if anything.
    ///   - request: The client's request.
    ///   - answer: The answer's body.
    /// - Returns: The counts to record.
    public static func answering(_ request: ClientRequest, reported: ChatUsage?, answer: Data) -> TokenUsage {
        if let reported, let usage = TokenUsage(reported: reported) { return usage }
        return TokenUsage(
            promptTokens: StreamUsageMeter.estimateTokens(request.promptBytes),
            completionTokens: StreamUsageMeter.estimateTokens(answer.count), source: .estimated)
    }
}
