import AsyncHTTPClient
import Foundation
import Logging
import MizanCore
import MizanProvider
import NIOCore
import NIOHTTP1

/// A typed client of the gateway's agent API (`/agent/v1/…`).
///
/// Every call but ``register(registrationToken:report:)`` authenticates with the node token.
/// With the ``Transport/channel`` transport the calls travel over one persistent channel
/// (`POST /agent/v1/channel`) instead of an HTTP exchange each; where the gateway or the way to
/// it has no channel, the client says so once in its log and uses the HTTP calls.
public struct AgentClient: Sendable {
    /// How calls reach the gateway.
    public enum Transport: String, Sendable, CaseIterable {
        /// One persistent channel for every call (falls back to ``http`` where it cannot be had).
        case channel
        /// An HTTP exchange per call: the agent API of `Docs/AGENT_PROTOCOL.md`.
        case http
    }

    /// The gateway's base URL, e.g. `http://gateway:8080`.
    public let gatewayURL: String
    /// The transport asked for.
    public let transport: Transport
    let http: HTTPClient
    let channel: AgentChannel?
    let logger: Logger

    /// Creates a client.
    /// - Parameters:
    ///   - gatewayURL: The gateway's base URL.
    ///   - httpClient: The HTTP client (a refused connection should fail at once, as
    ///     `ProviderClient.makeHTTPClient(connectTimeout:idleTimeout:maxConnectionsPerHost:)`'s do,
    ///     so the caller's own backoff decides when to try again).
    ///   - transport: How calls reach the gateway (the persistent channel by default).
    ///   - logger: Where the transport's changes are logged.
    public init(
        gatewayURL: String, httpClient: HTTPClient = ProviderClient.shared.httpClient, transport: Transport = .channel,
        logger: Logger = Logger(label: "mizan.agent")
    ) {
        let base = gatewayURL.hasSuffix("/") ? String(gatewayURL.dropLast()) : gatewayURL
        self.gatewayURL = base
        self.http = httpClient
        self.transport = transport
        self.logger = logger
        self.channel = transport == .channel ? AgentChannel(gatewayURL: base, http: httpClient, logger: logger) : nil
    }

    /// Closes the persistent channel, if one is open (the next call opens it again): an agent
    /// that stops closes it, so that the gateway ends the calls it still waits on.
    public func close() {
        channel?.close()
    }

    /// Sets what runs when the gateway pushes an abort over the channel: a job leased to this
    /// node ended without it (its client left, its deadline passed). Over HTTP the same news
    /// comes in heartbeat answers.
    /// - Parameter handler: Called with the lease to abort; it must return quickly.
    public func onAbort(_ handler: @escaping @Sendable (AgentWire.LeaseRef) -> Void) {
        channel?.onAbort = handler
    }

    /// Says goodbye: the agent stops and holds no job any more, so its node is disconnected at
    /// once and whatever is still leased to it goes back to the queue.
    /// - Parameter token: The node token.
    public func goodbye(token: String) async throws {
        let frame = AgentWire.ChannelFrame(.goodbye, id: 0)
        let _: AgentWire.GoodbyeResponse = try await route(
            frame, token: token, timeout: .seconds(5), answer: { _ in AgentWire.GoodbyeResponse() }
        ) {
            try await call("/agent/v1/goodbye", token: token, body: [String: String](), timeout: .seconds(5))
        }
    }

    /// Whether calls travel over the persistent channel now (`false` before it is first
    /// needed, and for good once it was found unavailable).
    public var usesChannel: Bool { channel.map { !$0.isUnavailable } ?? false }

    /// Runs a call over the channel when there is one, else (or once it turns out unavailable) over HTTP.
    private func route<Answer>(
        _ frame: AgentWire.ChannelFrame, token: String, timeout: Duration = .seconds(30),
        answer: (AgentWire.ChannelFrame) throws -> Answer?,
        http: () async throws -> Answer
    ) async throws -> Answer {
        if let channel, !channel.isUnavailable {
            do {
                let reply = try await channel.call(frame, token: token, timeout: timeout)
                guard let value = try answer(reply) else {
                    throw AgentClientError(.invalidAnswer, message: "the gateway sent a reply that could not be read")
                }
                return value
            } catch is AgentChannel.Unavailable {
                // Said once in the log by the channel; HTTP from now on.
            }
        }
        return try await http()
    }

    /// Exchanges a one-time registration token for a node token.
    public func register(registrationToken: String, report: NodeReport) async throws -> AgentWire.RegisterResponse {
        try await call("/agent/v1/register", token: registrationToken, body: AgentWire.RegisterRequest(report: report))
    }

    /// Reports the node's state and running leases; the answer names leases to abort.
    public func heartbeat(token: String, _ request: AgentWire.HeartbeatRequest) async throws -> AgentWire.HeartbeatResponse {
        var frame = AgentWire.ChannelFrame(.heartbeat, id: 0)
        frame.heartbeat = request
        return try await route(frame, token: token, answer: \.heartbeatReply) {
            try await call("/agent/v1/heartbeat", token: token, body: request)
        }
    }

