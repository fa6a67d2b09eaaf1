import Foundation
import Hummingbird
import MizanCore
import MizanDispatch
import MizanStore

/// The admin API under `/admin/v1/`, for the admin token only: nodes, API keys, jobs (their
/// metadata, never message contents) and usage. Its bodies are ``AdminWire``'s.
struct AdminController: Sendable {
    let dispatcher: Dispatcher
    let credentials: Credentials
    let access: any AccessStore

    func addRoutes(to group: RouterGroup<GatewayRequestContext>) {
        let admin = group.add(middleware: AdminAuthMiddleware(credentials: credentials))
        admin.post("/nodes") { request, _ in
            let body = try await BodyReader.decode(AdminWire.CreateNodeRequest.self, from: request)
            let name = try Names.checked(body.name, of: "node")
            let enrollment = try await dispatcher.createNode(name: name, labels: body.labels ?? [:])
            return try JSONResponse.json(
                AdminWire.CreatedNode(id: enrollment.node.id, name: enrollment.node.name, registrationToken: enrollment.registrationToken),
                status: .created
            )
        }
        admin.get("/nodes") { _, _ in
            let now = Date()
            let nodes = try await dispatcher.nodes()
            return try JSONResponse.json(
                AdminWire.List(data: nodes.map { AdminWire.NodeEntry(node: $0, condition: dispatcher.condition(of: $0, now: now)) }))
        }
        admin.delete("/nodes/{id}") { _, context in
            guard let raw = context.parameters.get("id"), let id = NodeID(raw) else {
                throw MizanError(.badRequest, "The node id in the path is not a valid id.")
            }
            return try JSONResponse.json(try await dispatcher.revokeNode(id))
        }
        admin.post("/keys") { request, _ in
            let body = try await BodyReader.decode(AdminWire.CreateKeyRequest.self, from: request)
            let issued = try await credentials.issueKey(name: body.name, policy: body.policy)
            return try JSONResponse.json(
                AdminWire.CreatedKey(
                    id: issued.key.id, name: issued.key.name, prefix: issued.key.prefix, key: issued.secret, policy: issued.key.policy),
                status: .created
            )
        }
        admin.get("/keys") { _, _ in
            var views: [AdminWire.KeyView] = []
            for key in try await access.apiKeys() {
                views.append(.of(key, counters: key.policy.isCounted ? try await access.keyCounters(key.id) : nil, now: Date()))
            }
            return try JSONResponse.json(AdminWire.List(data: views))
        }
        admin.get("/keys/{id}") { _, context in
            let id = try await credentials.keyID(named: try AdminQuery.keyID(context))
            guard let key = try await access.apiKeys().first(where: { $0.id == id && $0.isActive }) else {
                throw MizanError(.notFound, "No API key with id \(SafeText.excerpt(id, limit: 64)) (a revoked key is gone).")
            }
            let counters = key.policy.isCounted ? try await access.keyCounters(key.id) : nil
            return try JSONResponse.json(AdminWire.KeyView.of(key, counters: counters, now: Date()))
        }
        admin.patch("/keys/{id}") { request, context in
            // The body is checked first: a bad one is the client's fault whatever key it names.
            let patch = try await BodyReader.decode(KeyPolicyPatch.self, from: request)
            let id = try await credentials.keyID(named: try AdminQuery.keyID(context))
            let key = try await credentials.updateKey(id, patch)
            let counters = key.policy.isCounted ? try await access.keyCounters(key.id) : nil
            return try JSONResponse.json(AdminWire.KeyView.of(key, counters: counters, now: Date()))
        }
        admin.delete("/keys/{id}") { _, context in
            let id = try await credentials.keyID(named: try AdminQuery.keyID(context))
            return try JSONResponse.json(try await credentials.revokeKey(id))
        }
        admin.get("/jobs") { request, _ in
            let (filter, limit) = try AdminQuery.jobListing { request.uri.queryParameters.get($0) }
            let jobs = try await dispatcher.jobs(matching: filter, limit: limit)
            return try JSONResponse.json(AdminWire.List(data: jobs.map(AdminWire.JobSummary.init)))
        }
        admin.get("/jobs/{id}") { _, context in
            let id = try context.jobID()
            guard let job = try await dispatcher.job(id) else {
                throw MizanError(.jobNotFound, "No job with id \(id).")
            }
            return try JSONResponse.json(AdminWire.JobSummary(job))
        }
        admin.get("/usage") { request, _ in
            let parameters = request.uri.queryParameters
            guard ["since", "until", "key", "model", "groupBy"].contains(where: { parameters.get($0) != nil }) else {
                // Every record's totals per key, model and endpoint.
                return try JSONResponse.json(AdminWire.List(data: try await access.usageSummary()))
            }
            return try JSONResponse.json(AdminWire.List(data: try await access.usage(try AdminQuery.usageQuery { parameters.get($0) })))
        }
    }
}
