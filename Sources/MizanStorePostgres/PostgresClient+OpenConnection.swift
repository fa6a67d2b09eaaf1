import Logging
import MizanCore
import PostgresNIO
import Synchronization

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
    func withOpenConnection<T: Sendable>(logger: Logger, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws
        -> T
    {
        for attempt in 1...5 {
            let outcome: LeaseOutcome<T> = try await withConnection { connection in
                guard !connection.isClosed else {
                    try? await connection.closeFuture.get()
                    return .closed
                }
                do {
                    return .done(try await Self.answeredOrGivenUp(on: connection, logger: logger, body))
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

    /// Runs `body`, giving up on it when its connection closes before it ended: a statement
    /// written just as the server closed the connection is never answered (PostgresNIO does
    /// not fail it), and the call would wait forever. The statement did not reach the server,
    /// or its answer is lost; either way the caller gets `storeUnavailable` and it is not
    /// retried here (it may have been applied).
    ///
    /// The close is learned from the connection's close future, through one callback per
    /// connection for all its statements (``InFlightStatements``), rather than a timer per
    /// statement, which would cost a dispatch source on every call.
    private static func answeredOrGivenUp<T: Sendable>(
        on connection: PostgresConnection,
        logger: Logger,
        _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let outcome = OnceResult<T>()
        let work = Task {
            do {
                outcome.resume(with: .success(try await body(connection)))
            } catch {
                outcome.resume(with: .failure(error))
            }
        }
        let registration = InFlightStatements.shared.register(connection) {
            logger.warning("the database connection closed under a statement that was never answered; gave up on it")
            outcome.resume(with: .failure(MizanError(.storeUnavailable, "The database connection closed during the statement; try again.")))
            work.cancel()
        }
        defer { InFlightStatements.shared.remove(registration) }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                outcome.install(continuation)
            }
        } onCancel: {
            work.cancel()
        }
    }

    /// Runs `query` on an open connection and collects its rows.
    /// - Parameters:
    ///   - query: The statement.
    ///   - logger: Where to log.
    ///   - transform: Turns each row into a value.
    /// - Returns: The values.
    func rows<T: Sendable>(_ query: PostgresQuery, logger: Logger, _ transform: (PostgresRow) throws -> T) async throws -> [T] {
        let rows = try await Self.repeatingIfSafe(query.sql, logger: logger) {
            try await withOpenConnection(logger: logger) { connection in
                var out: [PostgresRow] = []
                for try await row in try await connection.query(query, logger: logger) { out.append(row) }
                return out
            }
        }
        return try rows.map(transform)
    }

    /// Runs `work` and, when `sql` is a statement that can be repeated safely (a read) and its
    /// connection closed under it (a database restart), once more on a fresh connection: the
    /// gateway that stayed up answers across the restart instead of failing the request.
    static func repeatingIfSafe<T: Sendable>(_ sql: String, logger: Logger, _ work: () async throws -> T) async throws -> T {
        do {
            return try await work()
        } catch  where isRepeatable(sql) && closedUnder(error) {
            logger.info("a read's database connection closed under it; reading again on a fresh one")
            return try await work()
        }
    }

    /// Whether a statement only reads (a `SELECT` that locks nothing).
    static func isRepeatable(_ sql: String) -> Bool {
        let head = sql.drop { $0 == " " || $0 == "\n" }.prefix(7).uppercased()
        return head.hasPrefix("SELECT") && !sql.uppercased().contains("FOR UPDATE")
    }

    /// Whether an error says the statement's connection closed (rather than the statement failing).
    static func closedUnder(_ error: any Error) -> Bool {
        if let error = error as? MizanError { return error.code == .storeUnavailable }
        if let error = error as? PSQLError {
            return [.serverClosedConnection, .clientClosedConnection, .connectionError, .uncleanShutdown].contains(error.code)
        }
        return false
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
        let bindings = query.binds
        let rows = try await Self.repeatingIfSafe(query.sql, logger: logger) {
            try await withOpenConnection(logger: logger) { connection in
                var out: [PostgresRow] = []
                for try await row in try await connection.execute(PreparedQuery<Key>(bindings: bindings), logger: logger) {
                    out.append(row)
                }
                return out
            }
        }
        return try rows.map(transform)
    }
}

/// A continuation resumed once, by whichever side comes first (even before it is installed).
private final class OnceResult<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var early: Result<T, any Error>?
        var done = false
    }

    private let state = Mutex(State())

    func install(_ continuation: CheckedContinuation<T, any Error>) {
        let early: Result<T, any Error>? = state.withLock { state in
            guard let early = state.early else {
                state.continuation = continuation
                return nil
            }
            state.done = true
            return early
        }
        if let early { continuation.resume(with: early) }
    }

    func resume(with result: Result<T, any Error>) {
        let continuation: CheckedContinuation<T, any Error>? = state.withLock { state in
            guard !state.done else { return nil }
            guard let continuation = state.continuation else {
                if state.early == nil { state.early = result }
                return nil
            }
            state.done = true
            state.continuation = nil
            return continuation
        }
        continuation?.resume(with: result)
    }
}

/// The statements in flight on each connection, given up together when their connection
/// closes: the connection's close future gets one callback, on the first statement it runs.
private final class InFlightStatements: Sendable {
    static let shared = InFlightStatements()

    /// A statement's place, to take it out when it ended.
    struct Registration: Sendable {
        let connection: ObjectIdentifier
        let id: UInt64
    }

    private struct State {
        var nextID: UInt64 = 0
        /// Per open connection that has run a statement: its statements in flight. A connection
        /// is taken out when it closes (before it can be freed and its identifier reused).
        var connections: [ObjectIdentifier: [UInt64: @Sendable () -> Void]] = [:]
    }

    private let state = Mutex(State())

    /// Calls `giveUp` when `connection` closes (at once if it has closed) unless the
    /// registration is removed first.
    func register(_ connection: PostgresConnection, giveUp: @escaping @Sendable () -> Void) -> Registration {
        let key = ObjectIdentifier(connection)
        let (id, first) = state.withLock { state -> (UInt64, Bool) in
            state.nextID &+= 1
            let first = state.connections[key] == nil
            state.connections[key, default: [:]][state.nextID] = giveUp
            return (state.nextID, first)
        }
        if first {
            connection.closeFuture.whenComplete { _ in
                let statements = self.state.withLock { $0.connections.removeValue(forKey: key) }
                for giveUp in statements?.values ?? [:].values { giveUp() }
            }
        }
        return Registration(connection: key, id: id)
    }

    /// Takes a statement out (it ended).
    func remove(_ registration: Registration) {
        _ = state.withLock { $0.connections[registration.connection]?.removeValue(forKey: registration.id) }
    }
}
