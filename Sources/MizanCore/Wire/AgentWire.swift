import Foundation

/// The JSON bodies of the gateway's agent API (`/agent/v1/…`), shared by the gateway and agents.
///
/// Dates are ISO 8601; request and result bodies are base64 (`Data`), so they travel byte for byte.
public enum AgentWire {
    /// A lease as the wire names it: the job and its attempt (the node is the caller).
    public struct LeaseRef: Hashable, Sendable, Codable {
        /// The job.
        public var jobID: JobID
        /// The attempt the lease belongs to.
        public var attempt: Int

        /// Creates a reference.
        public init(jobID: JobID, attempt: Int) {
            self.jobID = jobID
            self.attempt = attempt
        }
    }

    /// `POST /agent/v1/register` (bearer: the one-time registration token).
    public struct RegisterRequest: Sendable, Codable {
        /// What the node serves and how much.
        public var report: NodeReport

        /// Creates a request.
        public init(report: NodeReport) { self.report = report }
    }

    /// The answer to a registration: the node token, shown once.
    public struct RegisterResponse: Sendable, Codable {
        /// The registered node.
        public var node: Node
        /// The node's bearer token for every later call; keep it secret.
        public var nodeToken: String

        /// Creates a response.
        public init(node: Node, nodeToken: String) {
            self.node = node
            self.nodeToken = nodeToken
        }
    }

    /// `POST /agent/v1/heartbeat`.
    public struct HeartbeatRequest: Sendable, Codable {
        /// The node's current models, capacity and health.
        public var report: NodeReport
        /// The leases the node is running now.
        public var running: [LeaseRef]

        /// Creates a request.
        public init(report: NodeReport, running: [LeaseRef] = []) {
            self.report = report
            self.running = running
        }
    }

    /// The answer to `POST /agent/v1/goodbye` (and the channel's `goodbye`): the node is
    /// disconnected, and jobs still leased to it went back to the queue.
    public struct GoodbyeResponse: Sendable, Codable, Equatable {
        /// Always `true`.
        public var disconnected: Bool

        /// Creates the answer.
        public init(disconnected: Bool = true) { self.disconnected = disconnected }
    }

    /// The answer to a heartbeat.
    public struct HeartbeatResponse: Sendable, Codable {
        /// The node as the gateway knows it.
        public var node: Node
        /// Running leases the node must abort (cancelled, timed out or moved elsewhere).
        public var abort: [LeaseRef]

        /// Creates a response.
        public init(node: Node, abort: [LeaseRef]) {
            self.node = node
            self.abort = abort
        }
    }

    /// `POST /agent/v1/lease`: waits (long-poll) until work arrives or `waitSeconds` pass.
    public struct LeaseRequest: Sendable, Codable {
        /// The most jobs to take now (the gateway also caps it by the node's free slots).
        public var limit: Int
        /// How long to wait for work, in seconds (the gateway caps it).
        public var waitSeconds: Double?

        /// Creates a request.
        public init(limit: Int, waitSeconds: Double? = nil) {
            self.limit = limit
            self.waitSeconds = waitSeconds
        }
    }

    /// A job assigned to the node under a lease, as the agent receives it (the store's side
    /// of the same lease is ``MizanCore/LeasedJob``).
    public struct Assignment: Sendable, Codable, Equatable {
        /// The job.
        public var jobID: JobID
        /// The attempt to quote when reporting.
        public var attempt: Int
        /// The request id, for logs on both sides.
        public var requestID: String
        /// The public model.
        public var model: String
        /// The endpoint to call on the local server (chat completions when the gateway names none).
        public var endpoint: Endpoint
        /// The client's request body, verbatim.
        public var body: Data
        /// Whether the client asked for a stream.
        public var stream: Bool
        /// When the job must be finished.
        public var deadline: Date

        /// Creates an assignment.
        public init(
            jobID: JobID, attempt: Int, requestID: String, model: String, endpoint: Endpoint = .chatCompletions, body: Data, stream: Bool,
            deadline: Date
        ) {
            self.jobID = jobID
            self.attempt = attempt
            self.requestID = requestID
            self.model = model
            self.endpoint = endpoint
            self.body = body
            self.stream = stream
            self.deadline = deadline
        }

        /// The wire form of a store's leased job.
        public init(_ leased: MizanCore.LeasedJob) {
            self.init(
                jobID: leased.job.id, attempt: leased.lease.attempt, requestID: leased.job.requestID,
                model: leased.job.model, endpoint: leased.job.endpoint, body: leased.job.body, stream: leased.job.stream,
                deadline: leased.job.deadline
            )
        }

