import Foundation
import Hummingbird
import MizanCore
import MizanDispatch
import MizanStore
import ServiceLifecycle

/// The agent API under `/agent/v1/`, the node-facing side of the gateway: nodes
/// authenticate with their node token (a registration token only registers); API keys and the
/// admin token are refused. See `Docs/AGENT_PROTOCOL.md`.
struct AgentController: Sendable {
    let dispatcher: Dispatcher
    /// The agent channels open on this instance (disconnections, pushed aborts, revocation).
    let channels: NodeChannels
    /// The client body limit; a node's result may be larger (a few times, for reports), and one
    /// streamed event may be as large.
    let maxBodyBytes: Int
    /// Whether nodes may open the persistent channel (`POST /agent/v1/channel`).
    var channelEnabled = true
    /// The most agent channels open at once: half of `--max-connections`, so that the rest is
    /// kept for clients (each node keeps a few at most).
    var maxChannels = 2048
    /// Bytes of replies a node may leave unread on its channel before the channel ends.
    var maxUnreadReplyBytes: Int { max(16 << 20, maxBodyBytes * 4 + (1 << 20)) }

    func addRoutes(to agent: RouterGroup<GatewayRequestContext>) {
        agent.post("/register") { request, _ in
            guard let token = Credentials.bearer(request.headers[.authorization]) else {
                throw MizanError(.invalidNodeToken, "Missing registration token. Send it as 'Authorization: Bearer <token>'.")
            }
            let body = try await BodyReader.decode(AgentWire.RegisterRequest.self, from: request)
            try AgentChecks.check(body.report)
            let registration = try await dispatcher.register(registrationToken: token, report: body.report)
            return try JSONResponse.json(
                AgentWire.RegisterResponse(node: registration.node, nodeToken: registration.nodeToken), status: .created)
        }
        agent.post("/heartbeat") { request, _ in
            let node = try await authenticateNode(request)
            let body = try await BodyReader.decode(AgentWire.HeartbeatRequest.self, from: request)
            return try JSONResponse.json(try await heartbeat(node, body))
        }
        agent.post("/lease") { request, context in
            let node = try await authenticateNode(request)
            // A node that goes away while waiting stops its lease call (nothing is leased to nobody).
            let body = try await BodyReader.decode(AgentWire.LeaseRequest.self, from: request)
            let answer = try await context.cancellingOnDisconnect { try await lease(node, body) }
            return try JSONResponse.json(answer)
        }
        agent.post("/jobs/{id}/complete") { request, context in
            let node = try await authenticateNode(request)
            let id = try context.jobID()
            let body = try await BodyReader.decode(AgentWire.CompleteRequest.self, from: request, limit: maxBodyBytes * 4)
            return try JSONResponse.json(try await complete(node, id, body))
        }
        agent.post("/jobs/{id}/fail") { request, context in
            let node = try await authenticateNode(request)
            let id = try context.jobID()
            let body = try await BodyReader.decode(AgentWire.FailRequest.self, from: request)
            return try JSONResponse.json(try await fail(node, id, body))
        }
        agent.post("/goodbye") { request, _ in
            let node = try await authenticateNode(request)
            try await goodbye(node)
            return try JSONResponse.json(AgentWire.GoodbyeResponse())
        }
        agent.post("/jobs/{id}/stream") { request, context in
            try await stream(request, context: context)
        }
        agent.post("/channel") { request, context in
            guard channelEnabled else {
                throw MizanError(.notFound, "The agent channel is off on this gateway (--no-agent-channel); use the HTTP agent API.")
            }
            return try await channel(request, context: context)
        }
        agent.post("/reports") { request, _ in
            let node = try await authenticateNode(request)
            let body = try await BodyReader.decode(AgentWire.ReportBatch.self, from: request, limit: maxBodyBytes * 16)
            var completions: [LeaseCompletion] = []
            completions.reserveCapacity(body.reports.count)
            guard body.reports.count <= 1000 else { throw MizanError(.badRequest, "'reports' must hold at most 1000 reports.") }
            for report in body.reports {
                try AgentChecks.checkAttempt(report.attempt)
                if let failure = report.failure { try AgentChecks.check(failure) }
            }
            for report in body.reports {
                completions.append(
                    LeaseCompletion(
                        lease: Lease(jobID: report.jobID, attempt: report.attempt, nodeID: node.id),
                        completion: try report.completion()
                    ))
            }
            let results = try await dispatcher.complete(completions)
            let outcomes = zip(body.reports, results).map { report, result in
                switch result {
                case .success(let job): AgentWire.ReportOutcome(jobID: report.jobID, state: job.state, error: nil)
                case .failure(let error): AgentWire.ReportOutcome(jobID: report.jobID, state: nil, error: error.envelope.error)
                }
            }
            return try JSONResponse.json(AgentWire.ReportBatchResponse(outcomes: outcomes))
        }
    }

