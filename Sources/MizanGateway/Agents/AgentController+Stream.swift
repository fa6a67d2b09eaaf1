import Foundation
import Hummingbird
import MizanCore
import MizanDispatch

extension AgentController {
    /// `POST /agent/v1/jobs/{id}/stream?attempt=N`: the node holding the lease streams the
    /// local provider's events (`text/event-stream` lines) while it produces them. Answers 409
    /// when the lease is not the node's, or when the client is gone (the node then aborts).
    func stream(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let node = try await authenticateNode(request)
        let id = try context.jobID()
        guard let attempt = request.uri.queryParameters.get("attempt").flatMap({ Int($0) }), (1...AgentChecks.maxAttempt).contains(attempt)
        else {
            throw MizanError(.badRequest, "The 'attempt' query parameter is required: an integer from 1 to \(AgentChecks.maxAttempt).")
        }
        var writer = try await dispatcher.openStream(Lease(jobID: id, attempt: attempt, nodeID: node.id))
        context.record.served(RequestOutcome(servedBy: .node(node.id, name: node.name)))
        var parser = ServerSentEventParser(maxEventBytes: maxBodyBytes)
        // The body is read as the events go out: a client that reads slowly holds the node's
        // stream back (the writer waits), and the whole stream is bounded by the job's deadline.
        for try await buffer in request.body {
            let items = parser.feed(buffer.readableBytesView)
            guard !parser.tooLarge else { throw Self.eventTooLarge(maxBodyBytes) }
            if !items.isEmpty { try await writer.send(items, end: false) }
        }
        try await writer.send(parser.finish().map { [$0] } ?? [], end: true)
        return try JSONResponse.json(AgentWire.ReportOutcome(jobID: id, state: .leased, error: nil))
    }

    /// The refusal of a streamed event larger than a client's body may be.
    static func eventTooLarge(_ limit: Int) -> MizanError {
        MizanError(.payloadTooLarge, "A streamed event is larger than \(limit) bytes; the stream is refused.")
    }
}
