import ArgumentParser
import Foundation
import Hummingbird
import Logging
import MizanMockProvider

/// `mizan-mock-provider`: a synthetic OpenAI-compatible server for trials, tests and benchmarks.
@main
struct MockProviderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mizan-mock-provider",
        abstract: "Serve a synthetic OpenAI-compatible API (chat completions, JSON and streaming, and a model list).",
        discussion:
            "Answers POST /v1/chat/completions and GET /v1/models on 127.0.0.1 unless told otherwise; for trials, tests and benchmarks."
    )

    @Option(help: "The address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "The port to listen on (0 picks a free one and logs it).")
    var port = 8081

    @Option(name: .customLong("latency-ms"), help: "Delay in milliseconds before each answer (before the first chunk when streaming).")
    var latencyMs = 0

    @Option(help: "Completion tokens per answer (a request's max_tokens may lower it).")
    var tokens = 16

    @Option(name: .customLong("token-interval-ms"), help: "Delay in milliseconds between streamed chunks.")
    var tokenIntervalMs = 0

    @Option(help: "Comma-separated models to serve.")
    var models = "mock-model"

    @Option(name: .customLong("api-key"), help: "Require this bearer key on every request.")
    var apiKey: String?

    @Option(name: .customLong("fail-status"), help: "Answer every chat completion with this HTTP status (for failure trials).")
    var failStatus: Int?

    @Flag(
        name: .customLong("single-slot"),
        help: "Serve one generation at a time and answer GET /v1/models only between generations, as single-slot local servers do.")
    var singleSlot = false

    @Option(
        name: .customLong("health-path"),
        help: "Answer GET on this path (e.g. /health, as llama.cpp and vLLM serve it) at once, generating or not.")
    var healthPath: String?

    func validate() throws {
        guard latencyMs >= 0, tokenIntervalMs >= 0 else { throw ValidationError("Delays must not be negative.") }
        guard tokens >= 0 else { throw ValidationError("--tokens must not be negative.") }
        guard !modelList.isEmpty else { throw ValidationError("--models needs at least one model.") }
        if let healthPath, !healthPath.hasPrefix("/") || healthPath.count > 200 {
            throw ValidationError("--health-path must start with /.")
        }
        if let failStatus, !(400...599).contains(failStatus) {
            throw ValidationError("--fail-status must be an HTTP error status (400-599).")
        }
    }

    var modelList: [String] {
        models.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func run() async throws {
        let logger = Logger(label: "mizan.mock-provider")
        let configuration = MockProvider.Configuration(
            models: modelList,
            latency: .milliseconds(latencyMs),
            tokens: tokens,
            tokenInterval: .milliseconds(tokenIntervalMs),
            apiKey: apiKey,
            failureStatus: failStatus,
            singleSlot: singleSlot,
            healthPath: healthPath
        )
        let host = host
        let app = MockProvider.application(configuration, host: host, port: port, logger: logger) { port in
            logger.info("mizan-mock-provider listening on http://\(host):\(port)")
        }
        try await app.runService()
    }
}
