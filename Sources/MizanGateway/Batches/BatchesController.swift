import Foundation
import Hummingbird
import MizanCore
import MizanStore

/// The Batch API under `/v1/batches`, as OpenAI's: create a batch from an uploaded file, read
/// it, list the key's batches, cancel one. ``BatchRunner`` runs them.
struct BatchesController: Sendable {
    let client: ClientController
    let store: any BatchStore
    let runner: BatchRunner
    let settings: BatchSettings

    func addRoutes(to router: RouterGroup<GatewayRequestContext>) {
        router.post("/v1/batches") { request, context in
            let key = try await client.authenticate(request, record: context.record)
            let create = try await BodyReader.decode(BatchWire.Create.self, from: request)
            let batch = try await self.create(create, key: key)
            runner.poke()
            return try JSONResponse.json(BatchWire.BatchObject(batch))
        }
        router.get("/v1/batches") { request, context in
            let key = try await client.authenticate(request, record: context.record)
            let parameters = request.uri.queryParameters
            let limit = try FilesController.limit(parameters.get("limit"), upTo: 100)
            let batches = try await store.batches(apiKeyID: key.id, after: parameters.get("after"), limit: limit + 1)
            let page = batches.prefix(limit).map(BatchWire.BatchObject.init)
            return try JSONResponse.json(
                BatchWire.Page(
                    data: Array(page), first_id: page.first?.batch.id, last_id: page.last?.batch.id, has_more: batches.count > limit))
        }
        router.get("/v1/batches/:id") { request, context in
            let key = try await client.authenticate(request, record: context.record)
            let id = context.parameters.get("id") ?? ""
            guard let batch = try await store.batch(id, apiKeyID: key.id) else { throw Self.noBatch(id) }
            return try JSONResponse.json(BatchWire.BatchObject(batch))
        }
        router.post("/v1/batches/:id/cancel") { request, context in
            let key = try await client.authenticate(request, record: context.record)
            let id = context.parameters.get("id") ?? ""
            return try JSONResponse.json(BatchWire.BatchObject(try await Self.cancel(id, apiKeyID: key.id, store: store, runner: runner)))
        }
    }

    /// The operator's view under `/admin/v1` (behind the admin token): every key's batches,
    /// one batch, and a cancel.
    func addAdminRoutes(to group: RouterGroup<GatewayRequestContext>) {
        let admin = group.add(middleware: AdminAuthMiddleware(credentials: client.credentials))
        admin.get("/batches") { request, _ in
            let parameters = request.uri.queryParameters
            let limit = try FilesController.limit(parameters.get("limit"), upTo: 1000)
            var batches = try await store.batches(apiKeyID: parameters.get("key"), after: parameters.get("after"), limit: limit + 1)
            let more = batches.count > limit
            batches = Array(batches.prefix(limit))
            return try JSONResponse.json(
                BatchWire.Page(
                    data: batches.map(BatchWire.BatchObject.init), first_id: batches.first?.id, last_id: batches.last?.id, has_more: more))
        }
        admin.get("/batches/{id}") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard let batch = try await store.batch(id, apiKeyID: nil) else { throw Self.noBatch(id) }
            return try JSONResponse.json(BatchWire.BatchObject(batch))
        }
        admin.post("/batches/{id}/cancel") { _, context in
            try JSONResponse.json(
                BatchWire.BatchObject(
                    try await Self.cancel(context.parameters.get("id") ?? "", apiKeyID: nil, store: store, runner: runner)))
        }
    }

    /// Checks a new batch and stores it.
    func create(_ create: BatchWire.Create, key: APIKey) async throws -> Batch {
        guard let endpoint = BatchInput.endpoint(url: create.endpoint) else {
            throw MizanError(
                .badRequest,
                "endpoint must be one of \(BatchInput.endpoints.map { "/v1" + $0.path }.joined(separator: ", ")).")
        }
        guard create.completion_window == "24h" else { throw MizanError(.badRequest, "completion_window must be '24h'.") }
        if let metadata = create.metadata {
            guard metadata.count <= 16,
                metadata.allSatisfy({ $0.key.count <= 64 && $0.value.count <= 512 && !($0.key + $0.value).utf8.contains(0) })
            else {
                throw MizanError(
                    .badRequest, "metadata may hold at most 16 pairs, keys of at most 64 and values of at most 512 characters, without NUL."
                )
            }
        }
        guard let input = try await store.file(create.input_file_id, apiKeyID: key.id), input.kind == .upload else {
            throw FilesController.noFile(create.input_file_id)
        }
        var after = 0
        while true {
            let page = try await store.fileLines(input, after: after, limit: 1000)
            guard let last = page.last else { break }
            for entry in page {
                // The url member of a checked line, read again to compare with the batch's.
                let object = try? JSONSerialization.jsonObject(with: entry.line) as? [String: Any]
                if let url = object?["url"] as? String, url != create.endpoint {
                    throw MizanError(
                        .badRequest, "Line \(entry.number) calls \(SafeText.escaped(url)), but the batch's endpoint is \(create.endpoint).")
                }
            }
            after = last.number
        }
        let window = max(1, Int((86_400 * settings.windowScale).rounded()))
        let priority = min(key.policy.priorityClass, .batch)
        return try await store.createBatch(
            Batch(
                apiKeyID: key.id, endpoint: endpoint, inputFileID: input.id, windowSeconds: window, metadata: create.metadata,
                createdAt: Date(), priority: priority))
    }

    /// Cancels a batch not yet ended (`cancelling`; its runner ends it `cancelled`).
    static func cancel(_ id: String, apiKeyID: String?, store: any BatchStore, runner: BatchRunner) async throws -> Batch {
        guard let batch = try await store.batch(id, apiKeyID: apiKeyID) else { throw noBatch(id) }
        if let moved = try await store.moveBatch(id, to: .cancelling, from: [.validating, .inProgress], failure: nil, now: Date()) {
            await runner.cancelled(id)
            return moved
        }
        if batch.status == .cancelling || batch.status == .cancelled { return batch }
        throw MizanError(.conflict, "The batch is \(batch.status.rawValue) and can no longer be cancelled.")
    }

    static func noBatch(_ id: String) -> MizanError {
        MizanError(.notFound, "No such Batch object: \(SafeText.escaped(id)).")
    }
}
