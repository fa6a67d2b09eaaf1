import MizanCore
import Logging
import PostgresNIO
import Synchronization

/// A statement whose text is fixed at its call site, run as a named prepared statement so
/// that PostgreSQL parses and plans it once per connection instead of on every call.
///
/// The call site names it by a local marker type and writes the query with interpolation as
/// usual; the text is recorded on first use.
struct PreparedQuery<Key>: PostgresPreparedStatement {
    typealias Row = PostgresRow

    static var name: String { "mizan_\(StatementTexts.identifier(for: Key.self))" }
    static var sql: String { StatementTexts.text(for: Key.self) }

    let bindings: PostgresBindings

    func makeBindings() throws -> PostgresBindings { bindings }
    func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}

/// The recorded text and a short unique name of each prepared statement.
enum StatementTexts {
    private struct Entry {
        var sql: String
        var identifier: String
    }

    private static let entries = Mutex<[ObjectIdentifier: Entry]>([:])

    static func record(_ key: Any.Type, sql: String) {
        entries.withLock { entries in
            let id = ObjectIdentifier(key)
            if let existing = entries[id] {
                assert(existing.sql == sql, "a prepared statement's text must not change between calls")
                return
            }
            entries[id] = Entry(sql: sql, identifier: "s\(entries.count)_\(String(describing: key).prefix(24))")
        }
    }

    static func text(for key: Any.Type) -> String {
        entries.withLock { $0[ObjectIdentifier(key)]?.sql ?? "" }
    }

    static func identifier(for key: Any.Type) -> String {
        entries.withLock { $0[ObjectIdentifier(key)]?.identifier ?? "unknown" }
    }
}

/// What a lease of an open connection came to.
private enum LeaseOutcome<T: Sendable>: Sendable {
    case closed
    case done(T)
}

extension PostgresClient {
    /// Leases a connection that is still open and runs `body` on it.
    ///
    /// A connection the server closed (a restart, `pg_terminate_backend`) can be handed out
    /// by the pool before it has learned of the close, and a statement written to it is never
    /// answered: the call would wait forever. Such a connection is skipped and another one
    /// leased. A closed connection — found at lease, or closed under `body` — is handed back
    /// only once its close completed, so the pool has dropped it before anyone leases again.
    /// - Parameters:
    ///   - logger: Where to log a skipped connection.
    ///   - body: The work, on an open connection.
    /// - Returns: What `body` returns.
    /// - Throws: ``MizanError`` `storeUnavailable` when no open connection could be had; otherwise what `body` throws.
    func withOpenConnection<T: Sendable>(logger: Logger, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        for attempt in 1...5 {
            let outcome: LeaseOutcome<T> = try await withConnection { connection in
                guard !connection.isClosed else {
                    try? await connection.closeFuture.get()
                    return .closed
                }
                do {
                    return .done(try await body(connection))
                } catch {
                    if connection.isClosed { try? await connection.closeFuture.get() }
                    throw error
                }
            }
            if case .done(let value) = outcome { return value }
            logger.debug("skipped a closed database connection", metadata: ["mizan.attempt": "\(attempt)"])
        }
        throw MizanError(.storeUnavailable, "The database connections keep closing; try again.")
    }

    /// Runs `query` on an open connection and collects its rows.
    /// - Parameters:
    ///   - query: The statement.
    ///   - logger: Where to log.
    ///   - transform: Turns each row into a value.
    /// - Returns: The values.
    func rows<T: Sendable>(_ query: PostgresQuery, logger: Logger, _ transform: (PostgresRow) throws -> T) async throws -> [T] {
        try await withOpenConnection(logger: logger) { connection in
            var out: [T] = []
            for try await row in try await connection.query(query, logger: logger) {
                out.append(try transform(row))
            }
            return out
        }
    }

    /// Runs `query` on an open connection, discarding any rows.
    func run(_ query: PostgresQuery, logger: Logger) async throws {
        _ = try await rows(query, logger: logger) { _ in () }
    }

    /// Runs `query` as the prepared statement named by `key` and collects its rows.
    /// - Parameters:
    ///   - key: A marker type unique to the call site.
    ///   - query: The statement; its text must be the same on every call.
    ///   - logger: Where to log.
    ///   - transform: Turns each row into a value.
    /// - Returns: The values.
    func prepared<Key, T: Sendable>(
        _ key: Key.Type,
        _ query: PostgresQuery,
        logger: Logger,
        _ transform: (PostgresRow) throws -> T
    ) async throws -> [T] {
        StatementTexts.record(key, sql: query.sql)
        return try await withOpenConnection(logger: logger) { connection in
            var out: [T] = []
            for try await row in try await connection.execute(PreparedQuery<Key>(bindings: query.binds), logger: logger) {
                out.append(try transform(row))
            }
            return out
        }
    }
}
