import Foundation
import Hummingbird
import MizanCore
import MizanDispatch
import MizanStore

extension Gateway {
    /// Serves `stream: true` through an agent: the job is queued, the node that leases it posts
    /// the local provider's events to `/agent/v1/jobs/{id}/stream`, and they reach the client
    /// as they come. Nothing is sent before the first event, so a job that fails before any
    /// output still answers with a proper error status.
    func streamByAgents(_ chat: ChatCompletionRequest, request: DispatchRequest, trace: RequestTrace) async throws -> Response {
        // Listen before the job can be leased, so no event can arrive unheard.
        let (messages, continuation) = streams.subscribe(request.jobID)
        let pending: PendingJob
        do {
            pending = try await dispatcher.accept(request)
        } catch {
            continuation.finish()
            throw error
        }
        let dispatcher = dispatcher
        let watcher = Task {
            do {
                continuation.yield(.finished(.success(try await dispatcher.awaitFinish(pending))))
            } catch {
                continuation.yield(.finished(.failure(error)))
            }
        }
        // Stopping early (client gone, error) cancels the job; after a full stream the watcher
        // lives on until the node's completion lands (usage, fencing), bounded by the deadline.
        let stop: @Sendable (_ cancelJob: Bool) -> Void = { cancelJob in
            if cancelJob { watcher.cancel() }
            continuation.finish()
        }
        var iterator = messages.makeAsyncIterator()
        let first: StreamHub.Message?
        do {
            first = try await withTaskCancellationHandler {
                await iterator.next()
            } onCancel: {
                stop(true)
            }
        }
        switch first {
        case .data(let data):
            return streamResponse(first: data, rest: iterator, chat: chat, pendingID: pending.job.id, trace: trace, stop: stop)
        case .finished(.success(let job)):
            stop(false)
            trace.update { $0.servedBy = job.nodeID.map { "node/\($0)" } }
            switch job.state {
            case .timedOut: throw MizanError(.deadlineExceeded, "The request's deadline passed before a node answered.")
            case .failed: throw Self.error(ofFailed: job)
            default: throw MizanError(.upstreamFailure, "The node finished the stream without sending any event.")
            }
        case .finished(.failure(let error)):
            stop(false)
            throw error
        case .end, nil:
            stop(true)
            throw Task.isCancelled ? MizanError(.cancelled, "The request was cancelled.") : MizanError(.upstreamFailure, "The node's stream ended without any event.")
        }
    }

    private func streamResponse(
        first: String,
        rest: AsyncStream<StreamHub.Message>.Iterator,
        chat: ChatCompletionRequest,
        pendingID: JobID,
        trace: RequestTrace,
        stop: @escaping @Sendable (_ cancelJob: Bool) -> Void
    ) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let box = IteratorBox(rest)
        let body = ResponseBody { writer in
            var complete = false
            defer { stop(!complete) }
            var relay = StreamRelay(chat: chat)
            var sawDone = first == "[DONE]"
            try await writer.write(relay.frame(first))
            loop: while !sawDone, let message = await box.next() {
                switch message {
                case .data(let data):
                    try await writer.write(relay.frame(data))
                    sawDone = data == "[DONE]"
                case .end:
                    break loop
                case .finished(.success(let job)) where job.state == .succeeded:
                    break loop
                case .finished(.success(let job)):
                    let error = job.state == .timedOut
                        ? MizanError(.deadlineExceeded, "The request's deadline passed before the stream ended.") : Self.error(ofFailed: job)
                    trace.update { $0.streamError = error.message }
                    try await writer.write(StreamRelay.errorFrame(error))
                    break loop
                case .finished(.failure(let error)):
                    trace.update { $0.streamError = "\(error)" }
                    break loop
                }
            }
            if !sawDone { try await writer.write(relay.frame("[DONE]")) }
            complete = true
            trace.update { $0.usage = relay.usage }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    /// `POST /agent/v1/jobs/{id}/stream?attempt=N`: the node holding the lease streams the
    /// local provider's events (`text/event-stream` lines) while it produces them. Answers 409
    /// when the lease is not the node's, or when the client is gone (the node then aborts).
    func relayAgentStream(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let node = try await authenticateNode(request)
        let id = try Self.jobID(context)
        guard let attempt = request.uri.queryParameters.get("attempt").flatMap({ Int($0) }), (1...Self.maxAttempt).contains(attempt) else {
            throw MizanError(.badRequest, "The 'attempt' query parameter is required: an integer from 1 to \(Self.maxAttempt).")
        }
        guard let job = try await dispatcher.store.job(id) else { throw MizanError(.jobNotFound, "No job with id \(id).") }
        guard job.lease == Lease(jobID: id, attempt: attempt, nodeID: node.id), job.stream else {
            throw MizanError(.leaseConflict, "The node does not hold this lease (attempt \(attempt)); stop the job.")
        }
        context.trace.update { $0.servedBy = "node/\(node.id)" }
        var parser = ServerSentEventParser()
        // Events go to the client's request in this process; when it waits on another gateway
        // instance (shared PostgreSQL), they are relayed through the store, and the lease is
        // checked every second so a cancelled job stops the node.
        var relaying = false
        var checked = ContinuousClock.now
        let lease = Lease(jobID: id, attempt: attempt, nodeID: node.id)
        func forward(_ items: [String], end: Bool) async throws {
            var rest = items[...]
            if !relaying {
                while let item = rest.first, streams.publish(id, .data(item)) { rest = rest.dropFirst() }
                if rest.isEmpty {
                    // The end is a courtesy: a client that already read [DONE] has stopped listening.
                    if end { streams.publish(id, .end) }
                    return
                }
                guard try await dispatcher.store.relayStream(id, data: Array(rest), end: end) else {
                    throw MizanError(.leaseConflict, "No client is waiting for this job any more (cancelled); stop the job.")
                }
                relaying = true
                return
            }
            _ = try await dispatcher.store.relayStream(id, data: Array(rest), end: end)
            if ContinuousClock.now - checked > .seconds(1) {
                checked = .now
                guard try await dispatcher.store.job(id)?.lease == lease else {
                    throw MizanError(.leaseConflict, "The job was cancelled or moved on; stop the job.")
                }
            }
        }
        for try await buffer in request.body {
            let items = parser.feed(buffer.readableBytesView)
            if !items.isEmpty { try await forward(items, end: false) }
        }
        try await forward(parser.finish().map { [$0] } ?? [], end: true)
        return try HTTPResponses.json(AgentWire.ReportOutcome(jobID: id, state: job.state, error: nil))
    }
}

/// Lets the response body closure keep pulling from the iterator the handler started.
final class IteratorBox: @unchecked Sendable {
    private var iterator: AsyncStream<StreamHub.Message>.Iterator

    init(_ iterator: AsyncStream<StreamHub.Message>.Iterator) { self.iterator = iterator }

    /// The next message; only one task calls it at a time (the response writer).
    func next() async -> StreamHub.Message? { await iterator.next() }
}
