import Synchronization

/// Counts the statements a store sends to its database, for tests and benchmarks that hold the
/// cost of an operation in statements (a count that cannot grow unnoticed).
public final class StatementCounter: Sendable {
    private let count = Atomic<Int>(0)

    /// Creates a counter at zero.
    public init() {}

    /// The statements counted so far.
    public var value: Int { count.load(ordering: .relaxed) }

    /// Counts `statements` more.
    /// - Parameter statements: How many.
    public func add(_ statements: Int = 1) {
        count.add(statements, ordering: .relaxed)
    }
}
