import Foundation

/// A Responses API request made with `background: true`: answered at once in `queued`, run as
/// a job on the capacity its model's placement names, and kept, with its answer, for its key to
/// read (`GET /v1/responses/{id}`) until the retention period ends.
public struct BackgroundResponse: Sendable, Equatable {
    /// Where a background response stands, as OpenAI's Responses API names it.
    public enum Status: String, Sendable, Codable, CaseIterable {
        /// Waiting to run.
        case queued
        /// Running.
        case inProgress = "in_progress"
        /// Answered.
        case completed
        /// Ended in an error.
        case failed
        /// Cancelled by its client.
        case cancelled

        /// Whether it will not change again.
        public var isTerminal: Bool { self == .completed || self == .failed || self == .cancelled }
    }

    /// `resp_…`.
    public var id: String
    /// The key that made it.
    public var apiKeyID: String
    /// The model asked for.
    public var model: String
    /// Where it stands.
    public var status: Status
    /// The request's body as sent, `background` removed.
    public var request: Data
    /// The class it runs in.
    public var priority: PriorityClass
    /// When it was made.
    public var createdAt: Date
    /// When it ended.
    public var finishedAt: Date?
    /// The answer (the response object the capacity returned), once completed.
    public var result: Data?
    /// Why it failed.
    public var failure: Batch.Failure?
    /// The instance running it and until when its claim holds (several instances on one store).
    public var runner: String?
    /// Until when ``runner``'s claim holds.
    public var runnerUntil: Date?

    /// Creates a queued response.
    public init(
        id: String = BackgroundResponse.newID(), apiKeyID: String, model: String, request: Data, priority: PriorityClass,
        createdAt: Date
    ) {
        self.id = id
        self.apiKeyID = apiKeyID
        self.model = model
        self.status = .queued
        self.request = request
        self.priority = priority
        self.createdAt = createdAt
    }

    /// A new id: `resp_` and 24 hex digits, time-ordered.
    public static func newID() -> String { "resp_" + BatchIDs.hex() }
}
