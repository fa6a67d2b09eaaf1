import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MizanCore
import MizanDispatch
import NIOCore
import ServiceLifecycle
import Synchronization

extension AgentController {
    /// `POST /agent/v1/channel`: a node's persistent channel. The node's calls arrive as
    /// newline-delimited JSON in the request body and the replies leave in the response body
    /// while both stay open, so that a job costs no HTTP exchange of its own: a standing `lease`
    /// call is answered the moment a job is queued, and results, failures, streamed events and
    /// heartbeats are frames (``AgentWire/ChannelFrame``). Each call is checked and answered
    /// exactly as its HTTP endpoint would; the node's token is checked again for every call, so
    /// that a revoked node is refused on its open channel too.
    func channel(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        guard let token = Credentials.bearer(request.headers[.authorization]) else {
            throw MizanError(.invalidNodeToken, "Missing node token. Send it as 'Authorization: Bearer <token>'.")
        }
        let authenticated = try await dispatcher.authenticateNode(token: token)
        guard channels.count < maxChannels else {
            throw MizanError(
                .overloaded, "This gateway holds as many agent channels as it keeps for nodes; try again later, or use the HTTP agent API.")
        }
        // The node is back: it counts as connected and seen from now on.
        let node = try await dispatcher.markConnected(authenticated.id)
        var headers = HTTPFields()
        headers[.contentType] = "application/x-ndjson"
        headers[.cacheControl] = "no-store"
        // Proxies that buffer responses (nginx) are told not to.
        headers[HTTPField.Name("X-Accel-Buffering")!] = "no"
        let connection = context.channel
        let channels = channels
        let maxUnread = maxUnreadReplyBytes
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                let (replies, output) = AsyncStream<ByteBuffer>.makeStream()
                let outbox = ChannelOutbox(output: output, limit: maxUnread)
                let session = ChannelSession(controller: self, token: token, node: node, outbox: outbox)
                let reading = Task { await session.read(request.body) }
                // Ending the channel from outside (a newer channel of the node, its revocation,
                // replies it does not read) closes the connection: a write waiting on a node that
                // does not read ends too.
                let end: @Sendable () -> Void = {
                    reading.cancel()
                    connection?.close(promise: nil)
                }
                outbox.onOverflow = end
                let channelID = channels.open(node: node.id, push: { outbox.send($0) }, close: end)
                // The gateway's shutdown ends the channel: the node reconnects elsewhere (or to
                // the restarted gateway) and delivers what it still holds there.
                await withGracefulShutdownHandler {
                    do {
                        for await buffer in replies {
                            try await writer.write(buffer)
                            outbox.written(buffer.readableBytes)
                        }
                    } catch {
                        // The node went away: stop reading its calls.
                        reading.cancel()
                    }
                } onGracefulShutdown: {
                    channels.stop()
                    reading.cancel()
                }
                await reading.value
                channels.closed(channelID, saidGoodbye: session.saidGoodbye)
                try await writer.finish(nil)
            })
    }
}

/// The replies of one channel on their way to the node, and how many bytes of them the node
/// has not read yet: past ``limit`` the channel ends (a node that sends calls and never reads
/// their replies cannot make the gateway hold them without bound).
final class ChannelOutbox: Sendable {
    let limit: Int
    private let output: AsyncStream<ByteBuffer>.Continuation
    private let encoder = AgentWire.encoder()
    private struct State {
        var unread = 0
        var overflowed = false
        var onOverflow: (@Sendable () -> Void)?
    }
    private let state = Mutex(State())

    init(output: AsyncStream<ByteBuffer>.Continuation, limit: Int) {
        self.output = output
        self.limit = limit
    }

    /// What ends the channel when the node does not read its replies.
    var onOverflow: (@Sendable () -> Void)? {
        get { state.withLock { $0.onOverflow } }
        set { state.withLock { $0.onOverflow = newValue } }
    }

    /// Queues a frame for the node.
    func send(_ frame: AgentWire.ChannelFrame) {
        guard let line = try? frame.line(fallback: encoder) else { return }
        let overflow: (@Sendable () -> Void)? = state.withLock { state in
            guard !state.overflowed else { return nil }
            state.unread += line.count
            guard state.unread > limit else { return nil }
            state.overflowed = true
            return state.onOverflow
        }
        output.yield(ByteBuffer(bytes: line))
        overflow?()
    }

    /// Counts bytes the connection took.
    func written(_ bytes: Int) {
        state.withLock { $0.unread -= bytes }
    }

