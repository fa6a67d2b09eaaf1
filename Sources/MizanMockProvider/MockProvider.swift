import Foundation
import Hummingbird
import Logging
import MizanCore

/// A synthetic OpenAI-compatible server for trials, tests and benchmarks: it answers
/// `POST /v1/chat/completions` (JSON, or server-sent events when `stream` is set, with usage),
/// `/v1/completions`, `/v1/embeddings`, `/v1/responses` and `/v1/messages` (each in its own
/// shape, with usage; Responses and Messages streams with named events), and `GET /v1/models`,
/// after a configurable latency.
///
/// For scheduler trials it can serve a bounded number of requests at once (``Configuration/slots``:
/// the others wait in arrival order), hold each for a set time (``Configuration/serviceTime``)
/// and keep a prompt prefix cache (``Configuration/prefixCache``): a request whose conversation
/// prefix it served before gets its first token sooner, and says so in `X-Mock-Prefix-Cache`.
/// `GET /mock/stats` counts what it served (`requests`, `inFlight`, `maxInFlight`, `waiting`,
/// `prefixHits`, `prefixMisses`, the streams…).
public enum MockProvider {
    /// How the mock behaves.
    public struct Configuration: Sendable {
        /// The models it serves; others get a 404.
        public var models: [String]
        /// Delay before the response (the first chunk, when streaming).
        public var latency: Duration
        /// Completion tokens per answer.
        public var tokens: Int
        /// Delay between streamed chunks.
        public var tokenInterval: Duration
        /// When set, requests must carry `Authorization: Bearer <apiKey>`.
        public var apiKey: String?
        /// When set, every chat completion is answered with this HTTP status (for failure trials).
        public var failureStatus: Int?
        /// Serves one generation at a time, as single-slot local servers do (llama-cpp-python,
        /// `llama-server` with one slot): other requests wait, and `GET /v1/models` answers only
        /// between generations.
        public var singleSlot: Bool
        /// When set, `GET` on this path at the root (e.g. `/health`, as llama.cpp and vLLM serve
        /// it) answers `{"status":"ok"}` at once, generating or not.
        public var healthPath: String?
        /// When set, at most this many requests are served at once; the others wait in arrival
        /// order (a server with that many slots). `nil`: as many as arrive. ``singleSlot`` is
        /// one slot, with its model list only between generations.
        public var slots: Int?
        /// When set, each request holds its slot this long in all: a JSON answer comes after it,
        /// a stream's first token after ``latency`` and its last at this time, the tokens between
        /// spread evenly (``tokenInterval`` is not used). Shorter than ``latency``: the tokens
        /// follow the first at once.
        public var serviceTime: Duration?
        /// Remember the conversation prefixes served (the last 1,024): a request whose prefix
        /// was served before waits ``cachedPrefill`` for its first token instead of ``latency``
        /// (its whole answer ends that much sooner), and every answer of chat and Responses
        /// says `X-Mock-Prefix-Cache: hit` or `miss`.
        public var prefixCache: Bool
        /// The first token's delay on a prefix cache hit; `nil`: a tenth of ``latency``.
        public var cachedPrefill: Duration?

        /// The first token's delay on a prefix cache hit.
        var effectiveCachedPrefill: Duration { cachedPrefill ?? latency / 10 }

        /// How many requests are served at once, when bounded.
        var slotCount: Int? { singleSlot ? 1 : slots }

        /// Creates a configuration.
        /// - Parameters:
        ///   - models: Models served (`mock-model`).
        ///   - latency: Delay before answering (none).
        ///   - tokens: Completion tokens per answer (16).
        ///   - tokenInterval: Delay between streamed chunks (none).
        ///   - apiKey: Required bearer key (none).
        ///   - failureStatus: Status to fail every completion with (none).
        ///   - singleSlot: One generation at a time, the model list only between them (off).
        ///   - healthPath: A health endpoint at the root that always answers (none).
        ///   - slots: Requests served at once (unbounded).
        ///   - serviceTime: How long each request holds its slot in all (as latency and pace make it).
        ///   - prefixCache: Whether to keep a prefix cache (off).
        ///   - cachedPrefill: The first token's delay on a prefix cache hit (a tenth of `latency`).
        public init(
            models: [String] = ["mock-model"],
            latency: Duration = .zero,
            tokens: Int = 16,
            tokenInterval: Duration = .zero,
            apiKey: String? = nil,
            failureStatus: Int? = nil,
            singleSlot: Bool = false,
            healthPath: String? = nil,
            slots: Int? = nil,
            serviceTime: Duration? = nil,
            prefixCache: Bool = false,
            cachedPrefill: Duration? = nil
        ) {
            self.singleSlot = singleSlot
            self.healthPath = healthPath
            self.slots = slots.map { max(1, $0) }
            self.serviceTime = serviceTime
            self.prefixCache = prefixCache
            self.cachedPrefill = cachedPrefill
            self.models = models
            self.latency = latency
            self.tokens = tokens
            self.tokenInterval = tokenInterval
            self.apiKey = apiKey
            self.failureStatus = failureStatus
        }
    }

    /// The mock's routes.
    /// - Parameter configuration: How it behaves.
    /// - Returns: A router to serve.
    public static func router(_ configuration: Configuration) -> Router<BasicRequestContext> {
        let router = Router()
        let responder = MockResponder(configuration: configuration)
        router.get("/v1/models") { request, _ in try await responder.models(request) }
        if let path = configuration.healthPath {
            router.get(RouterPath(path)) { _, _ in
                Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#)))
            }
        }
        router.post("/v1/chat/completions") { request, context in try await responder.chat(request, context: context) }
        for endpoint in Endpoint.allCases where endpoint != .chatCompletions {
            router.post(RouterPath("/v1" + endpoint.path)) { request, _ in try await responder.serve(endpoint, request) }
        }
        router.get("/mock/stats") { _, _ in responder.statsResponse() }
        router.get("/mock/last-request") { _, _ in responder.lastRequestResponse() }
        router.get("/healthz") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok"))) }
        return router
    }

    /// The mock as a runnable application.
    /// - Parameters:
    ///   - configuration: How it behaves.
    ///   - host: The address to bind (loopback by default).
    ///   - port: The port; 0 picks a free one.
    ///   - logger: Where it logs.
    ///   - onServerRunning: Called with the bound port once it listens.
    /// - Returns: The application; run it with `run()` or `runService()`.
    public static func application(
        _ configuration: Configuration,
        host: String = "127.0.0.1",
        port: Int = 0,
        logger: Logger = Logger(label: "mizan.mock-provider"),
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        Application(
            router: router(configuration),
            configuration: .init(address: .hostname(host, port: port), serverName: "mizan-mock-provider"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }
}
