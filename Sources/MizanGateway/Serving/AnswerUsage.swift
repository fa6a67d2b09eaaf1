import Foundation
import MizanCore

/// The token usage recorded for an answer.
enum AnswerUsage {
    /// Usage as the provider reported it, or estimated from the bytes when it did not (or
    /// reported counts that cannot be true).
    static func of(_ reported: ChatUsage?, chat: ClientRequest, result: Data) -> TokenUsage {
        if let reported, let usage = TokenUsage(reported: reported) { return usage }
        return TokenUsage(
            promptTokens: StreamUsageMeter.estimateTokens(chat.body.count), completionTokens: StreamUsageMeter.estimateTokens(result.count),
            source: .estimated)
    }
}
