import Foundation

/// Reads a batch input file (JSON Lines, one request per line, as OpenAI's Batch API takes
/// them) and refuses a malformed one with the number of its first bad line.
///
/// Each line is an object `{"custom_id": "…", "method": "POST", "url": "/v1/…", "body": {…}}`:
/// `custom_id` non-empty (at most 512 bytes) and unique in the file, `url` one of
/// ``endpoints``, `body` an object naming a `model`. Blank lines are skipped (and not numbered).
public enum BatchInput {
    /// The endpoints a batch's lines may call.
    public static let endpoints: [Endpoint] = [.chatCompletions, .completions, .embeddings, .responses]
    /// The most requests in one file (OpenAI's limit).
    public static let maxLines = 50_000
    /// The longest `custom_id`, in bytes.
    public static let maxCustomIDBytes = 512

    /// The endpoint of a line's or batch's `url` (`/v1/chat/completions`), if a batch may call it.
    public static func endpoint(url: String) -> Endpoint? {
        endpoints.first { "/v1" + $0.path == url }
    }

    /// The lines of an uploaded file.
    /// - Parameters:
    ///   - data: The file's bytes.
    ///   - maxLineBytes: The longest line (the gateway's body limit).
    /// - Returns: The lines, numbered from 1.
    /// - Throws: `MizanError` `badRequest` naming the first bad line.
    public static func lines(of data: Data, maxLineBytes: Int) throws -> [InputLine] {
        var lines: [InputLine] = []
        var seen: [String: Int] = [:]
        var number = 0
        var start = data.startIndex
        while start < data.endIndex {
            let end = data[start...].firstIndex(of: UInt8(ascii: "\n")) ?? data.endIndex
            var line = data[start..<end]
            start = end < data.endIndex ? data.index(after: end) : end
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            guard line.contains(where: { !($0 == 0x20 || $0 == 0x09) }) else { continue }
            number += 1
            guard number <= maxLines else {
                throw MizanError(.badRequest, "The file has more than \(maxLines) requests; split it into several batches.")
            }
            guard line.count <= maxLineBytes else {
                throw MizanError(.badRequest, "Line \(number) is \(line.count) bytes; a line may be at most \(maxLineBytes) bytes.")
            }
            let parsed = try parse(Data(line), number: number)
            if let first = seen[parsed.customID] {
                throw MizanError(
                    .badRequest,
                    "Line \(number) repeats the custom_id '\(SafeText.escaped(parsed.customID))' of line \(first); each custom_id must be unique."
                )
            }
            seen[parsed.customID] = number
            lines.append(parsed)
        }
        guard !lines.isEmpty else { throw MizanError(.badRequest, "The file has no requests; each line must be one JSON request.") }
        return lines
    }

    /// One line, checked.
    static func parse(_ raw: Data, number: Int) throws -> InputLine {
        func refuse(_ why: String) -> MizanError { MizanError(.badRequest, "Line \(number) \(why).") }
        guard let object = try? JSONSerialization.jsonObject(with: raw) as? [String: Any] else {
            throw refuse("is not a JSON object")
        }
        // A member named twice would be read one way here and another when the line runs.
        if let repeated = JSONScanner.duplicateTopLevelKey(in: raw) {
            throw refuse("names the member '\(SafeText.escaped(repeated))' twice")
        }
        guard let customID = object["custom_id"] as? String, !customID.isEmpty, customID.utf8.count <= maxCustomIDBytes,
            !customID.utf8.contains(0)
        else {
            throw refuse("needs a custom_id: a string of 1 to \(maxCustomIDBytes) bytes, without NUL characters")
        }
        guard (object["method"] as? String)?.uppercased() == "POST" else { throw refuse("needs \"method\": \"POST\"") }
        guard let url = object["url"] as? String, endpoint(url: url) != nil else {
            throw refuse("has an unsupported url; use one of \(endpoints.map { "/v1" + $0.path }.joined(separator: ", "))")
        }
        guard let body = object["body"] as? [String: Any] else { throw refuse("needs a body: the request, as a JSON object") }
        guard let model = body["model"] as? String, !model.isEmpty else { throw refuse("has a body without a model") }
        if body["stream"] as? Bool == true { throw refuse("asks for a stream; a batch's requests cannot stream") }
        return InputLine(number: number, customID: customID, url: url, raw: raw)
    }

    /// The request body of a stored line: its `body` member's bytes as uploaded, so that the
    /// same line always makes the same request (a resumed batch attaches to its line's job).
    /// - Parameter line: A line ``lines(of:maxLineBytes:)`` accepted.
    /// - Returns: Its `body`, as JSON.
    public static func body(of line: InputLine) throws -> Data {
        let bytes = [UInt8](line.raw)
        guard let range = JSONScanner.valueRange(in: bytes, key: "body") else {
            throw MizanError(.badRequest, "Line \(line.number) has no body.")
        }
        return Data(bytes[range])
    }

    /// A line of a batch's output or error file, as OpenAI writes them:
    /// `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`.
    /// - Parameters:
    ///   - customID: The line's `custom_id`.
    ///   - status: The HTTP status of its answer, when it got one.
    ///   - requestID: The gateway's request id of its answer.
    ///   - body: Its answer's body (JSON), when it got one.
    ///   - error: The code and message of an error without an answer (expired, cancelled).
    /// - Returns: The line, without its line end.
    public static func resultLine(customID: String, status: Int?, requestID: String?, body: Data?, error: (code: String, message: String)?)
        -> Data
    {
        var line = Data("{\"id\":\"batch_req_\(BatchIDs.hex())\",\"custom_id\":".utf8)
        line.append(jsonString(customID))
        line.append(contentsOf: ",\"response\":".utf8)
        if let status {
            line.append(contentsOf: "{\"status_code\":\(status),\"request_id\":".utf8)
            line.append(jsonString(requestID ?? ""))
            line.append(contentsOf: ",\"body\":".utf8)
            if let body, (try? JSONSerialization.jsonObject(with: body)) != nil {
                line.append(body.filter { $0 != UInt8(ascii: "\n") && $0 != UInt8(ascii: "\r") })
            } else {
                line.append(contentsOf: "null".utf8)
            }
            line.append(contentsOf: "}".utf8)
        } else {
            line.append(contentsOf: "null".utf8)
        }
        line.append(contentsOf: ",\"error\":".utf8)
        if let error {
            line.append(contentsOf: "{\"code\":".utf8)
            line.append(jsonString(error.code))
            line.append(contentsOf: ",\"message\":".utf8)
            line.append(jsonString(error.message))
            line.append(contentsOf: "}".utf8)
        } else {
            line.append(contentsOf: "null".utf8)
        }
        line.append(contentsOf: "}".utf8)
        return line
    }

    /// A JSON string literal.
    static func jsonString(_ text: String) -> Data {
        (try? JSONEncoder().encode(text)) ?? Data("\"\"".utf8)
    }
}
