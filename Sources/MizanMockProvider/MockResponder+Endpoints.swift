import Foundation
import Hummingbird
import MizanCore

/// The mock's other inference endpoints — legacy completions, embeddings, Responses, Anthropic
/// Messages and audio transcriptions — each as its real servers answer it (JSON and streams, with usage), from
/// the same words as its chat completions.
extension MockResponder {
    /// `POST /v1/completions`, `/v1/embeddings`, `/v1/responses`, `/v1/messages` or
    /// `/v1/audio/transcriptions` (a form: its `file`'s kilobytes count as the prompt's tokens).
    func serve(_ endpoint: Endpoint, _ request: Request) async throws -> Response {
        if let refusal = authorize(request, anthropic: endpoint == .messages) { return refusal }
        var request = request
        let buffer = try await request.collectBody(upTo: 4 * 1024 * 1024)
        let body = Data(buffer.readableBytesView)
        lastBody.withLock { $0 = body }
        let parsed: ClientRequest
        do {
            parsed = try ClientRequest(endpoint: endpoint, body: body, contentType: request.headers[.contentType])
        } catch let error as MizanError {
            return failure(error, anthropic: endpoint == .messages)
        }
        guard configuration.models.contains(parsed.model) else {
            return failure(MizanError(.modelNotFound, "The model '\(parsed.model)' does not exist."), anthropic: endpoint == .messages)
        }
        if let status = configuration.failureStatus {
            stats.update { $0.failed += 1 }
            return failure(
                MizanError(.upstreamFailure, "The mock provider was told to fail."), status: status, anthropic: endpoint == .messages)
        }
        stats.update { $0.requests += 1 }
        let cache = lookUpPrefix(endpoint, model: parsed.model, body: body)
        let object = (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:]
        let limit = (object["max_tokens"] ?? object["max_output_tokens"]) as? Int ?? configuration.tokens
        let count = max(0, min(limit, configuration.tokens))
        // A form's prompt is its file: a token for each kilobyte of audio.
        let prompt =
            endpoint.bodyKind == .multipart
            ? max(
                1, (MultipartForm(canonical: parsed.body)?.parts.filter { $0.filename != nil }.reduce(0) { $0 + $1.body.count } ?? 0) / 1000
            )
            : Self.promptTokens(object)
        let answer = Answer(endpoint: endpoint, model: parsed.model, number: nextNumber(), count: count, prompt: prompt)
        if endpoint == .embeddings {
            return try await json(object: Self.embeddings(object, model: parsed.model, promptTokens: answer.prompt))
        }
        if endpoint == .audioTranscriptions, MultipartForm(canonical: parsed.body)?.text("response_format") == "text" {
            // As OpenAI answers `response_format=text`: the words alone, as plain text.
            return try await holdingSlot {
                let pace = MockPace(configuration)
                try await pace.first()
                try await pace.last()
                return Response(
                    status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(string: answer.text)))
            }
        }
        if parsed.stream {
            let includeUsage = (object["stream_options"] as? [String: Any])?["include_usage"] as? Bool ?? false
            return stream(answer.events(includeUsage: includeUsage), cacheHit: cache.hit, headers: cache.headers)
        }
        return try await json(object: answer.whole(), cacheHit: cache.hit, headers: cache.headers)
    }

    /// A rough prompt size: words of every string in the request's input.
    static func promptTokens(_ object: [String: Any]) -> Int {
        func words(_ value: Any?) -> Int {
            switch value {
            case let text as String: text.split(separator: " ").count
            case let list as [Any]: list.reduce(0) { $0 + words($1) }
            case let map as [String: Any]: words(map["content"]) + words(map["text"]) + words(map["input"])
            default: 0
            }
        }
        return max(1, words(object["messages"]) + words(object["prompt"]) + words(object["input"]) + words(object["system"]))
    }

    /// Eight numbers per input, derived from its text; base64 of float32s when asked for, as
    /// the official SDKs ask by default.
    static func embeddings(_ object: [String: Any], model: String, promptTokens: Int) -> [String: Any] {
        let inputs: [String]
        switch object["input"] {
        case let text as String: inputs = [text]
        case let list as [Any]: inputs = list.map { "\($0)" }
        default: inputs = [""]
        }
        let base64 = object["encoding_format"] as? String == "base64"
        let data: [[String: Any]] = inputs.enumerated().map { index, text in
            var seed = UInt64(truncatingIfNeeded: text.utf8.reduce(5381) { ($0 &* 33) &+ Int($1) })
            let vector: [Float] = (0..<8).map { _ in
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Float(seed >> 40) / Float(1 << 24) - 0.5
            }
            let embedding: Any =
                base64 ? vector.withUnsafeBufferPointer { Data(buffer: $0) }.base64EncodedString() : vector.map { Double($0) }
            return ["object": "embedding", "index": index, "embedding": embedding]
        }
        return ["object": "list", "data": data, "model": model, "usage": ["prompt_tokens": promptTokens, "total_tokens": promptTokens]]
    }

    private func nextNumber() -> Int { counterNext() }

    private func json(object: [String: Any], cacheHit: Bool = false, headers extra: HTTPFields = [:]) async throws -> Response {
        try await holdingSlot {
            let pace = MockPace(configuration, cacheHit: cacheHit)
            try await pace.first()
            try await pace.last()
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            var headers = extra
            headers[.contentType] = "application/json"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
    }

    /// A stream of events (``SSEEvent``'s carried form), paced as the chat stream is.
    private func stream(_ events: [String], cacheHit: Bool, headers extra: HTTPFields) -> Response {
        let configuration = configuration
        let stats = stats
        let slots = slots
        let body = ResponseBody { writer in
            await slots?.acquire()
            defer { slots?.release() }
            stats.update { $0.streamsStarted += 1 }
            stats.begin()
            defer { stats.end() }
            do {
                let pace = MockPace(configuration, cacheHit: cacheHit)
                try await pace.first()
                for (index, event) in events.enumerated() {
                    try await pace.part(index, of: events.count, pacedFrom: 2)
                    try await writer.write(ByteBuffer(string: SSEEvent.frame(event)))
                }
                try await writer.finish(nil)
                stats.update { $0.streamsCompleted += 1 }
            } catch {
                stats.update {
                    $0.streamsAborted += 1
                    $0.lastStreamAbortedAt = Int(Date().timeIntervalSince1970 * 1000)
                }
                throw error
            }
        }
        var headers = extra
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: body)
    }
}

