import Foundation
import Hummingbird
import MizanCore
import MizanDispatch
import MizanStore
import NIOCore
import Synchronization

/// Serves one request of a batch (a line) as the gateway serves a client's, under the batch's
/// key: its limits and budget apply, its usage is recorded once, one log line is written.
///
/// Where it runs: a batch is work that can wait, so a line goes to agent nodes whenever its
/// model's placement names nodes and a node has served the model — as a job of the batch's
/// class that waits for nodes that go away, is not promoted before the batch's spill point and
/// is leased behind every higher class. Past the spill point a line no node took goes to the
/// model's provider routes, where its placement allows the cloud; a model only routes serve
/// (`cloud-only`, or no node knows it) goes to its routes at once. A line's job has the
/// idempotency key `batch:<id>:<line>`, so that a line resumed after a restart attaches to the
/// job it had instead of running again.
struct LineServer: Sendable {
    let client: ClientController
    let recorder: RequestRecorder

    /// One line to serve.
    struct Line: Sendable {
        var batch: Batch
        var key: APIKey
        var input: InputLine
        /// When lines no node took may go to routes.
        var spillPoint: Date
    }

    /// How a line's serving ended.
    enum End: Sendable {
        /// Answered or failed for good: its result.
        case ended(LineResult)
        /// Not run before the batch's window closed: its result (`batch_expired`).
        case expired(LineResult)
        /// Refused for now (the key's rate or concurrency limit): try again later.
        case later
        /// The key's budget is spent: the batch stops.
        case outOfBudget(MizanError)
        /// Withdrawn from the queue because the batch is being cancelled.
        case withdrawn
    }

    /// Serves a line.
    /// - Parameters:
    ///   - line: The line.
    ///   - cancelling: Whether the batch is being cancelled (a withdrawn line is then not sent on).
    ///   - queued: Called with the line's job once it is queued for nodes.
    func serve(_ line: Line, cancelling: @escaping @Sendable () -> Bool, queued: @escaping @Sendable (JobID) -> Void) async -> End {
        let started = ContinuousClock.now
        let record = RequestRecord()
        record.begin(requestID: TimeOrderedID.text(TimeOrderedID.make()))
        record.authenticated(apiKeyID: line.key.id)
        record.priority = line.batch.priority
        let (end, status) = await attempt(line, record: record, cancelling: cancelling, queued: queued)
        // Usage is written (and the key's admission ended) before the line's result is: a crash
        // between the two runs the line again on its job, whose tokens count once.
        await recorder.finish(method: "POST", path: "/v1/batches/\(line.batch.id)", status: status, started: started, record: record)
        return end
    }

    /// Serves a line once; returns how it ended and the status its request is recorded with.
    private func attempt(
        _ line: Line, record: RequestRecord, cancelling: @escaping @Sendable () -> Bool, queued: @escaping @Sendable (JobID) -> Void
    ) async -> (End, Int) {
        let requestID = record.requestID
        var status = 200
        var body = Data()
        var place = LineResult.Place.none
        do {
            let chat = try ClientRequest(
                endpoint: line.batch.endpoint, body: try BatchInput.body(of: line.input), contentType: "application/json")
            record.asked(.init(endpoint: chat.endpoint, model: chat.model))
            guard line.key.policy.allows(chat.model) else { throw ClientController.unknownModel(chat.model) }
            if line.key.policy.isCounted {
                let remaining = max(.seconds(1), Duration.seconds(line.batch.expiresAt.timeIntervalSinceNow))
                try await client.admissions.open(
                    line.key, deadline: min(remaining, client.limits.maxDeadline), reserve: client.reservation(for: chat, key: line.key),
                    record: record)
            }
            let served = try await serveChat(chat, line: line, record: record, cancelling: cancelling, queued: queued)
            guard let served else {
                return (.withdrawn, 499)
            }
            record.served(served.outcome)
            place = Self.place(of: served.outcome)
            status = Int(served.response.status.code)
            body = await Self.collect(served.response)
        } catch let failure as ServingFailure {
            record.served(failure.outcome)
            place = Self.place(of: failure.outcome)
            status = failure.error.httpStatus
            body = Self.body(of: failure.error)
        } catch let error as MizanError {
            status = error.httpStatus
            switch error.code {
            case .quotaExceeded: return (.outOfBudget(error), status)
            case .rateLimited, .noCapacity: return (.later, status)
            default: body = Self.body(of: error)
            }
        } catch {
            let refusal = MizanError(.internalError, "The line could not be served: \(error).")
            status = refusal.httpStatus
            body = Self.body(of: refusal)
        }
        // A line failed on a node as the window closed (its job's deadline is the window's end; a
        // node refuses a job whose deadline has just passed) did not run in time.
        if !(200..<300).contains(status), status == 504 || place == .node,
            Date() >= line.batch.expiresAt.addingTimeInterval(-1)
        {
            let expired = End.expired(
                LineResult(
                    number: line.input.number, succeeded: false,
                    line: BatchInput.resultLine(
                        customID: line.input.customID, status: nil, requestID: nil, body: nil,
                        error: ("batch_expired", "This request could not be executed before the completion window expired.")),
                    place: .none))
            return (expired, status)
        }
        let succeeded = (200..<300).contains(status)
        let result = LineResult(
            number: line.input.number, succeeded: succeeded,
            line: BatchInput.resultLine(customID: line.input.customID, status: status, requestID: requestID, body: body, error: nil),
            place: place)
        return (.ended(result), status)
    }

