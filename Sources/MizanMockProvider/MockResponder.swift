import Foundation
import HTTPTypes
import Hummingbird
import MizanCore
import Synchronization

/// Builds the mock's answers.
struct MockResponder: Sendable {
    let configuration: MockProvider.Configuration
    private let counter = Counter()
    let stats = Stats()
    /// The body of the last request, as it arrived (`GET /mock/last-request`).
    let lastBody = LastBody()
    /// The generation slots, when they are bounded (``MockProvider/Configuration/slots``).
    let slots: MockSlots?
    /// The prefix cache, when it is kept.
    let prefixes: PrefixCache?

    /// The header that says whether a request's prefix was cached.
    static let prefixCacheHeader = HTTPField.Name("X-Mock-Prefix-Cache")!

    init(configuration: MockProvider.Configuration) {
        self.configuration = configuration
        self.slots = configuration.slotCount.map(MockSlots.init(capacity:))
        self.prefixes = configuration.prefixCache ? PrefixCache() : nil
    }

    /// Runs `body` holding a slot (when they are bounded), counted in flight meanwhile.
    func holdingSlot<T>(_ body: () async throws -> T) async throws -> T {
        await slots?.acquire()
        stats.begin()
        defer {
            stats.end()
            slots?.release()
        }
        return try await body()
    }

    /// Looks a chat or Responses request's prefix up in the prefix cache, when it is kept.
    /// - Returns: Whether it is a hit, and the headers that say so (none without a cache).
    func lookUpPrefix(_ endpoint: Endpoint, model: String, body: Data) -> (hit: Bool, headers: HTTPFields) {
        guard let prefixes, endpoint == .chatCompletions || endpoint == .responses else { return (false, [:]) }
        let hit = prefixes.lookUp(PrefixCache.keys(endpoint: endpoint, model: model, body: body))
        stats.update {
            if hit { $0.prefixHits += 1 } else { $0.prefixMisses += 1 }
        }
        var headers = HTTPFields()
        headers[Self.prefixCacheHeader] = hit ? "hit" : "miss"
        return (hit, headers)
    }

    final class LastBody: Sendable {
        private let value = Mutex<Data?>(nil)
        func withLock<T>(_ body: (inout Data?) -> T) -> T { value.withLock { body(&$0) } }
    }

    final class Counter: Sendable {
        private let value = Mutex(0)
        func next() -> Int {
            value.withLock {
                $0 += 1
                return $0
            }
        }
    }

    /// What the mock has served, for tests that check a stream was cut off (`GET /mock/stats`).
    final class Stats: Sendable {
        struct Values: Codable, Sendable {
            var requests = 0
            /// Chat requests answered with the configured failure status.
            var failed = 0
            var streamsStarted = 0
            var streamsCompleted = 0
            var streamsAborted = 0
            /// Requests being served now (holding a slot, when they are bounded).
            var inFlight = 0
            var maxInFlight = 0
            /// Requests waiting for a slot now.
            var waiting = 0
            /// Requests whose conversation prefix was served before (with a prefix cache).
            var prefixHits = 0
            /// Requests whose prefix was not (or that have none).
            var prefixMisses = 0
            /// When the last stream's client went away, in milliseconds since 1970.
            var lastStreamAbortedAt: Int?
        }

        private let values = Mutex(Values())
        func update(_ change: (inout Values) -> Void) { values.withLock { change(&$0) } }
        var snapshot: Values { values.withLock { $0 } }

        func begin() {
            update {
                $0.inFlight += 1
                $0.maxInFlight = max($0.maxInFlight, $0.inFlight)
            }
        }

        func end() { update { $0.inFlight -= 1 } }
    }

    func statsResponse() -> Response {
        var snapshot = stats.snapshot
        snapshot.waiting = slots?.waiting ?? 0
        return json(snapshot)
    }