        enum CodingKeys: String, CodingKey { case jobID, attempt, requestID, model, endpoint, body, stream, deadline }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            jobID = try container.decode(JobID.self, forKey: .jobID)
            attempt = try container.decode(Int.self, forKey: .attempt)
            requestID = try container.decode(String.self, forKey: .requestID)
            model = try container.decode(String.self, forKey: .model)
            endpoint = try container.decodeIfPresent(Endpoint.self, forKey: .endpoint) ?? .chatCompletions
            body = try container.decode(Data.self, forKey: .body)
            stream = try container.decode(Bool.self, forKey: .stream)
            deadline = try container.decode(Date.self, forKey: .deadline)
        }
    }

    /// The answer to a lease call; empty when the wait passed without work.
    public struct LeaseResponse: Sendable, Codable {
        /// The leased jobs.
        public var jobs: [Assignment]

        /// Creates a response.
        public init(jobs: [Assignment]) { self.jobs = jobs }
    }

    /// Failure codes a node reports that the gateway answers the client with their own status
    /// (any other code of a final failure is a 502).
    public enum FailureCode {
        /// The local server refused the request as too large (HTTP 413): the client gets 413.
        public static let requestTooLarge = "request_too_large"
        /// The local server refused the request as invalid (HTTP 400 or 422): the client gets 400.
        public static let invalidRequest = "invalid_request"
    }

    /// A failure report.
    public struct Failure: Sendable, Codable, Equatable {
        /// A short machine code, e.g. `provider_unreachable`.
        public var code: String
        /// A human message (no secrets, no client content).
        public var message: String
        /// Whether another node may try again (only before any output was produced).
        public var retryable: Bool

        /// Creates a failure.
        public init(code: String, message: String, retryable: Bool) {
            self.code = code
            self.message = message
            self.retryable = retryable
        }
    }

    /// One job's outcome as reported by the node: a result or a failure.
    public struct Report: Sendable, Codable, Equatable {
        /// The job.
        public var jobID: JobID
        /// The attempt the node was running.
        public var attempt: Int
        /// The provider's response body, when it succeeded.
        public var result: Data?
        /// Token usage of the answer.
        public var usage: TokenUsage?
        /// The failure, when it failed.
        public var failure: Failure?

        /// A success.
        public static func succeeded(_ ref: LeaseRef, result: Data, usage: TokenUsage?) -> Report {
            Report(jobID: ref.jobID, attempt: ref.attempt, result: result, usage: usage, failure: nil)
        }

        /// A failure.
        public static func failed(_ ref: LeaseRef, _ failure: Failure) -> Report {
            Report(jobID: ref.jobID, attempt: ref.attempt, result: nil, usage: nil, failure: failure)
        }

        /// Creates a report.
        public init(jobID: JobID, attempt: Int, result: Data?, usage: TokenUsage?, failure: Failure?) {
            self.jobID = jobID
            self.attempt = attempt
            self.result = result
            self.usage = usage
            self.failure = failure
        }

        /// The store's completion this report asks for.
        /// - Throws: ``MizanError`` `badRequest` when it holds neither a result nor a failure.
        public func completion() throws -> JobCompletion {
            if let failure {
                return .failed(code: failure.code, message: failure.message, retryable: failure.retryable)
            }
            guard let result else {
                throw MizanError(.badRequest, "A report needs either 'result' or 'failure'.")
            }
            return .succeeded(result: result, usage: usage)
        }
    }

    /// `POST /agent/v1/jobs/{id}/complete`.
    public struct CompleteRequest: Sendable, Codable {
        /// The attempt the node was running.
        public var attempt: Int
        /// The provider's response body.
        public var result: Data
        /// Token usage of the answer.
        public var usage: TokenUsage?

        /// Creates a request.
        public init(attempt: Int, result: Data, usage: TokenUsage?) {
            self.attempt = attempt
            self.result = result
            self.usage = usage
        }
    }

    /// `POST /agent/v1/jobs/{id}/fail`.
    public struct FailRequest: Sendable, Codable {
        /// The attempt the node was running.
        public var attempt: Int
        /// What went wrong.
        public var failure: Failure

        /// Creates a request.
        public init(attempt: Int, failure: Failure) {
            self.attempt = attempt
            self.failure = failure
        }
    }

    /// `POST /agent/v1/reports`: one or more outcomes in one call (applied one by one, each fenced).
    public struct ReportBatch: Sendable, Codable {
        /// The outcomes.
        public var reports: [Report]

        /// Creates a batch.
        public init(reports: [Report]) { self.reports = reports }
    }

    /// What the gateway made of one report.
    public struct ReportOutcome: Sendable, Codable, Equatable {
        /// The job.
        public var jobID: JobID
        /// The job's state after the report, when it was accepted.
        public var state: JobState?
        /// Why it was refused (e.g. `lease_conflict` for an old attempt).
        public var error: OpenAIErrorEnvelope.Body?

        /// Creates an outcome.
        public init(jobID: JobID, state: JobState?, error: OpenAIErrorEnvelope.Body?) {
            self.jobID = jobID
            self.state = state
            self.error = error
        }
    }

    /// The answer to a report batch, in the order of the reports.
    public struct ReportBatchResponse: Sendable, Codable {
        /// One outcome per report.
        public var outcomes: [ReportOutcome]

        /// Creates a response.
        public init(outcomes: [ReportOutcome]) { self.outcomes = outcomes }
    }

    /// The JSON encoder the agent API uses (ISO 8601 dates).
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    /// The JSON decoder the agent API uses (ISO 8601 dates).
    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
