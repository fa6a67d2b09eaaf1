/// The state of a dispatch job.
///
/// `accepted → leased → succeeded | failed | timed_out`, with `accepted → timed_out`,
/// `accepted → failed` (cancelled) and `leased → accepted` (requeue). Terminal states never change.
public enum JobState: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// Waiting in its model's queue for a node.
    case accepted
    /// Held by a node under a lease fenced by (job id, attempt).
    case leased
    /// Finished with a result.
    case succeeded
    /// Finished with an error (including cancellation by the client).
    case failed
    /// Its deadline passed before it finished.
    case timedOut = "timed_out"

    /// Whether the state is final.
    public var isTerminal: Bool {
        switch self {
        case .accepted, .leased: false
        case .succeeded, .failed, .timedOut: true
        }
    }

    /// The states a job can still move out of.
    public static let live: [JobState] = [.accepted, .leased]
    /// The final states.
    public static let terminal: [JobState] = [.succeeded, .failed, .timedOut]

    public var description: String { rawValue }
}

/// An event that moves a job from one state to another.
public enum JobTransition: String, Sendable, CaseIterable, CustomStringConvertible {
    /// A node takes the job.
    case lease
    /// The holder reports a result.
    case succeed
    /// The holder reports a failure, or recovery gives up on the job.
    case fail
    /// The deadline passed.
    case timeOut
    /// The client went away.
    case cancel
    /// The job goes back to its queue for another attempt.
    case requeue

    public var description: String { rawValue }
}

/// The job state machine: the one table of allowed transitions that every store enforces.
public enum JobStateMachine {
    /// The state a job moves to when `transition` happens in `state`, or `nil` when the
    /// transition is not allowed there.
    /// - Parameters:
    ///   - state: The current state.
    ///   - transition: The event.
    /// - Returns: The next state, or `nil` if the event is refused in `state`.
    public static func next(from state: JobState, on transition: JobTransition) -> JobState? {
        switch (state, transition) {
        case (.accepted, .lease): .leased
        case (.accepted, .timeOut): .timedOut
        case (.accepted, .cancel): .failed
        case (.leased, .succeed): .succeeded
        case (.leased, .fail): .failed
        case (.leased, .timeOut): .timedOut
        case (.leased, .cancel): .failed
        case (.leased, .requeue): .accepted
        default: nil
        }
    }

    /// The states from which `transition` is allowed; stores use it as the guard of
    /// their conditional writes.
    /// - Parameter transition: The event.
    /// - Returns: Every state in which `transition` is allowed.
    public static func sources(of transition: JobTransition) -> [JobState] {
        JobState.allCases.filter { next(from: $0, on: transition) != nil }
    }
}
