import Foundation
import HTTPTypes
import Hummingbird
import MizanCore
import MizanStore
import NIOCore
import Synchronization

/// Responses API requests with `background: true`: answered at once in `queued`, run by the
/// batch runner on the capacity the model's placement names, at the key's class (or a lower one
/// asked for with `X-Mizan-Priority`), and kept with their answer for their key:
/// `GET /v1/responses/{id}` (also as a stream, resumable with `starting_after`) and
/// `POST /v1/responses/{id}/cancel`. Every other `POST /v1/responses` is served as usual.
final class BackgroundResponses: Sendable {
    let client: ClientController
    let recorder: RequestRecorder
    let store: any BatchStore
    /// How long a stream of a background response waits for its end.
    let streamWait: Duration
    /// The responses running here, by id.
    private let running = Mutex<[String: Task<Void, Never>]>([:])
    /// Wakes the runner when a response is created here.
    let poke: @Sendable () -> Void

    init(
        client: ClientController, recorder: RequestRecorder, store: any BatchStore, streamWait: Duration,
        poke: @escaping @Sendable () -> Void
    ) {
        self.client = client
        self.recorder = recorder
        self.store = store
        self.streamWait = streamWait
        self.poke = poke
    }

    func addRoutes(to router: RouterGroup<GatewayRequestContext>) {
        router.post("/v1/responses") { request, context in try await self.create(request, context: context) }
        router.get("/v1/responses/:id") { request, context in
            let key = try await self.client.authenticate(request, record: context.record)
            let id = context.parameters.get("id") ?? ""
            guard let response = try await self.store.response(id, apiKeyID: key.id) else { throw Self.noResponse(id) }
            let parameters = request.uri.queryParameters
            if parameters.get("stream") == "true" {
                let after = parameters.get("starting_after").flatMap { Int($0) } ?? -1
                return self.stream(response, startingAfter: after)
            }
            return JSONResponse.json(bytes: ResponseObjects.object(of: response))
        }
        router.post("/v1/responses/:id/cancel") { request, context in
            let key = try await self.client.authenticate(request, record: context.record)
            let id = context.parameters.get("id") ?? ""
            guard let response = try await self.store.response(id, apiKeyID: key.id) else { throw Self.noResponse(id) }
            let moved = try await self.store.moveResponse(
                id, to: .cancelled, from: [.queued, .inProgress], result: nil, failure: nil, now: Date())
            if moved != nil { self.running.withLock { $0[id] }?.cancel() }
            return JSONResponse.json(bytes: ResponseObjects.object(of: moved ?? response))
        }
    }

    /// `POST /v1/responses`: a background request is stored and answered at once; any other
    /// is served as the client API serves it.
    private func create(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let key = try await client.authenticate(request, record: context.record)
        let bytes = try await BodyReader.collect(request.body, limit: client.limits.maxBodyBytes, timeout: client.limits.bodyTimeout)
        let object = try? JSONSerialization.jsonObject(with: bytes) as? [String: Any]
        guard object?["background"] as? Bool == true else {
            var forwarded = request
            forwarded.body = RequestBody(buffer: ByteBuffer(bytes: bytes))
            return try await client.infer(.responses, forwarded, context: context)
        }
        let priority = try ClientController.priorityClass(request.headers[.mizanPriority], key: key)
        let stream = object?["stream"] as? Bool == true
        // Run as a plain request; the stream a client asked for is made from the stored states.
        guard let plain = JSONScanner.settingTopLevel(in: bytes, [("background", "false"), ("stream", "false")]) else {
            throw MizanError(.badRequest, "The body must be a JSON object.")
        }
        let chat = try ClientRequest(endpoint: .responses, body: plain, contentType: "application/json")
        guard key.policy.allows(chat.model) else { throw ClientController.unknownModel(chat.model) }
        let response = BackgroundResponse(apiKeyID: key.id, model: chat.model, request: plain, priority: priority, createdAt: Date())
        try await store.createResponse(response)
        poke()
        if stream { return self.stream(response, startingAfter: -1) }
        return JSONResponse.json(bytes: ResponseObjects.object(of: response))
    }

