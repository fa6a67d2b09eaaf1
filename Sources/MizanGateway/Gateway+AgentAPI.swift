import Foundation
import Hummingbird
import MizanCore
import MizanDispatch
import MizanStore
import ServiceLifecycle

extension Gateway {
    /// The agent API under `/agent/v1/`: nodes authenticate with their node token (a
    /// registration token only registers); API keys and the admin token are refused.
    func addAgentRoutes(to router: Router<GatewayRequestContext>) {
        let agent = router.group("/agent/v1")
        agent.post("/register") { request, _ in
            guard let token = Credentials.bearer(request.headers[.authorization]) else {
                throw MizanError(.unauthorized, "Missing registration token. Send it as 'Authorization: Bearer <token>'.")
            }
            let body = try await HTTPResponses.decode(AgentWire.RegisterRequest.self, from: request)
            try Self.check(body.report)
            let registration = try await self.dispatcher.register(registrationToken: token, report: body.report)
            return try HTTPResponses.json(AgentWire.RegisterResponse(node: registration.node, nodeToken: registration.nodeToken), status: .created)
        }
        agent.post("/heartbeat") { request, _ in
            let node = try await self.authenticateNode(request)
            let body = try await HTTPResponses.decode(AgentWire.HeartbeatRequest.self, from: request)
            try Self.check(body.report)
            guard body.running.count <= 10_000 else { throw MizanError(.badRequest, "'running' must list at most 10000 jobs.") }
            for lease in body.running { try Self.checkAttempt(lease.attempt) }
            let answer = try await self.dispatcher.heartbeat(
                nodeID: node.id,
                report: body.report,
                running: body.running.map { Lease(jobID: $0.jobID, attempt: $0.attempt, nodeID: node.id) }
            )
            return try HTTPResponses.json(
                AgentWire.HeartbeatResponse(node: answer.node, abort: answer.abort.map { AgentWire.LeaseRef(jobID: $0.jobID, attempt: $0.attempt) })
            )
        }
        agent.post("/lease") { request, context in
            let node = try await self.authenticateNode(request)
            // A node that goes away while waiting stops its lease call (nothing is leased to nobody).
            let body = try await HTTPResponses.decode(AgentWire.LeaseRequest.self, from: request)
            guard body.limit >= 0 else { throw MizanError(.badRequest, "'limit' must not be negative.") }
            if let wait = body.waitSeconds, !(wait >= 0 && wait.isFinite) {
                throw MizanError(.badRequest, "'waitSeconds' must be a non-negative number.")
            }
            // A waiting lease ends (empty) when the gateway shuts down, so the drain does not
            // wait out the long-poll.
            let jobs = try await context.cancellingOnDisconnect {
                try await cancelWhenGracefulShutdown {
                    try await self.dispatcher.lease(
                        for: node,
                        limit: body.limit,
                        wait: body.waitSeconds.map { .milliseconds(Int64(min($0, 3600) * 1000)) }
                    )
                }
            }
            return try HTTPResponses.json(AgentWire.LeaseResponse(jobs: jobs.map(AgentWire.LeasedJob.init)))
        }
        agent.post("/jobs/{id}/complete") { request, context in
            let node = try await self.authenticateNode(request)
            let id = try Self.jobID(context)
            let body = try await HTTPResponses.decode(AgentWire.CompleteRequest.self, from: request, limit: self.configuration.maxBodyBytes * 4)
            try Self.checkAttempt(body.attempt)
            let job = try await self.dispatcher.complete(nodeID: node.id, jobID: id, attempt: body.attempt, result: body.result, usage: body.usage)
            return try HTTPResponses.json(AgentWire.ReportOutcome(jobID: id, state: job.state, error: nil))
        }
        agent.post("/jobs/{id}/fail") { request, context in
            let node = try await self.authenticateNode(request)
            let id = try Self.jobID(context)
            let body = try await HTTPResponses.decode(AgentWire.FailRequest.self, from: request)
            try Self.checkAttempt(body.attempt)
            try Self.check(body.failure)
            let job = try await self.dispatcher.fail(
                nodeID: node.id, jobID: id, attempt: body.attempt,
                code: body.failure.code, message: body.failure.message, retryable: body.failure.retryable
            )
            return try HTTPResponses.json(AgentWire.ReportOutcome(jobID: id, state: job.state, error: nil))
        }
        agent.post("/jobs/{id}/stream") { request, context in
            try await self.relayAgentStream(request, context: context)
        }
        agent.post("/reports") { request, _ in
            let node = try await self.authenticateNode(request)
            let body = try await HTTPResponses.decode(AgentWire.ReportBatch.self, from: request, limit: self.configuration.maxBodyBytes * 16)
            var completions: [LeaseCompletion] = []
            completions.reserveCapacity(body.reports.count)
            guard body.reports.count <= 1000 else { throw MizanError(.badRequest, "'reports' must hold at most 1000 reports.") }
            for report in body.reports {
                try Self.checkAttempt(report.attempt)
                if let failure = report.failure { try Self.check(failure) }
            }
            for report in body.reports {
                completions.append(LeaseCompletion(
                    lease: Lease(jobID: report.jobID, attempt: report.attempt, nodeID: node.id),
                    completion: try report.completion()
                ))
            }
            let results = try await self.dispatcher.complete(completions)
            let outcomes = zip(body.reports, results).map { report, result in
                switch result {
                case .success(let job): AgentWire.ReportOutcome(jobID: report.jobID, state: job.state, error: nil)
                case .failure(let error): AgentWire.ReportOutcome(jobID: report.jobID, state: nil, error: error.envelope.error)
                }
            }
            return try HTTPResponses.json(AgentWire.ReportBatchResponse(outcomes: outcomes))
        }
    }

