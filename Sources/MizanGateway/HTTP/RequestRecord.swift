import Foundation
import Hummingbird
import MizanCore
import MizanStore
import Synchronization

/// How a request was served, as the serving path returns it: who served it, what it used, the
/// job behind an idempotent request. A streamed answer's usage is known only once its body has
/// been written: its ``StreamEnding`` holds it then.
struct RequestOutcome: Sendable {
    /// The route or node that served it.
    var servedBy: ServedBy?
    /// Token usage of a JSON answer (a stream's is in its ending).
    var usage: TokenUsage?
    /// The job that answered a request with an `Idempotency-Key` (its tokens count once
    /// however many retries get its answer).
    var jobID: JobID?

    init(servedBy: ServedBy? = nil, usage: TokenUsage? = nil, jobID: JobID? = nil) {
        self.servedBy = servedBy
        self.usage = usage
        self.jobID = jobID
    }
}

/// The end of a streamed answer, told by its body once the last byte is written: the usage
/// relayed, and why it broke when it did. Written once by the body, read once by the recorder.
final class StreamEnding: Sendable {
    private let state = Mutex<(usage: TokenUsage?, error: String?)>((nil, nil))

    init() {}

    /// The stream broke after its head went out.
    func broke(_ reason: String) { state.withLock { if $0.error == nil { $0.error = reason } } }

    /// The stream's usage as relayed.
    func used(_ usage: TokenUsage) { state.withLock { $0.usage = usage } }

    var usage: TokenUsage? { state.withLock { $0.usage } }
    var error: String? { state.withLock { $0.error } }
}

/// An answer and how it was served: what ``RouteServer`` and ``NodeServer`` return.
struct Served: Sendable {
    var response: Response
    var outcome: RequestOutcome
    /// Set for a streamed answer.
    var ending: StreamEnding?
}

/// A request that reached a route or a node and failed there: the client's error, and who
/// served it (recorded as for an answer).
struct ServingFailure: Error {
    var error: MizanError
    var outcome: RequestOutcome
}

/// The time a request spends waiting on upstream work before its answer's head — a provider
/// route's answer, a node's result or first event — which the gateway's own time
/// (`X-Mizan-Overhead-Ms`) leaves out.
final class UpstreamTime: Sendable {
    private let spent = Mutex(Duration.zero)

    init() {}

    /// Runs `work` and counts its time as upstream time.
    func measure<T>(_ work: () async throws -> T) async rethrows -> T {
        let started = ContinuousClock.now
        defer {
            let elapsed = ContinuousClock.now - started
            spent.withLock { $0 += elapsed }
        }
        return try await work()
    }

    var total: Duration { spent.withLock { $0 } }
}

/// What one request was and how it ended, kept in its context: the request middleware opens it,
/// the client controller says what was asked and, in one place, how it was served; the request
/// recorder reads it once the response has been written (one log line, metrics, a usage
/// record, the end of a counted key's admission).
final class RequestRecord: Sendable {
    /// What an inference request asked for.
    struct Inference: Sendable {
        var endpoint: Endpoint
        var model: String
    }

    /// Whether the gateway knows a request's model: only known models become metric labels and
    /// usage rows.
    enum ModelKnowledge: Sendable {
        case unknown
        /// Only nodes serve it: a metric label once a node served it (a node cannot grow the
        /// series by reporting names no request is ever served for).
        case known
        /// A provider route serves it: its name is a bounded label.
        case routed
    }

    /// The fields of a record.
    struct Fields: Sendable {
        var requestID = ""
        var apiKeyID: String?
        var inference: Inference?
        var model = ModelKnowledge.unknown
        var outcome = RequestOutcome()
        var ending: StreamEnding?
        /// A counted key's admission, ended when the request ends.
        var admission: KeyAdmissionEnd?
        /// The `x-ratelimit-*` headers every answer to a limited key carries.
        var rateLimitHeaders: [(String, String)] = []
        /// The gateway's own time until the answer's head.
        var overhead: Duration?
        /// The class the request was served in.
        var priority: PriorityClass?
    }

    private let state = Mutex(Fields())
    /// Waits on upstream work before the answer's head.
    let upstream = UpstreamTime()

    init() {}

    /// Everything recorded so far.
    var fields: Fields { state.withLock { $0 } }

    var requestID: String { state.withLock { $0.requestID } }
    /// The route or node that served the request, once known.
    var servedBy: ServedBy? { state.withLock { $0.outcome.servedBy } }
    var rateLimitHeaders: [(String, String)] { state.withLock { $0.rateLimitHeaders } }

    /// The class the request is served in.
    var priority: PriorityClass? {
        get { state.withLock { $0.priority } }
        set { state.withLock { $0.priority = newValue } }
    }

    /// The request middleware names the request.
    func begin(requestID: String) { state.withLock { $0.requestID = requestID } }

    /// The client authenticated with this key.
    func authenticated(apiKeyID: String) { state.withLock { $0.apiKeyID = apiKeyID } }

    /// What an inference request asked for, once its body was read.
    func asked(_ inference: Inference) { state.withLock { $0.inference = inference } }

    /// How well the gateway knows the request's model (a routed model stays routed).
    func model(_ knowledge: ModelKnowledge) {
        state.withLock { if $0.model != .routed { $0.model = knowledge } }
    }

    /// A counted key's limits: the headers every answer carries, and the admission to end.
    func limits(headers: [(String, String)], admission: KeyAdmissionEnd? = nil) {
        state.withLock {
            $0.rateLimitHeaders = headers
            $0.admission = admission
        }
    }

    /// How the request was served.
    func served(_ outcome: RequestOutcome, ending: StreamEnding? = nil) {
        state.withLock {
            $0.outcome = outcome
            $0.ending = ending
        }
    }

    /// The gateway's own time until the answer's head.
    func headReady(overhead: Duration) { state.withLock { $0.overhead = overhead } }
}
