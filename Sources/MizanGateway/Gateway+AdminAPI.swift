import Foundation
import Hummingbird
import MizanCore
import MizanDispatch
import MizanStore

/// The admin API's bodies.
enum AdminWire {
    struct CreateRequest: Decodable {
        var name: String
        var labels: [String: String]?
    }

    struct CreatedNode: Encodable {
        var id: NodeID
        var name: String
        var registrationToken: String
    }

    struct CreatedKey: Encodable {
        var id: String
        var name: String
        var prefix: String
        var key: String
    }

    /// A job as the admin API shows it: metadata, never the client's messages or the answer.
    struct JobSummary: Encodable {
        var id: JobID
        var requestID: String
        var model: String
        var state: JobState
        var stream: Bool
        var attempt: Int
        var maxAttempts: Int
        var priority: Int
        var nodeID: NodeID?
        var apiKeyID: String?
        var deadline: Date
        var createdAt: Date
        var leasedAt: Date?
        var finishedAt: Date?
        var errorCode: String?
        var errorMessage: String?
        var usage: TokenUsage?
        var bodyBytes: Int
        var resultBytes: Int?

        init(_ job: Job) {
            id = job.id
            requestID = job.requestID
            model = job.model
            state = job.state
            stream = job.stream
            attempt = job.attempt
            maxAttempts = job.maxAttempts
            priority = job.priority
            nodeID = job.nodeID
            apiKeyID = job.apiKeyID
            deadline = job.deadline
            createdAt = job.createdAt
            leasedAt = job.leasedAt
            finishedAt = job.finishedAt
            errorCode = job.errorCode
            errorMessage = job.errorMessage
            usage = job.usage
            bodyBytes = job.body.count
            resultBytes = job.result?.count
        }
    }
}

extension Gateway {
    /// The admin API under `/admin/v1/`, for the admin token only.
    func addAdminRoutes(to router: Router<GatewayRequestContext>) {
        let admin = router.group("/admin/v1").add(middleware: AdminAuthMiddleware(credentials: credentials))
        admin.post("/nodes") { request, _ in
            let body = try await HTTPResponses.decode(AdminWire.CreateRequest.self, from: request)
            let name = try Names.checked(body.name, of: "node")
            let enrollment = try await self.dispatcher.createNode(name: name, labels: body.labels ?? [:])
            return try HTTPResponses.json(
                AdminWire.CreatedNode(id: enrollment.node.id, name: enrollment.node.name, registrationToken: enrollment.registrationToken),
                status: .created
            )
        }
        admin.get("/nodes") { _, _ in
            try HTTPResponses.json(DataList(data: try await self.dispatcher.nodes()))
        }
        admin.delete("/nodes/{id}") { _, context in
            guard let raw = context.parameters.get("id"), let id = NodeID(raw) else {
                throw MizanError(.badRequest, "The node id in the path is not a valid id.")
            }
            return try HTTPResponses.json(try await self.dispatcher.revokeNode(id))
        }
        admin.post("/keys") { request, _ in
            let body = try await HTTPResponses.decode(AdminWire.CreateRequest.self, from: request)
            let issued = try await self.credentials.issueKey(name: body.name)
            return try HTTPResponses.json(
                AdminWire.CreatedKey(id: issued.key.id, name: issued.key.name, prefix: issued.key.prefix, key: issued.secret),
                status: .created
            )
        }
        admin.get("/keys") { _, _ in
            try HTTPResponses.json(DataList(data: try await self.access.apiKeys()))
        }
        admin.delete("/keys/{id}") { _, context in
            guard let id = context.parameters.get("id"), !id.isEmpty else {
                throw MizanError(.badRequest, "The key id is missing.")
            }
            return try HTTPResponses.json(try await self.credentials.revokeKey(id))
        }
        admin.get("/jobs") { request, _ in
            var state: JobState?
            if let raw = request.uri.queryParameters.get("state") {
                guard let parsed = JobState(rawValue: raw) else {
                    let known = JobState.allCases.map(\.rawValue).joined(separator: ", ")
                    throw MizanError(.badRequest, "Unknown job state '\(raw)'; use one of \(known).")
                }
                state = parsed
            }
            var limit = 100
            if let raw = request.uri.queryParameters.get("limit") {
                guard let parsed = Int(raw), (1...1000).contains(parsed) else {
                    throw MizanError(.badRequest, "'limit' must be a number from 1 to 1000.")
                }
                limit = parsed
            }
            let jobs = try await self.dispatcher.store.jobs(state: state, limit: limit)
            return try HTTPResponses.json(DataList(data: jobs.map(AdminWire.JobSummary.init)))
        }
        admin.get("/jobs/{id}") { _, context in
            let id = try Self.jobID(context)
            guard let job = try await self.dispatcher.store.job(id) else {
                throw MizanError(.jobNotFound, "No job with id \(id).")
            }
            return try HTTPResponses.json(AdminWire.JobSummary(job))
        }
        admin.get("/usage") { _, _ in
            try HTTPResponses.json(DataList(data: try await self.access.usageSummary()))
        }
    }

}

/// Lets only the admin token through.
struct AdminAuthMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let credentials: Credentials

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try credentials.authenticateAdmin(Credentials.bearer(request.headers[.authorization]))
        return try await next(request, context)
    }
}