/// One answer of the mock, whole or as its endpoint's stream.
struct Answer {
    let endpoint: Endpoint
    let model: String
    let number: Int
    let count: Int
    let prompt: Int
    let created = Int(Date().timeIntervalSince1970)

    var words: [String] { (0..<count).map { MockResponder.words[$0 % MockResponder.words.count] + ($0 + 1 < count ? " " : "") } }
    var text: String { words.joined() }

    /// The non-streamed answer.
    func whole() -> [String: Any] {
        switch endpoint {
        case .completions:
            return [
                "id": "cmpl-mock-\(number)", "object": "text_completion", "created": created, "model": model,
                "choices": [["index": 0, "text": text, "logprobs": NSNull(), "finish_reason": "stop"]],
                "usage": ["prompt_tokens": prompt, "completion_tokens": count, "total_tokens": prompt + count],
            ]
        case .responses:
            return response(status: "completed", output: [message(status: "completed", text: text)], usage: true)
        case .messages:
            return [
                "id": "msg_mock_\(number)", "type": "message", "role": "assistant", "model": model,
                "content": [["type": "text", "text": text]], "stop_reason": "end_turn", "stop_sequence": NSNull(),
                "usage": ["input_tokens": prompt, "output_tokens": count],
            ]
        case .audioTranscriptions:
            return [
                "text": text,
                "usage": ["type": "tokens", "input_tokens": prompt, "output_tokens": count, "total_tokens": prompt + count],
            ]
        case .chatCompletions, .embeddings:
            return [:]
        }
    }

