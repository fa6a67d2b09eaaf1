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
        discussion: """
            Answers POST /v1/chat/completions (and completions, embeddings, responses, messages, audio/transcriptions) and \
            GET /v1/models on 127.0.0.1 unless told otherwise; for trials, tests and benchmarks. GET /mock/stats counts what \
            it served (requests, inFlight, maxInFlight, waiting, prefixHits, prefixMisses, streams); GET /mock/last-request \
            shows the last request's body.

            Pace: each answer's first token comes after --latency-ms (a JSON answer then), the next ones every \
            --token-interval-ms. With --service-ms a request holds its slot that long in all instead: its first token \
            after --latency-ms, its last at --service-ms, the ones between spread evenly (a JSON answer at --service-ms). \
            With --prefix-cache, a request whose conversation prefix was served before (for chat the messages before \
            the last user message, for responses the input items before the last) waits --cached-prefill-ms instead of \
            --latency-ms, and its whole answer ends that much sooner.
            """
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
        help:
            "Serve one generation at a time (--slots 1) and answer GET /v1/models only between generations, as single-slot local servers do."
    )
    var singleSlot = false

    @Option(
        help: ArgumentHelp(
            "Serve at most this many requests at once; the others wait in arrival order, as a server with that many slots "
                + "makes them (default: no limit). --single-slot is --slots 1 with the model list "
                + "answered only between generations."))
    var slots: Int?

    @Option(
        name: .customLong("service-ms"),
        help: ArgumentHelp(
            "Milliseconds each request holds its slot in all: a JSON answer after it; a stream's first token after "
                + "--latency-ms and its last at this time, the tokens between spread evenly. Replaces --token-interval-ms."))
    var serviceMs: Int?

    @Flag(
        name: .customLong("prefix-cache"),
        help: ArgumentHelp(
            "Remember the conversation prefixes served (the last 1,024): a chat or responses request whose prefix was served "
                + "before gets its first token after --cached-prefill-ms instead of --latency-ms. Answers say "
                + "X-Mock-Prefix-Cache: hit or miss; /mock/stats counts prefixHits and prefixMisses."))
    var prefixCache = false

    @Option(
        name: .customLong("cached-prefill-ms"),
        help: "With --prefix-cache: the first token's delay in milliseconds on a hit (default: a tenth of --latency-ms).")
    var cachedPrefillMs: Int?

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
        if let slots {
            guard (1...100_000).contains(slots) else { throw ValidationError("--slots must be 1-100000.") }
            guard !singleSlot || slots == 1 else { throw ValidationError("--single-slot is one slot; leave out --slots or make it 1.") }
        }
        if let serviceMs {
            guard serviceMs >= 0 else { throw ValidationError("Delays must not be negative.") }
            guard tokenIntervalMs == 0 else {
                throw ValidationError("--service-ms spreads the tokens over the service time; leave out --token-interval-ms.")
            }
        }
        if let cachedPrefillMs {
            guard cachedPrefillMs >= 0 else { throw ValidationError("Delays must not be negative.") }
            guard prefixCache else { throw ValidationError("--cached-prefill-ms needs --prefix-cache.") }
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
            healthPath: healthPath,
            slots: slots,
            serviceTime: serviceMs.map { .milliseconds($0) },
            prefixCache: prefixCache,
            cachedPrefill: cachedPrefillMs.map { .milliseconds($0) }
        )
        let host = host
        let app = MockProvider.application(configuration, host: host, port: port, logger: logger) { port in
            logger.info("mizan-mock-provider listening on http://\(host):\(port)")
        }
        try await app.runService()
    }
}
