import Foundation
import Hummingbird
import MizanCore

/// The bounds the agent API holds a node's input to.
enum AgentChecks {
    /// The highest attempt number a report may name (a job has a few at most).
    static let maxAttempt = 1_000_000

    static func checkAttempt(_ attempt: Int) throws {
        guard (1...maxAttempt).contains(attempt) else {
            throw MizanError(.badRequest, "'attempt' must be an integer from 1 to \(maxAttempt).")
        }
    }

    static func check(_ failure: AgentWire.Failure) throws {
        guard !failure.code.isEmpty, failure.code.unicodeScalars.count <= 200, failure.message.unicodeScalars.count <= 4000 else {
            throw MizanError(.badRequest, "A failure needs a 'code' of 1 to 200 characters and a 'message' of at most 4000.")
        }
    }

    static func check(_ report: NodeReport) throws {
        guard report.maxConcurrency >= 1, report.maxConcurrency <= 10_000 else {
            throw MizanError(.badRequest, "'maxConcurrency' must be between 1 and 10000.")
        }
        guard report.models.count <= 1000, report.models.allSatisfy({ !$0.isEmpty }) else {
            throw MizanError(.badRequest, "'models' must hold at most 1000 non-empty names.")
        }
        for model in report.models { try ChatCompletionRequest.checkModelName(model) }
        guard report.labels.count <= 64,
            report.labels.allSatisfy({ $0.key.unicodeScalars.count <= 256 && $0.value.unicodeScalars.count <= 1024 })
        else {
            throw MizanError(.badRequest, "'labels' must hold at most 64 labels (names up to 256 characters, values up to 1024).")
        }
        if let loaded = report.loadedModels {
            let limit = ChatCompletionRequest.maxModelNameBytes
            guard loaded.count <= NodeReport.maxLoadedModels,
                loaded.allSatisfy({ !$0.isEmpty && $0.utf8.count <= limit && !SafeText.containsControlCharacters($0) })
            else {
                throw MizanError(
                    .badRequest,
                    "'loadedModels' must hold at most \(NodeReport.maxLoadedModels) names of 1 to \(limit) bytes without control characters."
                )
            }
        }
        guard report.inFlight >= 0 else { throw MizanError(.badRequest, "'inFlight' must not be negative.") }
    }
}
