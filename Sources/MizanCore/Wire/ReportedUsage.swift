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

    /// Each field read on its own: one of an unexpected type (a `message` that is text) does
    /// not hide the others.
    private struct Holder: Decodable {
        var usage: Counts?
        var response: Inner?
        var message: Inner?

        enum CodingKeys: String, CodingKey { case usage, response, message }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            usage = (try? container.decodeIfPresent(Counts.self, forKey: .usage)) ?? nil
            response = (try? container.decodeIfPresent(Inner.self, forKey: .response)) ?? nil
            message = (try? container.decodeIfPresent(Inner.self, forKey: .message)) ?? nil
        }
    }

    private struct Inner: Decodable {
        var usage: Counts?

        enum CodingKeys: String, CodingKey { case usage }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            usage = (try? container.decodeIfPresent(Counts.self, forKey: .usage)) ?? nil
        }
    }

    /// The counts a JSON body (an answer, or one event's data) reports; either may be absent.
    /// - Parameter data: The JSON.
    /// - Returns: Prompt (input) and completion (output) tokens where reported, or `nil` when
    ///   the body reports no usage.
    public static func counts(in data: Data) -> (prompt: Int?, completion: Int?)? {
        guard let holder = try? JSONDecoder().decode(Holder.self, from: data),
            let counts = holder.usage ?? holder.response?.usage ?? holder.message?.usage
        else { return nil }
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
