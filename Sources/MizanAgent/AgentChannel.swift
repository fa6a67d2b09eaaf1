import AsyncHTTPClient
import Foundation
import Logging
import MizanCore
import NIOCore
import NIOHTTP1
import Synchronization

/// The agent's end of the persistent channel (`POST /agent/v1/channel`): one long-lived HTTP
/// exchange whose request body carries the node's calls and whose response body carries the
/// gateway's replies, as newline-delimited ``AgentWire/ChannelFrame``s. Calls overlap; each
/// waits for the reply with its id.
///
/// It opens on the first call and again on the first call after it broke (the callers' own
/// backoff paces the attempts). When the gateway has no channel (404, an older gateway) or the
/// way to it does not carry one (no answer head within ``openTimeout``, or no reply to the first
/// ping: a proxy that buffers bodies), it says so once with ``Unavailable`` and the client uses
/// the HTTP agent API from then on.
final class AgentChannel: Sendable {
    /// Why the channel cannot be used on this way to the gateway.
    struct Unavailable: Error, CustomStringConvertible {
        var description: String
    }

    /// How long opening may take before the channel counts as unavailable.
    static let openTimeout: Duration = .seconds(10)
    /// The longest line read from the gateway (a lease's jobs carry their bodies); a longer one
    /// ends the channel — a hostile gateway or proxy cannot make the agent hold it without bound.
    static let maxLineBytes = 128 << 20

    let gatewayURL: String
    let http: HTTPClient
    let logger: Logger

    private struct State {
        var connection: Connection?
        var opening: Task<Connection, any Error>?
        var unavailable: Unavailable?
        var nextID = 1
        var onAbort: (@Sendable (AgentWire.LeaseRef) -> Void)?
    }

    private let state = Mutex(State())

    init(gatewayURL: String, http: HTTPClient, logger: Logger) {
        self.gatewayURL = gatewayURL
        self.http = http
        self.logger = logger
    }

    /// What runs when the gateway pushes an `abort` for a job (its client left).
    var onAbort: (@Sendable (AgentWire.LeaseRef) -> Void)? {
        get { state.withLock { $0.onAbort } }
        set { state.withLock { $0.onAbort = newValue } }
    }

    /// Whether the channel was found unavailable (the client then uses HTTP).
    var isUnavailable: Bool { state.withLock { $0.unavailable != nil } }

    /// Closes the open channel, if any: the gateway ends its waiting calls.
    func close() {
        let connection = state.withLock { state in
            defer { state.connection = nil }
            return state.connection
        }
        connection?.close()
    }

    /// Makes a call and waits for its reply; a refusal throws as the HTTP API's would.
    /// - Throws: ``Unavailable`` when the channel cannot be used (use HTTP); ``AgentClientError``.
    /// - Parameter timeout: How long the reply may take (as an HTTP call's would); past it the
    ///   channel counts as broken (a gateway gone without closing it) and is opened again.
    func call(_ frame: AgentWire.ChannelFrame, token: String, timeout: Duration = .seconds(30)) async throws -> AgentWire.ChannelFrame {
        let connection = try await connection(token: token)
        var frame = frame
        frame.id = nextID()
        try connection.send(frame)
        let id = frame.id
        do {
            return try Self.checked(
                try await withTimeLimit(timeout, timeoutError: { ChannelTimeout() }) { try await connection.reply(to: id) })
        } catch is ChannelTimeout {
            connection.close()
            throw AgentClientError(.unreachable, message: "the gateway did not answer over the agent channel within \(timeout)")
        }
    }

    private struct ChannelTimeout: Error {}