    /// No more replies.
    func finish() { output.finish() }
}

/// One node's open channel: its calls, read line by line, each run as its HTTP endpoint runs it.
final class ChannelSession: Sendable {
    let controller: AgentController
    let token: String
    let node: Node
    let outbox: ChannelOutbox
    private let goodbye = Atomic<Bool>(false)

    init(controller: AgentController, token: String, node: Node, outbox: ChannelOutbox) {
        self.controller = controller
        self.token = token
        self.node = node
        self.outbox = outbox
    }

    /// Whether the node said goodbye on this channel.
    var saidGoodbye: Bool { goodbye.load(ordering: .relaxed) }

    /// The longest line read (a `complete` carries the node's result, up to four client bodies).
    var maxLineBytes: Int { controller.maxBodyBytes * 4 + 64 * 1024 }
    /// Calls answered at once, at most (a node with more in flight waits for its replies).
    static let maxCallsInFlight = 1024

    /// The most bytes of one stream's frames queued while its client reads slowly (the node's
    /// stream is refused past it: a channel carries many jobs and does not wait for one).
    var maxQueuedStreamBytes: Int { controller.maxBodyBytes + (1 << 20) }

    /// One stream's frames on their way to its relay.
    struct Lane: Sendable {
        var continuation: AsyncStream<AgentWire.ChannelFrame>.Continuation
        var queued = 0
        var overflowed = false
        /// The stream was refused (or its relay ended) before its last frame: the frames the
        /// node sends until it learns so are dropped, not taken for a new stream.
        var refused = false
    }

    /// The most refused streams remembered on one channel (their later frames dropped).
    static let maxRefusedStreams = 1024

    /// What the calls in flight share.
    final class Shared: Sendable {
        /// Streams open on this channel, by call id: where their frames go, in order.
        let streams = Mutex<[Int: Lane]>([:])
        /// Waiting leases by call id (cancelled by a `cancel` frame, or when reading stops).
        let leases = Mutex<[Int: Task<Void, Never>]>([:])
        /// Calls other than leases in flight (they finish even after reading stops).
        let pending = Mutex(0)
        let drained = Mutex<CheckedContinuation<Void, Never>?>(nil)

        func started() { pending.withLock { $0 += 1 } }

        func finished() {
            let waiter: CheckedContinuation<Void, Never>? = pending.withLock { count in
                count -= 1
                return count == 0
                    ? drained.withLock { waiter in
                        defer { waiter = nil }
                        return waiter
                    } : nil
            }
            waiter?.resume()
        }

        /// Waits until no call is in flight.
        func waitUntilDrained() async {
            await withCheckedContinuation { continuation in
                let now: Bool = pending.withLock { count in
                    if count == 0 { return true }
                    drained.withLock { $0 = continuation }
                    return false
                }
                if now { continuation.resume() }
            }
        }
    }

    /// Reads the node's calls until its request body ends (or the task is cancelled), runs
    /// them, and finishes the outbox once every call that was not a lease has been answered.
    func read(_ body: RequestBody) async {
        let shared = Shared()
        let outbox = outbox
        let send: @Sendable (AgentWire.ChannelFrame) -> Void = { frame in outbox.send(frame) }
        var line = ByteBuffer()
        do {
            reading: for try await buffer in body {
                var buffer = buffer
                while let newline = buffer.readableBytesView.firstIndex(of: 0x0A) {
                    var part = buffer.readSlice(length: newline - buffer.readerIndex)!
                    buffer.moveReaderIndex(forwardBy: 1)
                    line.writeBuffer(&part)
                    if line.readableBytes > 0 { dispatch(Array(line.readableBytesView), shared: shared, send: send) }
                    line.clear()
                }
                line.writeBuffer(&buffer)
                guard line.readableBytes <= maxLineBytes else {
                    var refusal = AgentWire.ChannelFrame.reply(to: 0, status: 413)
                    refusal.error = MizanError(.payloadTooLarge, "A channel frame is larger than \(maxLineBytes) bytes.").envelope.error
                    send(refusal)
                    break reading
                }
            }
        } catch {
            // The node's connection ended.
        }
        // Waiting leases end now: nobody would receive their jobs (a job leased in this very
        // moment is taken back by the node's next heartbeat, as with a lost HTTP answer).
        let leases = shared.leases.withLock { leases in
            defer { leases = [:] }
            return Array(leases.values)
        }
        for lease in leases { lease.cancel() }
        for lease in leases { await lease.value }
        for lane in shared.streams.withLock({ streams in
            defer { streams = [:] }
            return Array(streams.values)
        }) {
            lane.continuation.finish()
        }
        await shared.waitUntilDrained()
        outbox.finish()
    }

