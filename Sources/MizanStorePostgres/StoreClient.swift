import Logging
import MizanStore
import PostgresNIO

/// The pool as the store's parts send statements through it: the schema made current before
/// the first statement, and every statement counted in the store's ``StatementCounter``.
struct StoreClient: Sendable {
    /// The pool itself (for work that is not one of the store's statements, such as `LISTEN`).
    let pool: PostgresClient
    /// Migrated before any statement is sent.
    let schema: PostgresSchema
    /// Where each statement is counted.
    let statements: StatementCounter

    /// Runs `query` and collects its rows.
    func rows<T: Sendable>(_ query: PostgresQuery, logger: Logger, _ transform: (PostgresRow) throws -> T) async throws -> [T] {
        try await schema.ensureCurrent()
        statements.add()
        return try await pool.rows(query, logger: logger, transform)
    }

    /// Runs `query`, discarding any rows.
    func run(_ query: PostgresQuery, logger: Logger) async throws {
        try await schema.ensureCurrent()
        statements.add()
        try await pool.run(query, logger: logger)
    }

    /// Runs `query` as the prepared statement named by `key` and collects its rows.
    func prepared<Key, T: Sendable>(
        _ key: Key.Type, _ query: PostgresQuery, logger: Logger, _ transform: (PostgresRow) throws -> T
    ) async throws -> [T] {
        try await schema.ensureCurrent()
        statements.add()
        return try await pool.prepared(key, query, logger: logger, transform)
    }

    /// An open connection for one statement of the caller's (counted as one).
    func withOpenConnection<T: Sendable>(logger: Logger, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws
        -> T
    {
        try await schema.ensureCurrent()
        statements.add()
        return try await pool.withOpenConnection(logger: logger, body)
    }
}
