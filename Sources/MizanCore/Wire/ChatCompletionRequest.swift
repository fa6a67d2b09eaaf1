import Foundation

/// A chat completion request as the client sent it.
///
/// The body is kept verbatim: fields Mizan does not know (tools, response_format,
/// temperature, …) pass through untouched. Only `model` may be rewritten, in place, by
/// ``withModel(_:)``.
public struct ChatCompletionRequest: Sendable {
    /// The client's JSON body, byte for byte.
    public let body: Data
    /// The requested model.
    public let model: String
    /// Whether the client asked for server-sent events.
    public let stream: Bool
    /// `stream_options`, if given.
    public let streamOptions: StreamOptions?
    /// `max_tokens`, if given.
    public let maxTokens: Int?
    /// `max_completion_tokens`, if given.
    public let maxCompletionTokens: Int?
    /// The conversation.
    public let messages: [ChatMessage]

    /// OpenAI's `stream_options`.
    public struct StreamOptions: Sendable, Codable, Equatable {
        /// Whether a final chunk carries usage.
        public var includeUsage: Bool?

        /// Creates stream options.
        /// - Parameter includeUsage: Whether a final chunk carries usage.
        public init(includeUsage: Bool? = nil) { self.includeUsage = includeUsage }

        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }

    private struct Known: Decodable {
        var model: String?
        var stream: Bool?
        var streamOptions: StreamOptions?
        var maxTokens: Int?
        var maxCompletionTokens: Int?
        var messages: [ChatMessage]?

        enum CodingKeys: String, CodingKey {
            case model, stream, messages
            case streamOptions = "stream_options"
            case maxTokens = "max_tokens"
            case maxCompletionTokens = "max_completion_tokens"
        }
    }

    /// Parses and validates a client body.
    /// - Parameter body: The JSON body.
    /// - Throws: ``MizanError`` with code `badRequest` for malformed JSON, a missing
    ///   `model` or `messages`, or fields of the wrong type.
    public init(body: Data) throws {
        let known: Known
        do {
            guard JSONScanner.isObject(body) else {
                throw MizanError(.badRequest, "The request body must be a JSON object.")
            }
            let bytes = [UInt8](body)
            let members = JSONScanner.topLevelMembers(in: bytes) ?? []
            if let key = JSONScanner.firstDuplicate(members) {
                throw MizanError(
                    .badRequest, "The request body names '\(SafeText.excerpt(key))' more than once; each key may appear only once.")
            }
            // `stream_options` is read too (whether a usage chunk is asked for).
            if let range = members.first(where: { $0.key == "stream_options" })?.value,
                let key = JSONScanner.duplicateTopLevelKey(in: Data(bytes[range]))
            {
                throw MizanError(
                    .badRequest, "'stream_options' names '\(SafeText.excerpt(key))' more than once; each key may appear only once.")
            }
            known = try JSONDecoder().decode(Known.self, from: body)
        } catch let error as MizanError {
            throw error
        } catch let DecodingError.keyNotFound(key, context) {
            let path = (context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue } + [key.stringValue]).joined(
                separator: ".")
            throw MizanError(.badRequest, "Missing required parameter: '\(path)'.")
        } catch let DecodingError.typeMismatch(type, context) {
            throw MizanError(.badRequest, "Invalid type for '\(Self.path(context))': expected \(Self.describe(type)).")
        } catch let DecodingError.valueNotFound(type, context) {
            throw MizanError(.badRequest, "Invalid type for '\(Self.path(context))': expected \(Self.describe(type)).")
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            // A number that does not fit its field (`max_tokens: 1.5`) is valid JSON.
            throw MizanError(.badRequest, "Invalid value for '\(Self.path(context))'.")
        } catch {
            throw Self.explain(body)
        }
        guard let model = known.model, !model.isEmpty else {
            throw MizanError(.badRequest, "Missing required parameter: 'model'.")
        }
        try Self.checkModelName(model)
        guard let messages = known.messages else {
            throw MizanError(.badRequest, "Missing required parameter: 'messages'.")
        }
        self.body = body
        self.model = model
        self.stream = known.stream ?? false
        self.streamOptions = known.streamOptions
        self.maxTokens = known.maxTokens
        self.maxCompletionTokens = known.maxCompletionTokens
        self.messages = messages
    }

    /// The longest model name accepted, in UTF-8 bytes. Model names reach logs, metrics and
    /// usage records, so they are bounded.
    public static let maxModelNameBytes = 256

    /// Refuses a model name that is too long or holds control characters.
    /// - Parameter model: A client's model name.
    /// - Throws: ``MizanError`` `badRequest`.
    public static func checkModelName(_ model: String) throws {
        guard model.utf8.count <= maxModelNameBytes else {
            throw MizanError(.badRequest, "'model' is longer than \(maxModelNameBytes) bytes.")
        }
        guard !SafeText.containsControlCharacters(model) else {
            throw MizanError(.badRequest, "'model' must not contain control characters.")
        }
    }

    /// The body with `model` replaced and every other byte unchanged.
    /// - Parameter model: The model to send upstream.
    /// - Returns: The rewritten body (the original when `model` is unchanged).
    public func withModel(_ model: String) -> Data {
        guard model != self.model else { return body }
        return JSONScanner.replacingTopLevelString(in: body, key: "model", with: model) ?? body
    }

    /// Why a body that failed to decode was refused. Foundation reports a number that does not
    /// fit its field (`"max_tokens": 1.5`) as invalid JSON; the body is looked at again to say so.
    private static func explain(_ body: Data) -> MizanError {
        guard let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
            return MizanError(.badRequest, "The request body is not valid JSON.")
        }
        for key in ["max_tokens", "max_completion_tokens"] {
            if let number = object[key] as? NSNumber, !(number is Bool), Int(exactly: number.doubleValue) == nil {
                return MizanError(.badRequest, "Invalid value for '\(key)': expected an integer.")
            }
        }
        return MizanError(.badRequest, "The request body has a value Mizan cannot read (a number out of range, or of the wrong form).")
    }

    private static func path(_ context: DecodingError.Context) -> String {
        context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: "an integer"
        case is Bool.Type: "a boolean"
        case is String.Type: "a string"
        case is [ChatMessage].Type, is [Any].Type: "an array"
        default: "an object"
        }
    }

    /// Whether the client asked for a final usage chunk in a stream.
    public var includeUsageInStream: Bool { streamOptions?.includeUsage ?? false }
}

/// One message of a conversation. `content` is text, or the text parts of a multi-part content.
public struct ChatMessage: Sendable, Codable, Equatable {
    /// `system`, `user`, `assistant`, `tool`, …
    public var role: String
    /// The text of the message (parts joined), if any.
    public var content: String?

    /// Creates a message.
    /// - Parameters:
    ///   - role: The role.
    ///   - content: The text.
    public init(role: String, content: String?) {
        self.role = role
        self.content = content
    }

    enum CodingKeys: String, CodingKey { case role, content }

    private struct Part: Decodable {
        var type: String?
        var text: String?
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        role = try container.decode(String.self, forKey: .role)
        if let text = try? container.decodeIfPresent(String.self, forKey: .content) {
            content = text
        } else if let parts = try? container.decodeIfPresent([Part].self, forKey: .content) {
            content = parts.compactMap(\.text).joined(separator: "\n")
        } else if try !container.contains(.content) || container.decodeNil(forKey: .content) {
            content = nil
        } else {
            throw DecodingError.typeMismatch(
                String.self,
                .init(codingPath: container.codingPath + [CodingKeys.content], debugDescription: "content")
            )
        }
    }
}
