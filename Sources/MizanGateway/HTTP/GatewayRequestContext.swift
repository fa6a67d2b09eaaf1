import Foundation
import Hummingbird
import MizanCore
import NIOCore
import Synchronization

/// The request context of the gateway's router: Hummingbird's core storage plus a
/// ``RequestTrace`` that handlers fill in and the request middleware logs and records.
public struct GatewayRequestContext: RequestContext {
    /// Hummingbird's per-request storage.
    public var coreContext: CoreRequestContextStorage
    /// What this request was and how it was served.
    public let trace: RequestTrace
    /// The client's connection (to notice the client going away).
    let channel: (any Channel)?

    /// Creates a context for a request arriving on a connection.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        trace = RequestTrace()
        channel = source.channel
    }

    /// Bodies decoded by `request.decode` (admin and agent calls) stay small.
    public var maxUploadSize: Int { 1 << 20 }
}

/// What one request asked for and how it was served, filled in by handlers and read once the
/// response has been written: the request log line and the usage record come from it.
public final class RequestTrace: Sendable {
    /// The fields of a trace.
    public struct Fields: Sendable {
        /// The request id (echoed or created `X-Request-Id`).
        public var requestID = ""
        /// The client's API key id, once authenticated.
        public var apiKeyID: String?
        /// The public model, for chat completions.
        public var model: String?
        /// Whether ``model`` is one the gateway knows (a route or a node serves it). Only known
        /// models become metric labels and usage rows; others are counted as `unknown`.
        public var modelKnown = false
        /// Whether a provider route serves the model (its name is a bounded metric label; a
        /// model that only nodes advertise is a label only once a node served it).
        public var modelRouted = false
        /// The provider route name or `node/<id>` that served it.
        public var servedBy: String?
        /// Token usage of the answer.
        public var usage: TokenUsage?
        /// The job that answered a request with an `Idempotency-Key` (its tokens count once
        /// however many retries get its answer).
        public var jobID: JobID?
        /// Whether the request asked for a stream.
        public var stream = false
        /// The inference endpoint called, for the inference endpoints.
        public var endpoint: Endpoint?
        /// Set when a stream broke after its head was sent.
        public var streamError: String?
        /// A counted key's admission: the key, its hold and the tokens it reserved, released and
        /// settled when the request ends.
        public var admission: (key: APIKey, holdID: String, reserved: Int, admittedAt: Date)?
        /// The `x-ratelimit-*` headers every answer to a limited key carries.
        public var rateLimitHeaders: [(String, String)] = []
        /// Time spent waiting on upstream work before the answer's head: a provider route's
        /// answer, or a node's result (the first event of a stream) — what the gateway's own
        /// time (`X-Mizan-Overhead-Ms`) leaves out.
        public var upstream: Duration = .zero
        /// The gateway's own time until the answer's head (set when the head is ready).
        public var overhead: Duration?
    }

    private let state = Mutex(Fields())

    /// Creates an empty trace.
    public init() {}

    /// The current fields.
    public var fields: Fields { state.withLock { $0 } }

    /// Changes fields.
    public func update(_ change: (inout Fields) -> Void) {
        state.withLock { change(&$0) }
    }

    /// Runs `work` (a wait on an upstream) and counts its time as upstream time.
    public func upstream<T>(_ work: () async throws -> T) async rethrows -> T {
        let started = ContinuousClock.now
        defer {
            let spent = ContinuousClock.now - started
            state.withLock { $0.upstream += spent }
        }
        return try await work()
    }
}