    func lastRequestResponse() -> Response {
        let body = lastBody.withLock { $0 } ?? Data("null".utf8)
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    static let words = ["mizan", "balances", "every", "request", "across", "the", "nodes", "it", "knows"]

    func models(_ request: Request) async throws -> Response {
        if let refusal = authorize(request) { return refusal }
        if configuration.singleSlot, let slots {
            // Only between generations, as single-slot servers answer it.
            await slots.acquire()
            slots.release()
        }
        let list = ModelList(data: configuration.models.map { ModelList.Model(id: $0, created: 1_700_000_000, ownedBy: "mizan-mock") })
        return json(list)
    }

    func chat(_ request: Request, context: BasicRequestContext) async throws -> Response {
        if let refusal = authorize(request) { return refusal }
        var request = request
        let buffer = try await request.collectBody(upTo: 4 * 1024 * 1024)
        lastBody.withLock { $0 = Data(buffer.readableBytesView) }
        let chat: ChatCompletionRequest
        do {
            chat = try ChatCompletionRequest(body: Data(buffer.readableBytesView))
        } catch let error as MizanError {
            return failure(error)
        }
        guard configuration.models.contains(chat.model) else {
            return failure(MizanError(.modelNotFound, "The model '\(chat.model)' does not exist."))
        }
        if let status = configuration.failureStatus {
            stats.update { $0.failed += 1 }
            return failure(MizanError(.upstreamFailure, "The mock provider was told to fail."), status: status)
        }
        stats.update { $0.requests += 1 }
        let cache = lookUpPrefix(.chatCompletions, model: chat.model, body: Data(buffer.readableBytesView))
        let id = "chatcmpl-mock-\(counter.next())"
        let created = Int(Date().timeIntervalSince1970)
        let tokens = chat.maxCompletionTokens ?? chat.maxTokens ?? configuration.tokens
        let count = max(0, min(tokens, configuration.tokens))
        let promptTokens = chat.messages.reduce(0) { $0 + ($1.content?.split(separator: " ").count ?? 0) } + 3 * chat.messages.count
        let usage = ChatUsage(promptTokens: promptTokens, completionTokens: count)
        if chat.stream {
            return stream(
                id: id, created: created, model: chat.model, count: count, usage: chat.includeUsageInStream ? usage : nil,
                cacheHit: cache.hit, headers: cache.headers)
        }
        return try await holdingSlot {
            let pace = MockPace(configuration, cacheHit: cache.hit)
            try await pace.first()
            try await pace.last()
            let text = (0..<count).map { Self.words[$0 % Self.words.count] }.joined(separator: " ")
            let response = ChatCompletionResponse(
                id: id, created: created, model: chat.model,
                choices: [.init(index: 0, message: ChatMessage(role: "assistant", content: text), finishReason: "stop")],
                usage: usage
            )
            return json(response, headers: cache.headers)
        }
    }

    private func stream(
        id: String, created: Int, model: String, count: Int, usage: ChatUsage?, cacheHit: Bool, headers extra: HTTPFields
    ) -> Response {
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
                try await Self.writeStream(
                    to: &writer, pace: MockPace(configuration, cacheHit: cacheHit), id: id, created: created, model: model, count: count,
                    usage: usage)
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

    private static func writeStream(
        to writer: inout any ResponseBodyWriter, pace: MockPace, id: String, created: Int, model: String, count: Int, usage: ChatUsage?
    ) async throws {
        try await pace.first()
        let encoder = JSONEncoder()
        func send(_ chunk: ChatCompletionChunk) async throws {
            var buffer = ByteBuffer(string: "data: ")
            buffer.writeBytes(try encoder.encode(chunk))
            buffer.writeString("\n\n")
            try await writer.write(buffer)
        }
        try await send(
            ChatCompletionChunk(
                id: id, created: created, model: model,
                choices: [.init(index: 0, delta: .init(role: "assistant", content: ""), finishReason: nil)]))
        for index in 0..<count {
            try await pace.part(index, of: count)
            let word = Self.words[index % Self.words.count] + (index + 1 < count ? " " : "")
            try await send(
                ChatCompletionChunk(
                    id: id, created: created, model: model, choices: [.init(index: 0, delta: .init(content: word), finishReason: nil)]))
        }
        try await pace.last()
        try await send(
            ChatCompletionChunk(id: id, created: created, model: model, choices: [.init(index: 0, delta: .init(), finishReason: "stop")]))
        if let usage {
            try await send(ChatCompletionChunk(id: id, created: created, model: model, choices: [], usage: usage))
        }
        try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
        try await writer.finish(nil)
    }

    /// Refuses a request without the configured key (`Authorization: Bearer`, or `x-api-key` on
    /// Anthropic's endpoint).
    func authorize(_ request: Request, anthropic: Bool = false) -> Response? {
        guard let key = configuration.apiKey else { return nil }
        if request.headers[.authorization] == "Bearer \(key)" { return nil }
        if anthropic, let name = HTTPField.Name("x-api-key"), request.headers[name] == key { return nil }
        return failure(MizanError(.unauthorized, "Incorrect API key provided."), anthropic: anthropic)
    }

    /// The next answer's number.
    func counterNext() -> Int { counter.next() }

    private func json(_ value: some Encodable, headers extra: HTTPFields = [:]) -> Response {
        let data = (try? JSONEncoder().encode(value)) ?? Data()
        var headers = extra
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func failure(_ error: MizanError, status: Int? = nil, anthropic: Bool = false) -> Response {
        let data = (anthropic ? try? JSONEncoder().encode(error.anthropicEnvelope) : try? JSONEncoder().encode(error.envelope)) ?? Data()
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .init(code: status ?? error.httpStatus), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