    /// Streams a job's events: each chunk of `frames` as a `stream` frame, then the last one; a
    /// refusal from the gateway (409: the client is gone or the lease moved on) ends it at once.
    func stream(lease: AgentWire.LeaseRef, frames: AsyncStream<ByteBuffer>, token: String) async throws {
        let connection = try await connection(token: token)
        let id = nextID()
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await chunk in frames {
                    try Task.checkCancellation()
                    var frame = AgentWire.ChannelFrame(.stream, id: id)
                    frame.jobID = lease.jobID
                    frame.attempt = lease.attempt
                    frame.data = String(buffer: chunk)
                    try connection.send(frame)
                }
                var last = AgentWire.ChannelFrame(.stream, id: id)
                last.jobID = lease.jobID
                last.attempt = lease.attempt
                last.end = true
                try connection.send(last)
                return false
            }
            group.addTask {
                _ = try Self.checked(try await connection.reply(to: id))
                return true
            }
            // The reply ends the call (an early one is a refusal, thrown above).
            while let replied = try await group.next() {
                if replied {
                    group.cancelAll()
                    return
                }
            }
        }
    }

    private func nextID() -> Int {
        state.withLock { state in
            defer { state.nextID = state.nextID == Int.max ? 1 : state.nextID + 1 }
            return state.nextID
        }
    }

    /// A reply as its call's answer, or the refusal it carries as an error.
    static func checked(_ reply: AgentWire.ChannelFrame) throws -> AgentWire.ChannelFrame {
        let status = reply.status ?? 200
        guard (200..<300).contains(status) else {
            throw AgentClientError(
                .status(status), code: reply.error?.code, message: reply.error?.message ?? "the gateway answered \(status)")
        }
        return reply
    }

    /// The open channel for `token`, opening it when there is none.
    private func connection(token: String) async throws -> Connection {
        enum Next {
            case use(Connection)
            case wait(Task<Connection, any Error>)
            case fail(Unavailable)
        }
        let next: Next = state.withLock { state in
            if let unavailable = state.unavailable { return .fail(unavailable) }
            if let connection = state.connection, !connection.isClosed, connection.token == token { return .use(connection) }
            if let opening = state.opening { return .wait(opening) }
            let opening = Task { try await self.open(token: token) }
            state.opening = opening
            return .wait(opening)
        }
        switch next {
        case .use(let connection): return connection
        case .fail(let unavailable): throw unavailable
        case .wait(let opening):
            do {
                let connection = try await opening.value
                state.withLock { state in
                    if state.opening == opening { state.opening = nil }
                    state.connection = connection
                }
                return connection
            } catch {
                let first = state.withLock { state in
                    if state.opening == opening { state.opening = nil }
                    guard let unavailable = error as? Unavailable, state.unavailable == nil else { return false }
                    state.unavailable = unavailable
                    return true
                }
                if first, let unavailable = error as? Unavailable {
                    logger.warning(
                        "the agent channel is unavailable; using the HTTP agent API", metadata: ["mizan.reason": "\(unavailable)"])
                }
                throw error
            }
        }
    }

    /// Opens the channel: the exchange's head, then a ping's reply, each within ``openTimeout``.
    private func open(token: String) async throws -> Connection {
        let (upload, uploadContinuation) = AsyncStream<ByteBuffer>.makeStream()
        var request = HTTPClientRequest(url: gatewayURL + "/agent/v1/channel")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Content-Type", value: "application/x-ndjson")
        request.body = .stream(upload, length: .unknown)
        let connection = Connection(token: token, upload: uploadContinuation)
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .nanoseconds(Self.openTimeout.nanosecondsClamped))
        } catch let error as HTTPClientError where error == .deadlineExceeded {
            uploadContinuation.finish()
            throw Unavailable(
                description: "no answer to the channel's request within \(Self.openTimeout) (a proxy that buffers request bodies?)")
        } catch is CancellationError {
            uploadContinuation.finish()
            throw CancellationError()
        } catch {
            uploadContinuation.finish()
            throw AgentClientError(.unreachable, message: "the gateway at \(gatewayURL) could not be reached (\(error))")
        }
        let status = Int(response.status.code)
        guard status == 200 else {
            uploadContinuation.finish()
            let data = try? await response.body.collect(upTo: 1 << 20)
            let envelope = data.flatMap { try? JSONDecoder().decode(OpenAIErrorEnvelope.self, from: Data($0.readableBytesView)) }
            if [404, 405, 426, 501].contains(status) {
                throw Unavailable(description: "the gateway has no agent channel (it answered \(status))")
            }
            throw AgentClientError(
                .status(status), code: envelope?.error.code, message: envelope?.error.message ?? "the gateway answered \(status)")
        }
        // Replies, line by line, to their calls; the channel is over when the answer ends.
        let logger = logger
        Task {
            var line = ByteBuffer()
            let decoder = AgentWire.decoder()
            do {
                reading: for try await var buffer in response.body {
                    while let newline = buffer.readableBytesView.firstIndex(of: 0x0A) {
                        var part = buffer.readSlice(length: newline - buffer.readerIndex)!
                        buffer.moveReaderIndex(forwardBy: 1)
                        line.writeBuffer(&part)
                        if line.readableBytes > 0,
                            let frame = try? AgentWire.ChannelFrame.read(line: Array(line.readableBytesView), fallback: decoder)
                        {
                            if frame.operation == .abort {
                                if let jobID = frame.jobID, let attempt = frame.attempt {
                                    self.onAbort?(AgentWire.LeaseRef(jobID: jobID, attempt: attempt))
                                }
                            } else {
                                connection.deliver(frame)
                            }
                        }
                        line.clear()
                    }
                    line.writeBuffer(&buffer)
                    if line.readableBytes > Self.maxLineBytes {
                        logger.warning(
                            "the gateway sent a line longer than the agent reads; closing the channel",
                            metadata: ["mizan.bytes": "\(line.readableBytes)"])
                        break reading
                    }
                }
            } catch {
                logger.debug("the agent channel broke", metadata: ["mizan.error": "\(error)"])
            }
            connection.close()
        }
        // A proxy that holds the answer back (response buffering) would stall every call: the
        // first ping must come back in time.
        do {
            try connection.send(AgentWire.ChannelFrame(.ping, id: 0))
            _ = try await withTimeLimit(
                Self.openTimeout,
                timeoutError: {
                    Unavailable(
                        description: "the channel's first ping was not answered within \(Self.openTimeout) (a proxy that buffers answers?)")
                }
            ) {
                try Self.checked(try await connection.reply(to: 0))
            }
        } catch {
            connection.close()
            throw error
        }
        logger.info("connected to the gateway over the agent channel", metadata: ["mizan.gateway": "\(gatewayURL)"])
        return connection
    }
}
