import Foundation

/// Folds an endpoint's stream into the one JSON answer it amounts to, as the same server would
/// have answered without `stream`:
///
/// - chat completions (`chat.completion.chunk` events) into a `chat.completion`: content,
///   refusal, tool calls, log probabilities, finish reasons, `system_fingerprint`,
///   `service_tier` and usage;
/// - completions (`text_completion` chunks) into a `text_completion`: text, log probabilities,
///   finish reasons and usage;
/// - Responses into the `response` of its last `response.completed` (or `.incomplete`,
///   `.failed`) event;
/// - Anthropic Messages into the `message`: its start, every content block (text, tool use
///   with its input, thinking), the stop reason and usage.
///
/// So a streamed answer can be kept and given again (an idempotent retry), and an agent can
/// ask its local server for a stream — which the server stops when the agent closes it — and
/// still answer a client that asked for JSON. Reads only what it needs and skips what it
/// cannot read.
public struct StreamTranscript: Sendable {
    private struct Call: Sendable {
        var id: String?
        var type: String?
        var name = ""
        var arguments = ""
    }

    private struct Choice: Sendable {
        var role = "assistant"
        var content = ""
        var sawContent = false
        var refusal = ""
        var sawRefusal = false
        var finishReason: String?
        var calls: [Int: Call] = [:]
        /// Chat: `logprobs.content` entries in order; completions: the arrays of `logprobs` joined.
        var logprobContent: [Data] = []
        var logprobRefusal: [Data] = []
        var sawLogprobs = false
        var tokens: [Data] = []
        var tokenLogprobs: [Data] = []
        var topLogprobs: [Data] = []
        var textOffset: [Data] = []
    }

    private struct Block: Sendable {
        var start: Data
        var text = ""
        var thinking = ""
        var signature = ""
        var partialJSON = ""
    }

    /// The endpoint whose stream is folded.
    public let endpoint: Endpoint
    private var id = ""
    private var model = ""
    private var created = 0
    private var systemFingerprint: String?
    private var serviceTier: String?
    private var choices: [Int: Choice] = [:]
    private var usage: Data?
    /// Responses: the final response object. Messages: the message of `message_start`.
    private var base: Data?
    private var blocks: [Int: Block] = [:]
    private var stopReason: Data?
    private var stopSequence: Data?
    private var deltaUsage: [String: Data] = [:]

    /// An empty transcript of a chat completion's stream.
    public init() { self.init(endpoint: .chatCompletions) }

    /// An empty transcript of `endpoint`'s stream.
    public init(endpoint: Endpoint) { self.endpoint = endpoint }

