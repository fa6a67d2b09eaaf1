import Foundation

/// Reads the token counts a provider reported, in whichever shape its endpoint uses, and
/// tolerates everything else in the body:
///
/// - OpenAI chat and completions: `usage.prompt_tokens`, `usage.completion_tokens`;
/// - embeddings: `usage.prompt_tokens` (no completion);
/// - Responses: `usage.input_tokens`, `usage.output_tokens`, at the top of a response or in
///   the `response` of a `response.completed` event;
/// - Anthropic Messages: `usage.input_tokens`, `usage.output_tokens`, at the top of a message,
///   in the `message` of `message_start` (input) and at the top of `message_delta` (output).
public enum ReportedUsage {
    private struct Counts: Decodable {
        var promptTokens: Int?
        var completionTokens: Int?
        var inputTokens: Int?
        var outputTokens: Int?

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            promptTokens = (try? container.decodeIfPresent(Int.self, forKey: .promptTokens)) ?? nil
            completionTokens = (try? container.decodeIfPresent(Int.self, forKey: .completionTokens)) ?? nil
            inputTokens = (try? container.decodeIfPresent(Int.self, forKey: .inputTokens)) ?? nil
            outputTokens = (try? container.decodeIfPresent(Int.self, forKey: .outputTokens)) ?? nil
        }

        enum CodingKeys: String, CodingKey {
            case promptTokens = "prompt_tokens"
            case completionTokens = "completion_tokens"
            case inputTokens = "input_tokens"
            case outputTokens = "output_tokens"
        }
    }

    /// The counts a JSON body (an answer, or one event's data) reports; either may be absent.
    /// - Parameter data: The JSON.
    /// - Returns: Prompt (input) and completion (output) tokens where reported, or `nil` when
    ///   the body reports no usage.
    public static func counts(in data: Data) -> (prompt: Int?, completion: Int?)? {
        // Only the `usage` objects are decoded: the rest of the body (an answer's text, every
        // chunk of a stream) is skipped over by the scanner instead of parsed whole.
        let bytes = [UInt8](data)
        guard let members = JSONScanner.topLevelMembers(in: bytes) else { return nil }
        func usage(_ members: [(key: String, value: Range<Int>)], in bytes: [UInt8]) -> Counts? {
            guard let range = members.last(where: { $0.key == "usage" })?.value else { return nil }
            return try? JSONDecoder().decode(Counts.self, from: Data(bytes[range]))
        }
        func nested(_ key: String) -> Counts? {
            guard let range = members.last(where: { $0.key == key })?.value else { return nil }
            let inner = Array(bytes[range])
            return JSONScanner.topLevelMembers(in: inner).flatMap { usage($0, in: inner) }
        }
        guard let counts = usage(members, in: bytes) ?? nested("response") ?? nested("message") else { return nil }
        let prompt = counts.promptTokens ?? counts.inputTokens
        let completion = counts.completionTokens ?? counts.outputTokens
        guard prompt != nil || completion != nil else { return nil }
        return (prompt, completion)
    }

    /// The usage of a whole JSON answer, as ``ChatUsage`` (an embedding's completion counts 0).
    /// - Parameters:
    ///   - data: The answer's body.
    ///   - endpoint: Its endpoint.
    /// - Returns: The usage, or `nil` when the answer reports none.
    public static func of(answer data: Data, endpoint: Endpoint) -> ChatUsage? {
        guard let counts = counts(in: data), let prompt = counts.prompt else { return nil }
        guard let completion = counts.completion ?? (endpoint == .embeddings ? 0 : nil) else { return nil }
        return ChatUsage(promptTokens: prompt, completionTokens: completion)
    }
}
