/// The class a request is queued in: nodes lease the highest class first, and a job that waits
/// long enough rises one class (so that nothing starves). A key has a class; a request may
/// lower its own (`X-Mizan-Priority`), never raise it.
public enum PriorityClass: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    /// Below every interactive and standard request: work that can wait (batches, evaluations).
    case batch
    /// The default.
    case standard
    /// Ahead of everything else: a person waiting for the answer.
    case interactive

    /// The class's rank as a job stores it (``Job/priority``): higher is leased first, and
    /// `standard` is 0, the rank of every job stored before classes.
    public var rank: Int {
        switch self {
        case .batch: -1
        case .standard: 0
        case .interactive: 1
        }
    }

    /// The class of a stored rank (ranks outside the three are clamped).
    public init(rank: Int) {
        self = rank <= -1 ? .batch : rank >= 1 ? .interactive : .standard
    }

    /// The class one above, or `nil` for the highest.
    public var promoted: PriorityClass? {
        switch self {
        case .batch: .standard
        case .standard: .interactive
        case .interactive: nil
        }
    }

    public static func < (lhs: PriorityClass, rhs: PriorityClass) -> Bool { lhs.rank < rhs.rank }

    /// The names, for messages: `interactive, standard or batch`.
    public static let names = "interactive, standard or batch"
}