    // MARK: - The calls, shared by the HTTP API and the channel

    /// A heartbeat: the node's report stored, the leases to abort answered.
    func heartbeat(_ node: Node, _ body: AgentWire.HeartbeatRequest) async throws -> AgentWire.HeartbeatResponse {
        try AgentChecks.check(body.report)
        guard body.running.count <= 10_000 else { throw MizanError(.badRequest, "'running' must list at most 10000 jobs.") }
        for lease in body.running { try AgentChecks.checkAttempt(lease.attempt) }
        let answer = try await dispatcher.heartbeat(
            nodeID: node.id,
            report: body.report,
            running: body.running.map { Lease(jobID: $0.jobID, attempt: $0.attempt, nodeID: node.id) }
        )
        return AgentWire.HeartbeatResponse(
            node: answer.node, abort: answer.abort.map { AgentWire.LeaseRef(jobID: $0.jobID, attempt: $0.attempt) })
    }

    /// A node's goodbye: its agent stops and holds no job any more. It is disconnected at once
    /// (not capacity), and whatever is still leased to it goes back to the queue.
    func goodbye(_ node: Node) async throws {
        try await dispatcher.disconnectNode(node.id, unlessSeenAfter: nil)
    }

    /// A lease long-poll; a waiting one ends (empty) when the gateway shuts down, so that the
    /// drain does not wait it out.
    func lease(_ node: Node, _ body: AgentWire.LeaseRequest) async throws -> AgentWire.LeaseResponse {
        guard body.limit >= 0 else { throw MizanError(.badRequest, "'limit' must not be negative.") }
        if let wait = body.waitSeconds, !(wait >= 0 && wait.isFinite) {
            throw MizanError(.badRequest, "'waitSeconds' must be a non-negative number.")
        }
        let jobs = try await cancelWhenGracefulShutdown {
            try await dispatcher.lease(for: node, limit: body.limit, wait: body.waitSeconds.map { .seconds(min($0, 3600)) })
        }
        return AgentWire.LeaseResponse(jobs: jobs.map(AgentWire.Assignment.init))
    }

    /// A job's result under the node's lease.
    func complete(_ node: Node, _ id: JobID, _ body: AgentWire.CompleteRequest) async throws -> AgentWire.ReportOutcome {
        try AgentChecks.checkAttempt(body.attempt)
        let job = try await dispatcher.complete(
            Lease(jobID: id, attempt: body.attempt, nodeID: node.id), result: body.result, usage: body.usage)
        return AgentWire.ReportOutcome(jobID: id, state: job.state, error: nil)
    }

    /// A job's failure under the node's lease.
    func fail(_ node: Node, _ id: JobID, _ body: AgentWire.FailRequest) async throws -> AgentWire.ReportOutcome {
        try AgentChecks.checkAttempt(body.attempt)
        try AgentChecks.check(body.failure)
        let job = try await dispatcher.fail(
            Lease(jobID: id, attempt: body.attempt, nodeID: node.id),
            code: body.failure.code, message: body.failure.message, retryable: body.failure.retryable
        )
        return AgentWire.ReportOutcome(jobID: id, state: job.state, error: nil)
    }

    func authenticateNode(_ request: Request) async throws -> Node {
        guard let token = Credentials.bearer(request.headers[.authorization]) else {
            throw MizanError(.invalidNodeToken, "Missing node token. Send it as 'Authorization: Bearer <token>'.")
        }
        return try await dispatcher.authenticateNode(token: token)
    }
}
