import Foundation
import Hummingbird
import Logging
import MizanCore
import MizanDispatch
import MizanStore

/// Serves a client request through agent nodes: a durable dispatch job that a node leases,
/// runs against its local provider and reports (streaming as it goes for `stream: true`).
struct NodeServer: Sendable {
    let dispatcher: Dispatcher
    /// How long a job may wait for its first lease before the request gets 429.
    let maxQueueWait: Duration
    let logger: Logger

    /// Where a request stands in the node queue.
    struct Queueing: Sendable {
        /// Its class.
        var priority = PriorityClass.standard
        /// Its key's share in its class.
        var weight = 1
        /// The most of its key's requests waiting at once.
        var maxQueued: Int?
        /// When it goes elsewhere if no node leased it (`local-first`).
        var spillAfter: Duration?
        /// The conversation it continues (affinity).
        var conversation: ConversationKeys?
    }

    /// Serves a request through agent nodes: a durable dispatch job that a node leases, runs
    /// against its local provider and reports. The request waits for the job's end.
    /// - Parameters:
    ///   - chat: The client's request.
    ///   - apiKeyID: The client's key.
    ///   - idempotencyKey: The key under which a retry attaches to this request's job.
    ///   - until: The request's deadline.
    ///   - requestID: The request's id.
    ///   - upstream: Where the wait for the node's answer is counted.
    ///   - queueing: Its class, share, queue cap, spill and conversation.
    /// - Returns: The answer and how it was served.
    /// - Throws: ``ServingFailure`` when the job failed on a node; `JobSpilled` when no node
    ///   leased it within its spill time; `MizanError` before that.
    func serve(
        _ chat: ClientRequest, apiKeyID: String, idempotencyKey: String? = nil, until: ContinuousClock.Instant, requestID: String,
        upstream: UpstreamTime, queueing: Queueing = Queueing()
    ) async throws -> Served {
        let remaining = until - .now
        guard remaining > .zero else { throw MizanError(.deadlineExceeded, "The request's deadline passed.") }
        let request = DispatchRequest(
            model: chat.model,
            endpoint: chat.endpoint,
            body: chat.body,
            stream: chat.stream,
            requestID: requestID,
            deadline: remaining,
            priority: queueing.priority.rank,
            idempotencyKey: idempotencyKey,
            apiKeyID: apiKeyID,
            queueTimeout: maxQueueWait,
            weight: queueing.weight,
            maxQueued: queueing.maxQueued,
            spillAfter: queueing.spillAfter,
            conversation: queueing.conversation
        )
        if chat.stream { return try await stream(chat, request: request, upstream: upstream) }
        let pending = try await dispatcher.accept(request)
        let job = try await upstream.measure { try await dispatcher.awaitFinish(pending) }
        return try served(job, chat: chat)
    }

    /// The answer of a finished job, or its failure.
    /// - Throws: ``ServingFailure`` for a job that failed or timed out.
    func served(_ job: Job, chat: ClientRequest) throws -> Served {
        var outcome = outcome(of: job)
        switch job.state {
        case .succeeded:
            let result = job.result ?? Data()
            outcome.usage =
                job.usage.map { bounded($0, chat: chat, answerBytes: result.count, job: job) }
                ?? .answering(chat, reported: nil, answer: result)
            return Served(response: JSONResponse.answer(result, endpoint: chat.endpoint), outcome: outcome)
        case .timedOut:
            throw ServingFailure(
                error: MizanError(.deadlineExceeded, "The request's deadline passed before a node finished it."), outcome: outcome)
        case .failed:
            throw ServingFailure(error: Self.error(ofFailed: job), outcome: outcome)
        case .accepted, .leased:
            throw ServingFailure(error: MizanError(.internalError, "The job ended in an unexpected state."), outcome: outcome)
        }
    }

    /// Who served a finished job (the node by id and, when this instance has it at hand, by
    /// name: never a read of the store on the answer's path) and the job behind an idempotent
    /// request.
    func outcome(of job: Job) -> RequestOutcome {
        var outcome = RequestOutcome(jobID: job.idempotencyKey != nil ? job.id : nil)
        if let id = job.nodeID { outcome.servedBy = .node(id, name: dispatcher.nodeName(id)) }
        return outcome
    }

    /// A node's usage as counted: bounded by what its request could produce (a node that claims
    /// more is logged and counted by an estimate).
    func bounded(_ usage: TokenUsage, chat: ClientRequest, answerBytes: Int, job: Job?) -> TokenUsage {
        let (counted, replaced) = usage.bounded(requestBytes: chat.body.count, outputLimit: chat.outputLimit, answerBytes: answerBytes)
        if replaced {
            logger.warning(
                "a node claimed more tokens than its request could produce; counted an estimate",
                metadata: [
                    "mizan.node.id": "\(job?.nodeID.map { "\($0)" } ?? "-")", "mizan.tokens.prompt": "\(usage.promptTokens)",
                    "mizan.tokens.completion": "\(usage.completionTokens)",
                ])
        }
        return counted
    }

    /// The client-facing error of a failed job; the node's message never includes secrets.
    static func error(ofFailed job: Job) -> MizanError {
        switch job.errorCode {
        case JobErrorCode.cancelled: MizanError(.cancelled, "The request was cancelled.")
        case JobErrorCode.deadlineExceeded: MizanError(.deadlineExceeded, "The request's deadline passed before a node finished it.")
        case JobErrorCode.nodeLost: MizanError(.upstreamFailure, "The node serving the request went away and no attempt is left.")
        case AgentWire.FailureCode.requestTooLarge:
            MizanError(.payloadTooLarge, "The request is too large for the node serving it: \(job.errorMessage ?? "no detail").")
        case AgentWire.FailureCode.invalidRequest:
            MizanError(.badRequest, "The node serving the request refused it as invalid: \(job.errorMessage ?? "no detail").")
        default:
            MizanError(.upstreamFailure, "The node serving the request failed: \(job.errorMessage ?? job.errorCode ?? "unknown error").")
        }
    }
}
