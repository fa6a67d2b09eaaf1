import Foundation

/// A batch of the Batch API (`/v1/batches`): the requests of an uploaded file, each run as a
/// job of class `batch` on idle capacity within the batch's window, their answers written to
/// its output file and their failures to its error file, each `custom_id` exactly once.
public struct Batch: Sendable, Equatable {
    /// Where a batch stands, as OpenAI's Batch API names it.
    public enum Status: String, Sendable, Codable, CaseIterable {
        /// Its input is being checked and its lines set up.
        case validating
        /// Its lines are running.
        case inProgress = "in_progress"
        /// Its lines have ended; its files are being written.
        case finalizing
        /// Every line ended before the window closed.
        case completed
        /// It could not run (its input was refused, or its key ran out of budget).
        case failed
        /// Its window closed with lines not run; those are in its error file.
        case expired
        /// A client cancelled it: lines running finish, no new line starts.
        case cancelling
        /// It was cancelled; what finished is in its output file.
        case cancelled

        /// Whether it will not change again.
        public var isTerminal: Bool {
            switch self {
            case .completed, .failed, .expired, .cancelled: true
            case .validating, .inProgress, .finalizing, .cancelling: false
            }
        }

        /// The statuses a runner works on.
        public static let live: [Status] = [.validating, .inProgress, .finalizing, .cancelling]
    }

    /// How many of its lines there are, and how many ended each way.
    public struct Counts: Sendable, Equatable, Codable {
        /// Its lines.
        public var total: Int
        /// Lines answered (in the output file).
        public var completed: Int
        /// Lines that failed, expired or were cancelled (in the error file).
        public var failed: Int
        /// Lines served by agent nodes.
        public var byNodes: Int
        /// Lines served by provider routes.
        public var byRoutes: Int

        /// Creates counts.
        public init(total: Int = 0, completed: Int = 0, failed: Int = 0, byNodes: Int = 0, byRoutes: Int = 0) {
            self.total = total
            self.completed = completed
            self.failed = failed
            self.byNodes = byNodes
            self.byRoutes = byRoutes
        }

        /// Lines not ended yet.
        public var pending: Int { max(0, total - completed - failed) }
    }

    /// Why a batch failed or stopped early.
    public struct Failure: Sendable, Equatable, Codable {
        /// A stable code (`budget_exhausted`, `invalid_input` …).
        public var code: String
        /// What happened, for people.
        public var message: String
        /// The input line concerned, if one.
        public var line: Int?

        /// Creates a failure.
        public init(code: String, message: String, line: Int? = nil) {
            self.code = code
            self.message = message
            self.line = line
        }
    }

    /// `batch_…`.
    public var id: String
    /// The key that made it: its lines are served, limited and counted as this key's.
    public var apiKeyID: String
    /// The endpoint every line calls.
    public var endpoint: Endpoint
    /// The uploaded input file.
    public var inputFileID: String
    /// The window in seconds (`24h`: 86,400).
    public var windowSeconds: Int
    /// The client's metadata (at most 16 pairs).
    public var metadata: [String: String]?
    /// Where it stands.
    public var status: Status
    /// Its line counts.
    public var counts: Counts
    /// When it was created; the window counts from here.
    public var createdAt: Date
    /// When its lines started.
    public var inProgressAt: Date?
    /// When its window closes.
    public var expiresAt: Date
    /// When its last line ended.
    public var finalizingAt: Date?
    /// When it completed.
    public var completedAt: Date?
    /// When it failed.
    public var failedAt: Date?
    /// When it expired.
    public var expiredAt: Date?
    /// When a client asked to cancel it.
    public var cancellingAt: Date?
    /// When it was cancelled.
    public var cancelledAt: Date?
    /// Its output file, once written.
    public var outputFileID: String?
    /// Its error file, once written (when any line failed).
    public var errorFileID: String?
    /// Why it failed or stopped early.
    public var failures: [Failure]
    /// The class its lines run in (`batch`).
    public var priority: PriorityClass