    /// Runs one call.
    private func dispatch(_ line: [UInt8], shared: Shared, send: @escaping @Sendable (AgentWire.ChannelFrame) -> Void) {
        let frame: AgentWire.ChannelFrame
        do {
            // The frames of the hot path are read by hand; any other line by the decoder, whose
            // errors name the field.
            frame = try AgentWire.ChannelFrame.read(line: line) { try BodyReader.decode(AgentWire.ChannelFrame.self, from: $0) }
        } catch {
            let id = (try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])?["id"] as? Int ?? 0
            send(Self.refusal(id, error))
            return
        }
        switch frame.operation {
        case .reply, .abort:
            send(Self.refusal(frame.id, MizanError(.badRequest, "A node does not send '\(frame.operation.rawValue)' frames.")))
        case .lease:
            guard shared.leases.withLock({ $0.count < 16 }) else {
                send(Self.refusal(frame.id, MizanError(.rateLimited, "At most 16 lease calls wait at once on a channel.")))
                return
            }
            shared.leases.withLock { leases in
                leases[frame.id] = Task {
                    let reply = await self.answer(frame)
                    // A cancelled lease's caller has gone and wants no answer.
                    if shared.leases.withLock({ $0.removeValue(forKey: frame.id) }) != nil { send(reply) }
                }
            }
        case .cancel:
            shared.leases.withLock { $0.removeValue(forKey: frame.id) }?.cancel()
        case .stream:
            stream(frame, shared: shared, send: send)
        case .ping, .heartbeat, .complete, .fail, .goodbye:
            guard shared.pending.withLock({ $0 < Self.maxCallsInFlight }) else {
                send(Self.refusal(frame.id, MizanError(.rateLimited, "Too many calls in flight on this channel; wait for replies.")))
                return
            }
            shared.started()
            // Not a child of the reading task: a result being stored finishes even when the
            // node's connection drops meanwhile.
            Task {
                send(await self.answer(frame))
                shared.finished()
            }
        }
    }

    /// A call's reply.
    private func answer(_ frame: AgentWire.ChannelFrame) async -> AgentWire.ChannelFrame {
        var reply = AgentWire.ChannelFrame.reply(to: frame.id)
        do {
            let node = try await controller.dispatcher.authenticateNode(token: token)
            switch frame.operation {
            case .ping:
                break
            case .lease:
                let leased = try await controller.lease(node, try Self.required(frame.lease, "lease"))
                controller.channels.leased(leased.jobs, to: node.id)
                reply.leased = leased
            case .goodbye:
                goodbye.store(true, ordering: .relaxed)
                try await controller.goodbye(node)
            case .heartbeat:
                reply.heartbeatReply = try await controller.heartbeat(node, try Self.required(frame.heartbeat, "heartbeat"))
            case .complete:
                // Its own result: nothing to push when the job ends.
                frame.jobID.map(controller.channels.reported)
                reply.outcome = try await controller.complete(
                    node, try Self.required(frame.jobID, "jobID"), try Self.required(frame.complete, "complete"))
            case .fail:
                frame.jobID.map(controller.channels.reported)
                reply.outcome = try await controller.fail(
                    node, try Self.required(frame.jobID, "jobID"), try Self.required(frame.fail, "fail"))
            case .stream, .cancel, .reply, .abort:
                break
            }
        } catch {
            return Self.refusal(frame.id, error)
        }
        return reply
    }

    /// Routes a stream's frame to its stream, opening it on its first frame.
    private func stream(_ frame: AgentWire.ChannelFrame, shared: Shared, send: @escaping @Sendable (AgentWire.ChannelFrame) -> Void) {
        let size = frame.data?.utf8.count ?? 0
        let limit = maxQueuedStreamBytes
        enum Routed {
            case queued
            case overflowed(AsyncStream<AgentWire.ChannelFrame>.Continuation)
            case new
        }
        let routed: Routed = shared.streams.withLock { streams in
            guard var lane = streams[frame.id] else { return .new }
            if lane.refused {
                // A refused stream's late frame: dropped; its last one forgets it.
                if frame.end == true { streams[frame.id] = nil }
                return .queued
            }
            lane.queued += size
            if lane.queued > limit {
                // The client does not keep up: the relay refuses the stream.
                lane.overflowed = true
                streams[frame.id] = lane
                return .overflowed(lane.continuation)
            }
            lane.continuation.yield(frame)
            if frame.end == true {
                streams[frame.id] = nil
                lane.continuation.finish()
            } else {
                streams[frame.id] = lane
            }
            return .queued
        }
        switch routed {
        case .queued: return
        case .overflowed(let continuation):
            continuation.finish()
            return
        case .new: break
        }
        guard shared.pending.withLock({ $0 < Self.maxCallsInFlight }) else {
            send(Self.refusal(frame.id, MizanError(.rateLimited, "Too many calls in flight on this channel; wait for replies.")))
            return
        }
        let (frames, continuation) = AsyncStream<AgentWire.ChannelFrame>.makeStream()
        continuation.yield(frame)
        if frame.end == true {
            continuation.finish()
        } else {
            shared.streams.withLock { $0[frame.id] = Lane(continuation: continuation, queued: size) }
        }
        shared.started()
        Task {
            let reply = await self.relay(frames, first: frame, shared: shared)
            send(reply)
            // A stream refused before its last frame: its later frames are dropped (until its
            // last one, or the channel's end), not taken for a new stream of the same lease.
            let early = (reply.status ?? 200) != 200
            shared.streams.withLock { streams in
                guard let lane = streams[frame.id] else { return }
                lane.continuation.finish()
                if early, !lane.refused, streams.values.filter(\.refused).count < Self.maxRefusedStreams {
                    var refused = lane
                    refused.refused = true
                    streams[frame.id] = refused
                } else if !early {
                    streams[frame.id] = nil
                }
            }
            shared.finished()
        }
    }

    /// Relays a stream's events to the job's client, as `POST /agent/v1/jobs/{id}/stream` does.
    private func relay(
        _ frames: AsyncStream<AgentWire.ChannelFrame>, first: AgentWire.ChannelFrame, shared: Shared
    ) async -> AgentWire.ChannelFrame {
        do {
            let jobID = try Self.required(first.jobID, "jobID")
            let attempt = try Self.required(first.attempt, "attempt")
            try AgentChecks.checkAttempt(attempt)
            let node = try await controller.dispatcher.authenticateNode(token: token)
            var writer = try await controller.dispatcher.openStream(Lease(jobID: jobID, attempt: attempt, nodeID: node.id))
            var parser = ServerSentEventParser(maxEventBytes: controller.maxBodyBytes)
            var ended = false
            for await frame in frames {
                let size = frame.data?.utf8.count ?? 0
                shared.streams.withLock { streams in streams[first.id]?.queued -= size }
                let items = parser.feed(Array((frame.data ?? "").utf8))
                guard !parser.tooLarge else { throw AgentController.eventTooLarge(controller.maxBodyBytes) }
                if frame.end == true {
                    try await writer.send(items + (parser.finish().map { [$0] } ?? []), end: true)
                    ended = true
                    break
                }
                if !items.isEmpty { try await writer.send(items, end: false) }
            }
            guard ended else {
                if shared.streams.withLock({ $0[first.id]?.overflowed ?? false }) {
                    throw MizanError(
                        .payloadTooLarge,
                        "The stream's client reads more slowly than the node sends: more than \(maxQueuedStreamBytes) bytes waited; stop the job."
                    )
                }
                throw MizanError(.badRequest, "The channel closed before the stream's last frame.")
            }
            var reply = AgentWire.ChannelFrame.reply(to: first.id)
            reply.outcome = AgentWire.ReportOutcome(jobID: jobID, state: .leased, error: nil)
            return reply
        } catch {
            return Self.refusal(first.id, error)
        }
    }

    static func required<T>(_ value: T?, _ name: String) throws -> T {
        guard let value else { throw MizanError(.badRequest, "Missing required parameter: '\(name)'.") }
        return value
    }

    /// A refusal with the status and error body the HTTP API would answer.
    static func refusal(_ id: Int, _ error: any Error) -> AgentWire.ChannelFrame {
        let refusal = (error as? MizanError) ?? MizanError(.storeUnavailable, "The gateway could not answer the call; try again.")
        var reply = AgentWire.ChannelFrame.reply(to: id, status: refusal.httpStatus)
        reply.error = refusal.envelope.error
        return reply
    }
}