    func authenticateNode(_ request: Request) async throws -> Node {
        guard let token = Credentials.bearer(request.headers[.authorization]) else {
            throw MizanError(.unauthorized, "Missing node token. Send it as 'Authorization: Bearer <token>'.")
        }
        return try await dispatcher.authenticateNode(token: token)
    }

    static func jobID(_ context: GatewayRequestContext) throws -> JobID {
        guard let raw = context.parameters.get("id"), let id = JobID(raw) else {
            throw MizanError(.badRequest, "The job id in the path is not a valid id.")
        }
        return id
    }

    /// The highest attempt number a report may name (a job has a few at most).
    static let maxAttempt = 1_000_000

    static func checkAttempt(_ attempt: Int) throws {
        guard (1...maxAttempt).contains(attempt) else {
            throw MizanError(.badRequest, "'attempt' must be an integer from 1 to \(maxAttempt).")
        }
    }

    static func check(_ failure: AgentWire.Failure) throws {
        guard !failure.code.isEmpty, failure.code.unicodeScalars.count <= 200, failure.message.unicodeScalars.count <= 4000 else {
            throw MizanError(.badRequest, "A failure needs a 'code' of 1 to 200 characters and a 'message' of at most 4000.")
        }
    }

    static func check(_ report: NodeReport) throws {
        guard report.maxConcurrency >= 1, report.maxConcurrency <= 10_000 else {
            throw MizanError(.badRequest, "'maxConcurrency' must be between 1 and 10000.")
        }
        guard report.models.count <= 1000, report.models.allSatisfy({ !$0.isEmpty }) else {
            throw MizanError(.badRequest, "'models' must hold at most 1000 non-empty names.")
        }
        for model in report.models { try ChatCompletionRequest.checkModelName(model) }
        guard report.labels.count <= 64, report.labels.allSatisfy({ $0.key.unicodeScalars.count <= 256 && $0.value.unicodeScalars.count <= 1024 }) else {
            throw MizanError(.badRequest, "'labels' must hold at most 64 labels (names up to 256 characters, values up to 1024).")
        }
        guard report.inFlight >= 0 else { throw MizanError(.badRequest, "'inFlight' must not be negative.") }
    }
}