    /// Creates a batch in `validating`.
    public init(
        id: String = Batch.newID(), apiKeyID: String, endpoint: Endpoint, inputFileID: String, windowSeconds: Int = 86_400,
        metadata: [String: String]? = nil, createdAt: Date, priority: PriorityClass = .batch
    ) {
        self.id = id
        self.apiKeyID = apiKeyID
        self.endpoint = endpoint
        self.inputFileID = inputFileID
        self.windowSeconds = windowSeconds
        self.metadata = metadata
        self.status = .validating
        self.counts = Counts()
        self.createdAt = createdAt
        self.expiresAt = createdAt.addingTimeInterval(TimeInterval(windowSeconds))
        self.failures = []
        self.priority = priority
    }

    /// A new id: `batch_` and 24 hex digits, time-ordered.
    public static func newID() -> String { "batch_" + BatchIDs.hex() }

    /// The instant past which lines still waiting may go to provider routes: when `spillAt` of
    /// the window has gone (0.8: the last fifth).
    public func spillPoint(spillAt: Double) -> Date {
        createdAt.addingTimeInterval(TimeInterval(windowSeconds) * min(1, max(0, spillAt)))
    }
}

/// How one line of a batch ended: the line of the output file (answered) or of the error
/// file (failed), and what served it.
public struct LineResult: Sendable, Equatable {
    /// Where a line was served.
    public enum Place: String, Sendable, Codable {
        /// By an agent node.
        case node
        /// By a provider route.
        case route
        /// Nowhere (refused, expired or cancelled before it ran).
        case none
    }

    /// The line's number in the input, from 1.
    public var number: Int
    /// Whether it was answered (output file) or not (error file).
    public var succeeded: Bool
    /// The JSON line written, without its line end.
    public var line: Data
    /// Where it ran.
    public var place: Place

    /// Creates a result.
    public init(number: Int, succeeded: Bool, line: Data, place: Place) {
        self.number = number
        self.succeeded = succeeded
        self.line = line
        self.place = place
    }
}

extension Batch {
    /// Moves to `status`, stamping its time (and recording `failure`). What a store writes.
    public mutating func move(to status: Status, failure: Failure?, now: Date) {
        self.status = status
        if let failure { failures.append(failure) }
        switch status {
        case .validating: break
        case .inProgress: inProgressAt = inProgressAt ?? now
        case .finalizing: finalizingAt = finalizingAt ?? now
        case .completed: completedAt = now
        case .failed: failedAt = now
        case .expired: expiredAt = now
        case .cancelling: cancellingAt = cancellingAt ?? now
        case .cancelled: cancelledAt = now
        }
    }
}

extension Batch.Counts {
    /// Counts one ended line.
    public mutating func count(_ result: LineResult) {
        if result.succeeded { completed += 1 } else { failed += 1 }
        switch result.place {
        case .node: byNodes += 1
        case .route: byRoutes += 1
        case .none: break
        }
    }
}

extension StoredFile {
    /// The record of a batch's output or error file.
    public static func written(by batch: Batch, kind: Kind, lines: Int, bytes: Int, now: Date) -> StoredFile {
        StoredFile(
            apiKeyID: batch.apiKeyID, purpose: "batch_output", filename: "\(batch.id)_\(kind == .output ? "output" : "error").jsonl",
            bytes: bytes, lines: lines, createdAt: now, kind: kind, batchID: batch.id)
    }
}

extension BackgroundResponse {
    /// Moves to `status` with its answer or failure; a terminal status stamps its end. What a
    /// store writes.
    public mutating func move(to status: Status, result: Data?, failure: Batch.Failure?, now: Date) {
        self.status = status
        if let result { self.result = result }
        if let failure { self.failure = failure }
        if status.isTerminal {
            finishedAt = now
            runner = nil
            runnerUntil = nil
        }
    }
}