    /// Takes in one event (``SSEEvent``'s carried form; `[DONE]` and unreadable events are skipped).
    public mutating func observe(_ event: String) {
        let (name, data) = SSEEvent.unpack(event)
        guard data != "[DONE]" else { return }
        // Most chunks carry a piece of content and nothing else: read by a decoder of exactly that.
        if name == nil, endpoint == .chatCompletions || endpoint == .completions, observePlain(data) { return }
        guard let object = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any] else {
            return
        }
        switch endpoint {
        case .chatCompletions, .completions:
            guard name == nil else { return }
            observeChunk(object)
        case .responses:
            let type = object["type"] as? String ?? name ?? ""
            guard ["response.completed", "response.incomplete", "response.failed"].contains(type),
                let response = object["response"], let bytes = try? JSONSerialization.data(withJSONObject: response)
            else { return }
            base = bytes
        case .messages:
            observeMessages(object, type: object["type"] as? String ?? name ?? "")
        case .embeddings, .audioTranscriptions:
            return
        }
    }

    /// Takes in a chunk of plain content, read by hand: its id, model, creation time,
    /// fingerprint and service tier, and per choice its role, content (or text) and finish
    /// reason. `false` for a chunk that carries more (usage, log probabilities, tool calls, a
    /// refusal) or that the hand reader is not sure of: the general reader takes it then.
    private mutating func observePlain(_ data: String) -> Bool {
        let bytes = Array(data.utf8)
        typealias Reader = ChannelLineReader
        guard let members = Reader.object(bytes, 0..<bytes.count, whole: true) else { return false }
        func isNull(_ range: Range<Int>?) -> Bool { range.map { bytes[$0].elementsEqual("null".utf8) } ?? true }
        func text(_ range: Range<Int>?) -> (ok: Bool, value: String?) {
            guard let range, !isNull(range) else { return (true, nil) }
            guard let value = Reader.escapedString(bytes, range) else { return (false, nil) }
            return (true, value)
        }
        guard isNull(Reader.value("usage", members)) else { return false }
        var read: [(index: Int, role: String?, content: String?, finish: String?)] = []
        if let range = Reader.value("choices", members) {
            guard let elements = Reader.array(bytes, range) else { return false }
            for element in elements {
                guard let choice = Reader.object(bytes, element), isNull(Reader.value("logprobs", choice)) else { return false }
                let index = Reader.value("index", choice).map { Reader.int(bytes, $0) } ?? 0
                let finish = text(Reader.value("finish_reason", choice))
                let plain = text(Reader.value("text", choice))
                var role: (ok: Bool, value: String?) = (true, nil)
                var content: (ok: Bool, value: String?) = (true, nil)
                if let range = Reader.value("delta", choice) {
                    guard let delta = Reader.object(bytes, range), isNull(Reader.value("tool_calls", delta)),
                        isNull(Reader.value("refusal", delta))
                    else { return false }
                    role = text(Reader.value("role", delta))
                    content = text(Reader.value("content", delta))
                }
                guard let index, finish.ok, plain.ok, role.ok, content.ok else { return false }
                read.append((index, role.value, content.value ?? plain.value, finish.value))
            }
        }
        let id = text(Reader.value("id", members))
        let model = text(Reader.value("model", members))
        let fingerprint = text(Reader.value("system_fingerprint", members))
        let tier = text(Reader.value("service_tier", members))
        let created = Reader.value("created", members).map { Reader.int(bytes, $0) }
        guard id.ok, model.ok, fingerprint.ok, tier.ok, created.map({ $0 != nil }) ?? true else { return false }
        if self.id.isEmpty, let value = id.value { self.id = value }
        if self.model.isEmpty, let value = model.value { self.model = value }
        if self.created == 0, let value = created ?? nil { self.created = value }
        if let value = fingerprint.value { systemFingerprint = value }
        if let value = tier.value { serviceTier = value }
        for entry in read {
            var choice = choices[entry.index] ?? Choice()
            if let reason = entry.finish { choice.finishReason = reason }
            if let role = entry.role { choice.role = role }
            if let content = entry.content {
                choice.content += content
                choice.sawContent = true
            }
            choices[entry.index] = choice
        }
        return true
    }

    private mutating func observeChunk(_ object: [String: Any]) {
        if id.isEmpty, let value = object["id"] as? String { id = value }
        if model.isEmpty, let value = object["model"] as? String { model = value }
        if created == 0, let value = object["created"] as? Int { created = value }
        if let value = object["system_fingerprint"] as? String { systemFingerprint = value }
        if let value = object["service_tier"] as? String { serviceTier = value }
        if let value = object["usage"] as? [String: Any], let bytes = try? JSONSerialization.data(withJSONObject: value) { usage = bytes }
        for case let entry as [String: Any] in object["choices"] as? [Any] ?? [] {
            let index = entry["index"] as? Int ?? 0
            var choice = choices[index] ?? Choice()
            if let reason = entry["finish_reason"] as? String { choice.finishReason = reason }
            if let logprobs = entry["logprobs"] as? [String: Any] {
                choice.sawLogprobs = true
                choice.logprobContent += Self.items(logprobs["content"])
                choice.logprobRefusal += Self.items(logprobs["refusal"])
                choice.tokens += Self.items(logprobs["tokens"])
                choice.tokenLogprobs += Self.items(logprobs["token_logprobs"])
                choice.topLogprobs += Self.items(logprobs["top_logprobs"])
                choice.textOffset += Self.items(logprobs["text_offset"])
            }
            if let text = entry["text"] as? String {
                choice.content += text
                choice.sawContent = true
            }
            let delta = entry["delta"] as? [String: Any] ?? [:]
            if let role = delta["role"] as? String { choice.role = role }
            if let content = delta["content"] as? String {
                choice.content += content
                choice.sawContent = true
            }
            if let refusal = delta["refusal"] as? String {
                choice.refusal += refusal
                choice.sawRefusal = true
            }
            for case let call as [String: Any] in delta["tool_calls"] as? [Any] ?? [] {
                let position = call["index"] as? Int ?? 0
                var kept = choice.calls[position] ?? Call()
                if let value = call["id"] as? String { kept.id = value }
                if let value = call["type"] as? String { kept.type = value }
                let function = call["function"] as? [String: Any] ?? [:]
                if let value = function["name"] as? String { kept.name += value }
                if let value = function["arguments"] as? String { kept.arguments += value }
                choice.calls[position] = kept
            }
            choices[index] = choice
        }
    }

    private mutating func observeMessages(_ object: [String: Any], type: String) {
        switch type {
        case "message_start":
            if let message = object["message"], let bytes = try? JSONSerialization.data(withJSONObject: message) { base = bytes }
        case "content_block_start":
            guard let index = object["index"] as? Int, let block = object["content_block"],
                let bytes = try? JSONSerialization.data(withJSONObject: block)
            else { return }
            blocks[index] = Block(start: bytes)
        case "content_block_delta":
            guard let index = object["index"] as? Int, var block = blocks[index], let delta = object["delta"] as? [String: Any] else {
                return
            }
            if let text = delta["text"] as? String { block.text += text }
            if let json = delta["partial_json"] as? String { block.partialJSON += json }
            if let thinking = delta["thinking"] as? String { block.thinking += thinking }
            if let signature = delta["signature"] as? String { block.signature += signature }
            blocks[index] = block
        case "message_delta":
            if let delta = object["delta"] as? [String: Any] {
                if let reason = delta["stop_reason"], let bytes = Self.json(reason) { stopReason = bytes }
                if let sequence = delta["stop_sequence"], let bytes = Self.json(sequence) { stopSequence = bytes }
            }
            for (key, value) in object["usage"] as? [String: Any] ?? [:] { deltaUsage[key] = Self.json(value) }
        default:
            return
        }
    }

    private static func items(_ value: Any?) -> [Data] {
        (value as? [Any] ?? []).compactMap { json($0) }
    }

    private static func json(_ value: Any) -> Data? {
        try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed])
    }

    private static func value(_ data: Data) -> Any {
        (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) ?? NSNull()
    }

    /// Whether the stream reported its usage (chat and completions say it in a last chunk when
    /// asked to with `stream_options.include_usage`; some servers never do).
    public var hasUsage: Bool { usage != nil }

    /// The answer the stream amounts to, as JSON, with `usage` set to `fallback` when the
    /// stream reported none (chat and completions; a server that ignores
    /// `stream_options.include_usage`): the client that asked for JSON gets a usage object,
    /// as it would have from the server. Empty when nothing was read.
    public func completion(fallbackUsage fallback: TokenUsage?) -> Data {
        guard usage == nil, let fallback, endpoint == .chatCompletions || endpoint == .completions else { return completion() }
        var copy = self
        let object: [String: Int] = [
            "prompt_tokens": fallback.promptTokens, "completion_tokens": fallback.completionTokens,
            "total_tokens": fallback.promptTokens + fallback.completionTokens,
        ]
        copy.usage = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return copy.completion()
    }

    /// The answer the stream amounts to, as JSON; empty when nothing was read.
    public func completion() -> Data {
        switch endpoint {
        case .chatCompletions: return chatCompletion()
        case .completions: return textCompletion()
        case .responses: return base ?? Data()
        case .messages: return message()
        case .embeddings, .audioTranscriptions: return Data()
        }
    }

    private func common(_ object: String) -> [String: Any] {
        var object: [String: Any] = ["id": id, "object": object, "created": created, "model": model]
        if let systemFingerprint { object["system_fingerprint"] = systemFingerprint }
        if let serviceTier { object["service_tier"] = serviceTier }
        if let usage { object["usage"] = Self.value(usage) }
        return object
    }

    private static func encoded(_ object: [String: Any]) -> Data {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
    }

    /// A JSON string literal of `text`.
    static func quoted(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// A chat completion of plain choices (content, role and finish reason only), written by
    /// hand; `nil` when a choice carries more (the general writer takes it).
    private func plainChatCompletion() -> Data? {
        guard choices.values.allSatisfy({ $0.calls.isEmpty && !$0.sawLogprobs && !$0.sawRefusal }) else { return nil }
        var text = "{\"id\":\(Self.quoted(id)),\"object\":\"chat.completion\",\"created\":\(created),\"model\":\(Self.quoted(model))"
        if let systemFingerprint { text += ",\"system_fingerprint\":\(Self.quoted(systemFingerprint))" }
        if let serviceTier { text += ",\"service_tier\":\(Self.quoted(serviceTier))" }
        text += ",\"choices\":["
        for (position, index) in choices.keys.sorted().enumerated() {
            let choice = choices[index]!
            if position > 0 { text += "," }
            text += "{\"index\":\(index),\"message\":{\"role\":\(Self.quoted(choice.role)),\"content\":"
            text += choice.sawContent ? Self.quoted(choice.content) : "null"
            text += "},\"finish_reason\":\(choice.finishReason.map(Self.quoted) ?? "null")}"
        }
        text += "]"
        var data = Data(text.utf8)
        if let usage {
            data.append(contentsOf: Array(",\"usage\":".utf8))
            data.append(usage)
        }
        data.append(UInt8(ascii: "}"))
        return data
    }

    private func chatCompletion() -> Data {
        guard !choices.isEmpty else { return Data() }
        if let plain = plainChatCompletion() { return plain }
        let list: [[String: Any]] = choices.keys.sorted().map { index in
            let choice = choices[index]!
            var message: [String: Any] = ["role": choice.role, "content": choice.sawContent ? choice.content : NSNull()]
            if choice.sawRefusal { message["refusal"] = choice.refusal }
            if !choice.calls.isEmpty {
                message["tool_calls"] = choice.calls.keys.sorted().map { position -> [String: Any] in
                    let call = choice.calls[position]!
                    return [
                        "id": call.id ?? "call_\(position)", "type": call.type ?? "function",
                        "function": ["name": call.name, "arguments": call.arguments],
                    ]
                }
            }
            var entry: [String: Any] = ["index": index, "message": message, "finish_reason": choice.finishReason ?? NSNull()]
            if choice.sawLogprobs {
                var logprobs: [String: Any] = ["content": choice.logprobContent.map(Self.value)]
                if !choice.logprobRefusal.isEmpty { logprobs["refusal"] = choice.logprobRefusal.map(Self.value) }
                entry["logprobs"] = logprobs
            }
            return entry
        }
        var object = common("chat.completion")
        object["choices"] = list
        return Self.encoded(object)
    }

    private func textCompletion() -> Data {
        guard !choices.isEmpty else { return Data() }
        let list: [[String: Any]] = choices.keys.sorted().map { index in
            let choice = choices[index]!
            var entry: [String: Any] = ["index": index, "text": choice.content, "finish_reason": choice.finishReason ?? NSNull()]
            entry["logprobs"] =
                choice.sawLogprobs
                ? [
                    "tokens": choice.tokens.map(Self.value), "token_logprobs": choice.tokenLogprobs.map(Self.value),
                    "top_logprobs": choice.topLogprobs.map(Self.value), "text_offset": choice.textOffset.map(Self.value),
                ] as [String: Any] : NSNull()
            return entry
        }
        var object = common("text_completion")
        object["choices"] = list
        return Self.encoded(object)
    }

    private func message() -> Data {
        guard let base, var message = Self.value(base) as? [String: Any] else { return Data() }
        message["content"] = blocks.keys.sorted().map { index -> Any in
            let block = blocks[index]!
            guard var start = Self.value(block.start) as? [String: Any] else { return NSNull() }
            switch start["type"] as? String {
            case "text": start["text"] = ((start["text"] as? String) ?? "") + block.text
            case "thinking":
                start["thinking"] = ((start["thinking"] as? String) ?? "") + block.thinking
                if !block.signature.isEmpty { start["signature"] = block.signature }
            case "tool_use", "server_tool_use":
                if !block.partialJSON.isEmpty, let input = try? JSONSerialization.jsonObject(with: Data(block.partialJSON.utf8)) {
                    start["input"] = input
                }
            default: break
            }
            return start
        }
        if let stopReason { message["stop_reason"] = Self.value(stopReason) }
        if let stopSequence { message["stop_sequence"] = Self.value(stopSequence) }
        if !deltaUsage.isEmpty {
            var usage = message["usage"] as? [String: Any] ?? [:]
            for (key, value) in deltaUsage { usage[key] = Self.value(value) }
            message["usage"] = usage
        }
        return Self.encoded(message)
    }

    /// A request body asking for the stream of what `body` asks as JSON: `stream` set, and on
    /// chat and completions `stream_options.include_usage`, so that the fold has the usage too.
    /// Every other byte of the body stays as it was.
    /// - Parameters:
    ///   - body: The client's JSON request body.
    ///   - endpoint: Its endpoint.
    /// - Returns: The streaming body, or `nil` when `body` is not a JSON object.
    public static func streamingBody(_ body: Data, endpoint: Endpoint) -> Data? {
        var values: [(key: String, json: String)] = [("stream", "true")]
        if endpoint == .chatCompletions || endpoint == .completions { values.append(("stream_options", #"{"include_usage":true}"#)) }
        return JSONScanner.settingTopLevel(in: body, values)
    }

    /// A kept `chat.completion` given again as a stream: one chunk holding the whole answer,
    /// one with the usage when there is some, then `[DONE]`.
    /// - Parameter completion: What ``completion()`` returned.
    /// - Returns: The events' data, or `nil` when `completion` cannot be read.
    public static func replay(_ completion: Data) -> [String]? {
        guard let object = try? JSONSerialization.jsonObject(with: completion) as? [String: Any],
            let choices = object["choices"] as? [[String: Any]]
        else { return nil }
        var chunk: [String: Any] = [
            "id": object["id"] ?? "", "object": "chat.completion.chunk", "created": object["created"] ?? 0, "model": object["model"] ?? "",
        ]
        chunk["choices"] = choices.map { choice -> [String: Any] in
            ["index": choice["index"] ?? 0, "delta": choice["message"] ?? [:], "finish_reason": choice["finish_reason"] ?? NSNull()]
        }
        var events: [String] = []
        if let data = try? JSONSerialization.data(withJSONObject: chunk, options: [.sortedKeys]) {
            events.append(String(decoding: data, as: UTF8.self))
        }
        if let usage = object["usage"] {
            chunk["choices"] = [Any]()
            chunk["usage"] = usage
            if let data = try? JSONSerialization.data(withJSONObject: chunk, options: [.sortedKeys]) {
                events.append(String(decoding: data, as: UTF8.self))
            }
        }
        return events + ["[DONE]"]
    }
}
