import Foundation

extension AgentWire {
    /// One message on the agent channel (`POST /agent/v1/channel`): a node's calls and the
    /// gateway's replies travel as newline-delimited JSON over one long-lived HTTP exchange —
    /// calls in the request body, replies in the response body — instead of one HTTP exchange
    /// per call. Each call carries an `id` that its reply repeats; calls may overlap and replies
    /// come in the order they are ready.
    ///
    /// The calls and their bodies are those of the HTTP agent API: `lease`, `heartbeat`,
    /// `complete`, `fail`, and `stream` (a streamed job's events, several frames, the last with
    /// `end: true`), plus `ping`, `cancel` (the node no longer waits for call `id`: a
    /// waiting lease ends without leasing) and `goodbye` (the agent stops: it holds no job
    /// any more; its node is disconnected at once). A reply has the HTTP API's status and
    /// answer (or `error`).
    ///
    /// The gateway also sends one frame unasked: `abort` (`id` 0, with `jobID` and `attempt`),
    /// the moment a job leased to the node ended without it — its client left, its deadline
    /// passed: the node stops the job's local call at once and reports nothing for it.
    public struct ChannelFrame: Sendable, Codable {
        /// What a frame is.
        public enum Operation: String, Sendable, Codable {
            case ping, lease, heartbeat, complete, fail, stream, cancel, reply, goodbye, abort
        }

        /// The operation (`op` on the wire).
        public var operation: Operation
        /// The call's number, unique among the node's calls in flight on this channel; its reply
        /// repeats it. A stream's frames share one.
        public var id: Int
        /// `lease`: the request.
        public var lease: LeaseRequest?
        /// `heartbeat`: the request.
        public var heartbeat: HeartbeatRequest?
        /// `complete`, `fail`, `stream`, `abort`: the job.
        public var jobID: JobID?
        /// `complete`: the request.
        public var complete: CompleteRequest?
        /// `fail`: the request.
        public var fail: FailRequest?
        /// `stream` and `abort`: the attempt the stream (or lease) belongs to.
        public var attempt: Int?
        /// `stream`: event-stream text (whole `data:` / `event:` events, as the HTTP stream body carries).
        public var data: String?
        /// `stream`: the last frame of the stream.
        public var end: Bool?
        /// `reply`: the HTTP status the call would have had.
        public var status: Int?
        /// `reply` to `lease`.
        public var leased: LeaseResponse?
        /// `reply` to `heartbeat`.
        public var heartbeatReply: HeartbeatResponse?
        /// `reply` to `complete`, `fail` and `stream`.
        public var outcome: ReportOutcome?
        /// `reply` refusing a call (OpenAI's error body).
        public var error: OpenAIErrorEnvelope.Body?

        /// Creates a frame; set the fields of its operation.
        public init(_ operation: Operation, id: Int) {
            self.operation = operation
            self.id = id
        }

        /// A reply to call `id` with `status`.
        public static func reply(to id: Int, status: Int = 200) -> ChannelFrame {
            var frame = ChannelFrame(.reply, id: id)
            frame.status = status
            return frame
        }

        enum CodingKeys: String, CodingKey {
            case operation = "op"
            case id, lease, heartbeat, jobID, complete, fail, attempt, data, end, status, leased, heartbeatReply, outcome, error
        }
    }
}