    /// Waits (long-poll) for up to `limit` jobs.
    /// - Parameters:
    ///   - token: The node token.
    ///   - limit: The most jobs to take.
    ///   - wait: How long the gateway may hold the call without work.
    public func lease(token: String, limit: Int, wait: Duration) async throws -> [AgentWire.Assignment] {
        let seconds = Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18
        var frame = AgentWire.ChannelFrame(.lease, id: 0)
        frame.lease = AgentWire.LeaseRequest(limit: limit, waitSeconds: seconds)
        return try await route(frame, token: token, timeout: wait + .seconds(15), answer: { $0.leased?.jobs }) {
            let answer: AgentWire.LeaseResponse = try await call(
                "/agent/v1/lease", token: token, body: AgentWire.LeaseRequest(limit: limit, waitSeconds: seconds),
                timeout: wait + .seconds(15)
            )
            return answer.jobs
        }
    }

    /// Reports a job's result.
    public func complete(token: String, jobID: JobID, _ request: AgentWire.CompleteRequest) async throws -> AgentWire.ReportOutcome {
        var frame = AgentWire.ChannelFrame(.complete, id: 0)
        frame.jobID = jobID
        frame.complete = request
        return try await route(frame, token: token, answer: \.outcome) {
            try await call("/agent/v1/jobs/\(jobID)/complete", token: token, body: request)
        }
    }

    /// Reports a job's failure.
    public func fail(token: String, jobID: JobID, _ request: AgentWire.FailRequest) async throws -> AgentWire.ReportOutcome {
        var frame = AgentWire.ChannelFrame(.fail, id: 0)
        frame.jobID = jobID
        frame.fail = request
        return try await route(frame, token: token, answer: \.outcome) {
            try await call("/agent/v1/jobs/\(jobID)/fail", token: token, body: request)
        }
    }

    /// Streams a job's server-sent events to the gateway as they are produced: `frames` are
    /// `text/event-stream` bytes; the call ends when they do, or when the gateway refuses (409:
    /// the lease moved on or the client went away — stop the job).
    /// - Parameters:
    ///   - token: The node token.
    ///   - lease: The job and attempt.
    ///   - frames: The event bytes, finished when the local stream ends.
    ///   - timeout: Limit for the whole upload.
    public func stream(token: String, lease: AgentWire.LeaseRef, frames: AsyncStream<ByteBuffer>, timeout: Duration) async throws {
        if let channel, !channel.isUnavailable {
            do {
                // The channel is open by now (the job was leased over it), so an unavailable one
                // is found before any event was taken from `frames`.
                try await withTimeLimit(timeout, timeoutError: { AgentClientError(.unreachable, message: "the stream took too long") }) {
                    try await channel.stream(lease: lease, frames: frames, token: token)
                }
                return
            } catch is AgentChannel.Unavailable {
                // Said once in the log by the channel; HTTP from now on.
            }
        }
        var request = HTTPClientRequest(url: gatewayURL + "/agent/v1/jobs/\(lease.jobID)/stream?attempt=\(lease.attempt)")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Content-Type", value: "text/event-stream")
        request.body = .stream(frames, length: .unknown)
        let _: AgentWire.ReportOutcome = try await send(request, timeout: timeout)
    }

    /// Reports several outcomes in one call.
    public func report(token: String, _ batch: AgentWire.ReportBatch) async throws -> AgentWire.ReportBatchResponse {
        try await call("/agent/v1/reports", token: token, body: batch)
    }

    func call<Body: Encodable, Answer: Decodable>(_ path: String, token: String, body: Body, timeout: Duration = .seconds(30)) async throws
        -> Answer
    {
        var request = HTTPClientRequest(url: gatewayURL + path)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try AgentWire.encoder().encode(body)))
        return try await send(request, timeout: timeout)
    }

    func send<Answer: Decodable>(_ request: HTTPClientRequest, timeout: Duration) async throws -> Answer {
        let response: HTTPClientResponse
        let data: Data
        do {
            response = try await http.execute(
                request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + 1_000_000_000))
            data = Data(try await response.body.collect(upTo: AgentChannel.maxLineBytes).readableBytesView)
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as HTTPClientError where error == .cancelled {
            throw CancellationError()
        } catch {
            throw AgentClientError(.unreachable, message: "the gateway at \(gatewayURL) could not be reached (\(error))")
        }
        guard (200..<300).contains(response.status.code) else {
            let envelope = try? JSONDecoder().decode(OpenAIErrorEnvelope.self, from: data)
            throw AgentClientError(
                .status(Int(response.status.code)),
                code: envelope?.error.code,
                message: envelope?.error.message ?? "the gateway answered \(response.status.code)"
            )
        }
        do {
            return try AgentWire.decoder().decode(Answer.self, from: data)
        } catch {
            throw AgentClientError(.invalidAnswer, message: "the gateway sent an answer that could not be read")
        }
    }
}

/// A failed agent API call.
public struct AgentClientError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public enum Kind: Sendable, Equatable {
        /// No answer: the gateway is down or unreachable (try again later).
        case unreachable
        /// The gateway answered with an error status.
        case status(Int)
        /// The answer could not be decoded.
        case invalidAnswer
    }

    /// What went wrong.
    public var kind: Kind
    /// The gateway's error code, e.g. `lease_conflict`.
    public var code: String?
    /// A human message.
    public var message: String

    /// Creates an error.
    public init(_ kind: Kind, code: String? = nil, message: String) {
        self.kind = kind
        self.code = code
        self.message = message
    }

    /// Whether trying again later may succeed (gateway unreachable or failing).
    public var isTransient: Bool {
        switch kind {
        case .unreachable: true
        case .status(let status): status >= 500 || status == 429
        case .invalidAnswer: false
        }
    }

    /// Whether the gateway refused the node's credential (revoked or unknown).
    public var isUnauthorized: Bool { kind == .status(401) }

    public var description: String { message }
}
