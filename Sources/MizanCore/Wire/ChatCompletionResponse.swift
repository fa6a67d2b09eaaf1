import Foundation

/// OpenAI's `usage` object.
public struct ChatUsage: Sendable, Codable, Equatable {
    /// Tokens in the prompt.
    public var promptTokens: Int
    /// Tokens in the completion.
    public var completionTokens: Int
    /// Their sum.
    public var totalTokens: Int

    /// Creates a usage object.
    /// - Parameters:
    ///   - promptTokens: Tokens in the prompt.
    ///   - completionTokens: Tokens in the completion.
    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = promptTokens.addingSaturated(completionTokens)
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
    }
}

/// A non-streamed chat completion (`object: "chat.completion"`).
public struct ChatCompletionResponse: Sendable, Codable, Equatable {
    /// One generated alternative.
    public struct Choice: Sendable, Codable, Equatable {
        /// Its index.
        public var index: Int
        /// The assistant message.
        public var message: ChatMessage
        /// Why generation stopped.
        public var finishReason: String?

        /// Creates a choice.
        /// - Parameters:
        ///   - index: Its index.
        ///   - message: The assistant message.
        ///   - finishReason: Why generation stopped.
        public init(index: Int, message: ChatMessage, finishReason: String?) {
            self.index = index
            self.message = message
            self.finishReason = finishReason
        }

        enum CodingKeys: String, CodingKey {
            case index, message
            case finishReason = "finish_reason"
        }
    }

    /// The completion id.
    public var id: String
    /// Always `chat.completion`.
    public var object: String
    /// Unix seconds.
    public var created: Int
    /// The model that answered.
    public var model: String
    /// The alternatives.
    public var choices: [Choice]
    /// Token usage, when reported.
    public var usage: ChatUsage?

    /// Creates a completion.
    /// - Parameters:
    ///   - id: The completion id.
    ///   - created: Unix seconds.
    ///   - model: The model.
    ///   - choices: The alternatives.
    ///   - usage: Token usage.
    public init(id: String, created: Int, model: String, choices: [Choice], usage: ChatUsage?) {
        self.id = id
        self.object = "chat.completion"
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
    }
}

/// One streamed chunk (`object: "chat.completion.chunk"`).
public struct ChatCompletionChunk: Sendable, Codable, Equatable {
    /// The incremental part of one alternative.
    public struct Delta: Sendable, Codable, Equatable {
        /// Set in the first chunk.
        public var role: String?
        /// New text.
        public var content: String?

        /// Creates a delta.
        /// - Parameters:
        ///   - role: The role, in the first chunk.
        ///   - content: New text.
        public init(role: String? = nil, content: String? = nil) {
            self.role = role
            self.content = content
        }
    }

    /// One alternative's delta.
    public struct Choice: Sendable, Codable, Equatable {
        /// Its index.
        public var index: Int
        /// The new part.
        public var delta: Delta
        /// Set in the last chunk of the alternative.
        public var finishReason: String?

        /// Creates a chunk choice.
        /// - Parameters:
        ///   - index: Its index.
        ///   - delta: The new part.
        ///   - finishReason: Why generation stopped, in the last chunk.
        public init(index: Int, delta: Delta, finishReason: String?) {
            self.index = index
            self.delta = delta
            self.finishReason = finishReason
        }

        enum CodingKeys: String, CodingKey {
            case index, delta
            case finishReason = "finish_reason"
        }
    }

    /// The completion id, the same in every chunk.
    public var id: String
    /// Always `chat.completion.chunk`.
    public var object: String
    /// Unix seconds.
    public var created: Int
    /// The model.
    public var model: String
    /// The deltas (empty in a usage-only chunk).
    public var choices: [Choice]
    /// Usage, in the final chunk when `stream_options.include_usage` is set.
    public var usage: ChatUsage?

    /// Creates a chunk.
    /// - Parameters:
    ///   - id: The completion id.
    ///   - created: Unix seconds.
    ///   - model: The model.
    ///   - choices: The deltas.
    ///   - usage: Usage, in the final chunk.
    public init(id: String, created: Int, model: String, choices: [Choice], usage: ChatUsage? = nil) {
        self.id = id
        self.object = "chat.completion.chunk"
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
    }
}

/// `GET /v1/models`'s answer.
public struct ModelList: Sendable, Codable, Equatable {
    /// One model.
    public struct Model: Sendable, Codable, Equatable {
        /// The model id clients send.
        public var id: String
        /// Always `model`.
        public var object: String
        /// Unix seconds.
        public var created: Int
        /// Who serves it.
        public var ownedBy: String

        /// Creates a model entry.
        /// - Parameters:
        ///   - id: The model id.
        ///   - created: Unix seconds.
        ///   - ownedBy: Who serves it.
        public init(id: String, created: Int = 0, ownedBy: String) {
            self.id = id
            self.object = "model"
            self.created = created
            self.ownedBy = ownedBy
        }

        enum CodingKeys: String, CodingKey {
            case id, object, created
            case ownedBy = "owned_by"
        }

        /// Reads an entry as real servers send it: only `id` is required; a missing or
        /// odd `object`, `created` or `owned_by` (llama.cpp's server sends no `created`)
        /// takes a default, and other fields are ignored.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            id = try container.decode(String.self, forKey: .id)
            object = (try? container.decode(String.self, forKey: .object)) ?? "model"
            if let seconds = try? container.decode(Int.self, forKey: .created) {
                created = seconds
            } else if let seconds = try? container.decode(Double.self, forKey: .created), let whole = Int(exactly: seconds.rounded()) {
                created = whole
            } else {
                created = 0
            }
            ownedBy = (try? container.decode(String.self, forKey: .ownedBy)) ?? ""
        }
    }

    private struct Entry: Decodable {
        var model: Model?

        init(from decoder: any Decoder) throws {
            model = try? Model(from: decoder)
        }
    }

    enum CodingKeys: String, CodingKey { case object, data }

    /// Reads a list as real servers send it: entries without a string `id` are skipped, a
    /// missing `object` is `list`, and anything else in the body is ignored.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        object = (try? container.decode(String.self, forKey: .object)) ?? "list"
        data = try container.decode([Entry].self, forKey: .data).compactMap(\.model)
    }

    /// Always `list`.
    public var object: String
    /// The models.
    public var data: [Model]

    /// Creates a list.
    /// - Parameter data: The models.
    public init(data: [Model]) {
        self.object = "list"
        self.data = data
    }
}

/// OpenAI's error body: `{"error":{"message","type","code"}}`.
public struct OpenAIErrorEnvelope: Sendable, Codable, Equatable {
    /// The error object.
    public struct Body: Sendable, Codable, Equatable {
        /// A human-readable message.
        public var message: String
        /// The error family, e.g. `invalid_request_error`.
        public var type: String
        /// A machine-readable code.
        public var code: String?

        /// Creates an error body.
        /// - Parameters:
        ///   - message: The message.
        ///   - type: The family.
        ///   - code: The code.
        public init(message: String, type: String, code: String?) {
            self.message = message
            self.type = type
            self.code = code
        }
    }

    /// The error.
    public var error: Body

    /// Creates an envelope.
    /// - Parameter error: The error.
    public init(error: Body) { self.error = error }
}
