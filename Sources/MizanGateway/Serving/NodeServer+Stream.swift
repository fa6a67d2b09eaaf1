import Foundation
import Hummingbird
import MizanCore
import MizanDispatch
import NIOCore

extension NodeServer {
    /// Serves `stream: true` through an agent: the job is queued, the node that leases it
    /// streams the local provider's events (`Dispatcher.openStream(_:)`), and they reach the
    /// client as they come. Nothing is sent before the first event, so a job that fails before
    /// any output still answers with a proper error status.
    func stream(_ chat: ClientRequest, request: DispatchRequest, upstream: UpstreamTime) async throws -> Served {
        let events = try await dispatcher.submitStreaming(request)
        guard events.job.id == request.jobID else {
            // The idempotency key names an earlier stream, whose events went to that request.
            events.stop(cancellingJob: false)
            return try await replay(events.job, chat: chat)
        }
        switch await upstream.measure({ await events.next() }) {
        case .data(let data):
            let ending = StreamEnding()
            // The node that wrote the first event (not known for a stream relayed from another
            // instance); the job of an idempotent request.
            let outcome = RequestOutcome(
                servedBy: events.node.map { .node($0, name: dispatcher.nodeName($0)) },
                jobID: events.job.idempotencyKey != nil ? events.job.id : nil)
            return Served(
                response: streamResponse(first: data, rest: events, chat: chat, ending: ending), outcome: outcome, ending: ending)
        case .finished(.success(let job)):
            events.stop(cancellingJob: false)
            let outcome = outcome(of: job)
            switch job.state {
            case .timedOut:
                throw ServingFailure(
                    error: MizanError(.deadlineExceeded, "The request's deadline passed before a node answered."), outcome: outcome)
            case .failed: throw ServingFailure(error: Self.error(ofFailed: job), outcome: outcome)
            default:
                throw ServingFailure(
                    error: MizanError(.upstreamFailure, "The node finished the stream without sending any event."), outcome: outcome)
            }
        case .finished(.failure(let error)):
            events.stop(cancellingJob: false)
            throw error
        case .end, nil:
            events.stop(cancellingJob: true)
            throw Task.isCancelled
                ? MizanError(.cancelled, "The request was cancelled.")
                : MizanError(.upstreamFailure, "The node's stream ended without any event.")
        }
    }

    /// A retry of a streamed request (same Idempotency-Key): once its job has succeeded, the
    /// answer it kept is streamed again as one chunk (and usage) and `[DONE]`; while it still
    /// runs the retry is refused (its events go to the first request).
    private func replay(_ job: Job, chat: ClientRequest) async throws -> Served {
        let current = try await dispatcher.job(job.id) ?? job
        var outcome = outcome(of: current)
        outcome.jobID = current.id
        outcome.usage = current.usage
        let error: MizanError
        switch current.state {
        case .succeeded:
            guard chat.endpoint == .chatCompletions, let result = current.result, let events = StreamTranscript.replay(result) else {
                error = MizanError(
                    .conflict, "The streamed answer for this Idempotency-Key was not kept; send a new key for a new request.")
                break
            }
            let body = events.map { "data: \($0)\n\n" }.joined()
            return Served(response: .eventStream(.init(byteBuffer: ByteBuffer(string: body))), outcome: outcome)
        case .failed: error = Self.error(ofFailed: current)
        case .timedOut: error = MizanError(.deadlineExceeded, "The request's deadline passed before a node finished it.")
        case .accepted, .leased:
            error = MizanError(
                .conflict, "A streamed request with this Idempotency-Key is still running; retry once it has finished to get its answer.")
        }
        throw ServingFailure(error: error, outcome: outcome)
    }

    private func streamResponse(first: String, rest events: JobEvents, chat: ClientRequest, ending: StreamEnding) -> Response {
        .eventStream(
            ResponseBody { writer in
                // Stopping early (client gone, error) cancels the job.
                var complete = false
                defer { events.stop(cancellingJob: !complete) }
                var relay = StreamRelay(chat: chat)
                // Chat and completions streams end with [DONE]; the others with their own last event.
                let endsWithDone = chat.endpoint.endsWithDone
                var sawDone = first == "[DONE]"
                try await writer.write(relay.frame(first))
                loop: while !sawDone {
                    guard let event = await events.next() else {
                        // Cut off (a client that read too slowly for a stream relayed from another instance).
                        let error = MizanError(.upstreamFailure, "The stream was cut off: the client read it too slowly.")
                        ending.broke(error.message)
                        try await writer.write(StreamRelay.errorFrame(error, endpoint: chat.endpoint))
                        break loop
                    }
                    switch event {
                    case .data(let data):
                        try await writer.write(relay.frame(data))
                        sawDone = data == "[DONE]"
                    case .end:
                        break loop
                    case .finished(.success(let job)) where job.state == .succeeded:
                        break loop
                    case .finished(.success(let job)):
                        let error =
                            job.state == .timedOut
                            ? MizanError(.deadlineExceeded, "The request's deadline passed before the stream ended.")
                            : Self.error(ofFailed: job)
                        ending.broke(error.message)
                        try await writer.write(StreamRelay.errorFrame(error, endpoint: chat.endpoint))
                        break loop
                    case .finished(.failure(let error)):
                        ending.broke("\(error)")
                        break loop
                    }
                }
                if endsWithDone, !sawDone { try await writer.write(relay.frame("[DONE]")) }
                complete = true
                ending.used(bounded(relay.usage, chat: chat, answerBytes: relay.bytes, job: nil))
                try await writer.finish(nil)
            })
    }
}