    /// Claims background responses and starts those not running here.
    func claim(runner: String, until: Date, now: Date, limit: Int) async throws {
        let claimed = try await store.claimResponses(runner: runner, until: until, now: now, limit: limit)
        for response in claimed {
            running.withLock { running in
                guard running[response.id] == nil else { return }
                running[response.id] = Task {
                    await self.run(response)
                    _ = self.running.withLock { $0.removeValue(forKey: response.id) }
                }
            }
        }
    }

    /// Serves a claimed response and stores how it ended.
    private func run(_ response: BackgroundResponse) async {
        guard
            (try? await store.moveResponse(
                response.id, to: .inProgress, from: [.queued, .inProgress], result: nil, failure: nil, now: Date())) != nil
        else { return }
        let started = ContinuousClock.now
        let record = RequestRecord()
        record.begin(requestID: TimeOrderedID.text(TimeOrderedID.make()))
        record.authenticated(apiKeyID: response.apiKeyID)
        record.priority = response.priority
        var status = 200
        var result: Data?
        var failure: Batch.Failure?
        do {
            guard let key = try await client.credentials.activeKey(id: response.apiKeyID) else {
                throw MizanError(.unauthorized, "The response's API key is no longer active.")
            }
            let chat = try ClientRequest(endpoint: .responses, body: response.request, contentType: "application/json")
            record.asked(.init(endpoint: .responses, model: chat.model))
            if key.policy.isCounted {
                try await client.admissions.open(
                    key, deadline: client.limits.maxDeadline, reserve: client.reservation(for: chat, key: key), record: record)
            }
            do {
                let served = try await client.serve(
                    chat, key: key, priority: response.priority, idempotencyKey: "\(key.id):background:\(response.id)",
                    until: ContinuousClock.now.advanced(by: client.limits.maxDeadline), record: record)
                record.served(served.outcome)
                status = Int(served.response.status.code)
                result = await LineServer.collect(served.response)
            } catch let serving as ServingFailure {
                record.served(serving.outcome)
                throw serving.error
            }
        } catch let error as MizanError {
            status = error.httpStatus
            failure = Batch.Failure(code: error.code.rawValue, message: error.message)
        } catch {
            status = 500
            failure = Batch.Failure(code: "server_error", message: "The response could not be served.")
        }
        await recorder.finish(method: "POST", path: "/v1/responses/\(response.id)", status: status, started: started, record: record)
        if Task.isCancelled { return }
        // Written again while the store does not answer: a response left in progress would run
        // again at the next claim.
        for attempt in 0..<5 {
            do {
                if let result, failure == nil {
                    _ = try await store.moveResponse(
                        response.id, to: .completed, from: [.inProgress], result: result, failure: nil, now: Date())
                } else {
                    _ = try await store.moveResponse(
                        response.id, to: .failed, from: [.inProgress], result: nil,
                        failure: failure ?? Batch.Failure(code: "server_error", message: "The response failed."), now: Date())
                }
                return
            } catch {
                try? await Task.sleep(for: .milliseconds(200 << attempt))
            }
        }
    }

    /// The response's events as a server-sent stream: those after `startingAfter`, then the
    /// rest as it runs, until it ends (or the stream's wait runs out).
    private func stream(_ first: BackgroundResponse, startingAfter: Int) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let store = store
        let wait = streamWait
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                var sent = startingAfter
                var current = first
                let until = ContinuousClock.now.advanced(by: wait)
                while true {
                    let events = ResponseObjects.events(of: current)
                    var buffer = ByteBuffer()
                    for (number, event) in events.enumerated() where number > sent {
                        buffer.writeString("event: \(event.type)\ndata: ")
                        buffer.writeBytes(event.data)
                        buffer.writeString("\n\n")
                        sent = number
                    }
                    if buffer.readableBytes > 0 { try await writer.write(buffer) }
                    if current.status.isTerminal || ContinuousClock.now >= until { break }
                    try await Task.sleep(for: .milliseconds(100))
                    guard let next = try await store.response(current.id, apiKeyID: current.apiKeyID) else { break }
                    current = next
                }
                try await writer.finish(nil)
            })
    }

    static func noResponse(_ id: String) -> MizanError {
        MizanError(.notFound, "No response with id '\(SafeText.escaped(id))' found.")
    }
}