    /// The streamed answer, event by event.
    func events(includeUsage: Bool) -> [String] {
        switch endpoint {
        case .completions:
            var events = words.map { chunk(["index": 0, "text": $0, "logprobs": NSNull(), "finish_reason": NSNull()]) }
            events.append(chunk(["index": 0, "text": "", "logprobs": NSNull(), "finish_reason": "stop"]))
            if includeUsage {
                events.append(
                    encode([
                        "id": "cmpl-mock-\(number)", "object": "text_completion", "created": created, "model": model, "choices": [],
                        "usage": ["prompt_tokens": prompt, "completion_tokens": count, "total_tokens": prompt + count],
                    ]))
            }
            return events + ["[DONE]"]
        case .responses:
            return responsesEvents()
        case .messages:
            return messagesEvents()
        case .chatCompletions, .embeddings, .audioTranscriptions:
            return []
        }
    }

    private func chunk(_ choice: [String: Any]) -> String {
        encode(["id": "cmpl-mock-\(number)", "object": "text_completion", "created": created, "model": model, "choices": [choice]])
    }

    private func encode(_ object: [String: Any]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8), as: UTF8.self)
    }

    private var itemID: String { "msg_mock_\(number)" }

    private func message(status: String, text: String?) -> [String: Any] {
        [
            "id": itemID, "type": "message", "status": status, "role": "assistant",
            "content": text.map { [["type": "output_text", "text": $0, "annotations": [Any]()]] } ?? [Any](),
        ]
    }

    private func response(status: String, output: [Any], usage: Bool) -> [String: Any] {
        [
            "id": "resp_mock_\(number)", "object": "response", "created_at": created, "status": status, "model": model,
            "output": output, "parallel_tool_calls": true, "tool_choice": "auto", "tools": [Any](), "error": NSNull(),
            "incomplete_details": NSNull(), "instructions": NSNull(), "metadata": [String: Any](),
            "usage": usage
                ? [
                    "input_tokens": prompt, "output_tokens": count, "total_tokens": prompt + count,
                    "input_tokens_details": ["cached_tokens": 0], "output_tokens_details": ["reasoning_tokens": 0],
                ] as Any : NSNull(),
        ]
    }

    private func responsesEvents() -> [String] {
        var sequence = 0
        var events: [String] = []
        func add(_ type: String, _ fields: [String: Any]) {
            var object = fields
            object["type"] = type
            object["sequence_number"] = sequence
            sequence += 1
            events.append(SSEEvent.pack(name: type, data: encode(object)))
        }
        let part: (String) -> [String: Any] = { ["type": "output_text", "text": $0, "annotations": [Any]()] }
        let place: [String: Any] = ["item_id": itemID, "output_index": 0, "content_index": 0]
        add("response.created", ["response": response(status: "in_progress", output: [], usage: false)])
        add("response.in_progress", ["response": response(status: "in_progress", output: [], usage: false)])
        add("response.output_item.added", ["output_index": 0, "item": message(status: "in_progress", text: nil)])
        add("response.content_part.added", place.merging(["part": part("")]) { $1 })
        for word in words { add("response.output_text.delta", place.merging(["delta": word, "logprobs": [Any]()]) { $1 }) }
        add("response.output_text.done", place.merging(["text": text, "logprobs": [Any]()]) { $1 })
        add("response.content_part.done", place.merging(["part": part(text)]) { $1 })
        add("response.output_item.done", ["output_index": 0, "item": message(status: "completed", text: text)])
        add(
            "response.completed",
            ["response": response(status: "completed", output: [message(status: "completed", text: text)], usage: true)])
        return events
    }

    private func messagesEvents() -> [String] {
        var events: [String] = []
        func add(_ type: String, _ fields: [String: Any]) {
            var object = fields
            object["type"] = type
            events.append(SSEEvent.pack(name: type, data: encode(object)))
        }
        add(
            "message_start",
            [
                "message": [
                    "id": itemID, "type": "message", "role": "assistant", "model": model, "content": [Any](),
                    "stop_reason": NSNull(), "stop_sequence": NSNull(), "usage": ["input_tokens": prompt, "output_tokens": 1],
                ]
            ])
        add("content_block_start", ["index": 0, "content_block": ["type": "text", "text": ""]])
        add("ping", [:])
        for word in words { add("content_block_delta", ["index": 0, "delta": ["type": "text_delta", "text": word]]) }
        add("content_block_stop", ["index": 0])
        add("message_delta", ["delta": ["stop_reason": "end_turn", "stop_sequence": NSNull()], "usage": ["output_tokens": count]])
        add("message_stop", [:])
        return events
    }
}
