import Foundation
import MizanCore

/// A background response as the Responses API shows it: its object (`GET /v1/responses/{id}`)
/// and its events as a stream, numbered the same way every time they are read, so that a client
/// resumes a stream with `starting_after`.
enum ResponseObjects {
    /// The response object in its current state: the answer (with the background response's id
    /// and status) once completed, else the object's frame with `output` empty.
    static func object(of response: BackgroundResponse) -> Data {
        serialize(fields(of: response, status: response.status))
    }

    /// The response's events so far: `response.created` (0), `response.in_progress` (1), and once
    /// it has ended its text as `response.output_text.delta` and `.done` events and a last
    /// `response.completed`, `response.failed` or `response.cancelled`.
    static func events(of response: BackgroundResponse) -> [(type: String, data: Data)] {
        var events: [(String, [String: Any])] = [("response.created", ["response": fields(of: response, status: .queued)])]
        guard response.status != .queued else { return number(events) }
        events.append(("response.in_progress", ["response": fields(of: response, status: .inProgress)]))
        guard response.status.isTerminal else { return number(events) }
        let whole = fields(of: response, status: response.status)
        if response.status == .completed {
            for (index, item) in (whole["output"] as? [[String: Any]] ?? []).enumerated() {
                for (part, content) in (item["content"] as? [[String: Any]] ?? []).enumerated() {
                    guard let text = content["text"] as? String else { continue }
                    let place: [String: Any] = ["item_id": item["id"] ?? "", "output_index": index, "content_index": part]
                    events.append(("response.output_text.delta", place.merging(["delta": text]) { $1 }))
                    events.append(("response.output_text.done", place.merging(["text": text]) { $1 }))
                }
            }
        }
        let last =
            switch response.status {
            case .completed: "response.completed"
            case .cancelled: "response.cancelled"
            default: "response.failed"
            }
        events.append((last, ["response": whole]))
        return number(events)
    }

    private static func number(_ events: [(String, [String: Any])]) -> [(type: String, data: Data)] {
        events.enumerated().map { number, event in
            var body = event.1
            body["type"] = event.0
            body["sequence_number"] = number
            return (event.0, serialize(body))
        }
    }

    /// The object's members, shown in `status`.
    private static func fields(of response: BackgroundResponse, status: BackgroundResponse.Status) -> [String: Any] {
        var object: [String: Any] = [:]
        if status == .completed, let result = response.result,
            let answer = try? JSONSerialization.jsonObject(with: result) as? [String: Any]
        {
            object = answer
        } else {
            object = [
                "object": "response", "output": [Any](), "usage": NSNull(), "incomplete_details": NSNull(), "instructions": NSNull(),
                "metadata": [String: Any](), "parallel_tool_calls": true, "tool_choice": "auto", "tools": [Any](),
            ]
        }
        object["id"] = response.id
        object["object"] = "response"
        object["created_at"] = Int(response.createdAt.timeIntervalSince1970)
        object["model"] = object["model"] ?? response.model
        object["status"] = status.rawValue
        object["background"] = true
        if status == .failed, let failure = response.failure {
            object["error"] = ["code": failure.code, "message": failure.message]
        } else if object["error"] == nil {
            object["error"] = NSNull()
        }
        return object
    }

    private static func serialize(_ object: [String: Any]) -> Data {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    }
}