    /// Serves a line's request on nodes, then routes as its placement and the batch's spill
    /// point allow. `nil`: withdrawn from the queue for a cancel.
    private func serveChat(
        _ chat: ClientRequest, line: Line, record: RequestRecord, cancelling: @escaping @Sendable () -> Bool,
        queued: @escaping @Sendable (JobID) -> Void
    ) async throws -> Served? {
        let order = client.placement.order(model: chat.model, endpoint: chat.endpoint)
        let candidates = order.contains(.providerRoutes) ? client.routes.routes.candidates(for: chat.model, endpoint: chat.endpoint) : []
        let until = ContinuousClock.now.advanced(by: .seconds(max(0, line.batch.expiresAt.timeIntervalSinceNow)))
        if order.contains(.agentNodes), try await nodesKnow(chat) {
            record.model(.known)
            let spill = candidates.isEmpty ? nil : Duration.seconds(max(0, line.spillPoint.timeIntervalSinceNow))
            var request = DispatchRequest(
                model: chat.model, endpoint: chat.endpoint, body: chat.body, requestID: record.requestID,
                deadline: .seconds(max(0.001, line.batch.expiresAt.timeIntervalSinceNow)), priority: line.batch.priority.rank,
                idempotencyKey: "batch:\(line.batch.id):\(line.input.number)", apiKeyID: line.key.id,
                weight: line.key.policy.shareWeight, spillAfter: spill)
            request.waitsForNodes = true
            request.inClassUntil = line.spillPoint
            var spilled = false
            do {
                let pending = try await client.dispatcher.accept(request)
                queued(pending.job.id)
                let job = try await record.upstream.measure { try await client.dispatcher.awaitFinish(pending) }
                if job.state == .failed, job.errorCode == JobErrorCode.spilled {
                    spilled = true
                } else {
                    return try client.nodes.served(job, chat: chat)
                }
            } catch is JobSpilled {
                spilled = true
            }
            if spilled, cancelling() { return nil }
            if spilled, candidates.isEmpty {
                // Withdrawn for routes the model no longer has (its placement or routes changed).
                throw MizanError(
                    .noHealthyNode,
                    "The request was withdrawn from the node queue for a provider route, and none serves the model '\(SafeText.escaped(chat.model))' now."
                )
            }
        }
        guard !candidates.isEmpty else { throw try await client.refusal(chat, known: nil, record: record) }
        record.model(.routed)
        switch try await client.routes.serve(
            chat, candidates: candidates, until: until, requestID: record.requestID, upstream: record.upstream)
        {
        case .served(let served): return served
        case .failed(let error): throw error
        }
    }

    /// Whether a node has served the model on the line's endpoint (healthy now or not: a line
    /// waits for its nodes).
    private func nodesKnow(_ chat: ClientRequest) async throws -> Bool {
        let serves = { (node: Node) in node.status == .active && node.serves(chat.model, on: chat.endpoint) }
        if try await client.dispatcher.recentNodes().contains(where: serves) { return true }
        return try await client.dispatcher.nodes().contains(where: serves)
    }

    /// Where a served (or failed) line ran.
    static func place(of outcome: RequestOutcome) -> LineResult.Place {
        switch outcome.servedBy {
        case .route: .route
        case .node: .node
        case nil: .none
        }
    }

    /// An error's body in OpenAI's shape.
    static func body(of error: MizanError) -> Data {
        (try? JSONEncoder().encode(error.envelope)) ?? Data()
    }

    /// A JSON answer's bytes.
    static func collect(_ response: Response) async -> Data {
        let collector = Collector()
        try? await response.body.write(collector)
        return collector.bytes.withLock { $0 }
    }

    /// Gathers a response body's bytes.
    private final class Collector: ResponseBodyWriter, Sendable {
        let bytes = Mutex(Data())

        func write(_ buffer: ByteBuffer) async throws {
            bytes.withLock { $0.append(contentsOf: buffer.readableBytesView) }
        }

        func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }
}
