import Foundation

/// Folds a chat completion's stream (`chat.completion.chunk` events) into the one
/// `chat.completion` it amounts to — content, tool calls, finish reasons and usage — so that a
/// streamed answer can be kept and given again (an idempotent retry) without keeping every event.
/// Reads only what it needs and skips what it cannot read.
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
        var finishReason: String?
        var calls: [Int: Call] = [:]
    }

    private var id = ""
    private var model = ""
    private var created = 0
    private var choices: [Int: Choice] = [:]
    private var usage: Data?

    /// An empty transcript.
    public init() {}

    /// Takes in one event's data (`[DONE]` and unreadable events are skipped).
    public mutating func observe(_ event: String) {
        let (name, data) = SSEEvent.unpack(event)
        guard name == nil, data != "[DONE]", let object = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any] else {
            return
        }
        if id.isEmpty, let value = object["id"] as? String { id = value }
        if model.isEmpty, let value = object["model"] as? String { model = value }
        if created == 0, let value = object["created"] as? Int { created = value }
        if let value = object["usage"] as? [String: Any], let bytes = try? JSONSerialization.data(withJSONObject: value) { usage = bytes }
        for case let entry as [String: Any] in object["choices"] as? [Any] ?? [] {
            let index = entry["index"] as? Int ?? 0
            var choice = choices[index] ?? Choice()
            if let reason = entry["finish_reason"] as? String { choice.finishReason = reason }
            let delta = entry["delta"] as? [String: Any] ?? [:]
            if let role = delta["role"] as? String { choice.role = role }
            if let content = delta["content"] as? String {
                choice.content += content
                choice.sawContent = true
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

    /// The `chat.completion` the stream amounts to, as JSON; empty when nothing was read.
    public func completion() -> Data {
        guard !choices.isEmpty else { return Data() }
        let list: [[String: Any]] = choices.keys.sorted().map { index in
            let choice = choices[index]!
            var message: [String: Any] = ["role": choice.role, "content": choice.sawContent ? choice.content : NSNull()]
            if !choice.calls.isEmpty {
                message["tool_calls"] = choice.calls.keys.sorted().map { position -> [String: Any] in
                    let call = choice.calls[position]!
                    return [
                        "id": call.id ?? "call_\(position)", "type": call.type ?? "function",
                        "function": ["name": call.name, "arguments": call.arguments],
                    ]
                }
            }
            return ["index": index, "message": message, "finish_reason": choice.finishReason ?? NSNull()]
        }
        var object: [String: Any] = ["id": id, "object": "chat.completion", "created": created, "model": model, "choices": list]
        if let usage, let value = try? JSONSerialization.jsonObject(with: usage) { object["usage"] = value }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
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
