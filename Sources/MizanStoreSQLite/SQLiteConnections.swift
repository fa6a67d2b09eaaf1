import Logging
import MizanCore
import MizanStore

/// What every part of the SQLite store runs its statements through: the one writer (behind its
/// ``GroupCommit``), the readers, the hub that publishes events once a change has committed, the
/// counter of statements and the logger. Handed to each part when it is made (``SQLiteFile``
/// makes it), so that a part can be run alone on a file of its own.
package struct SQLiteConnections: Sendable {
    /// The pool of the one writer connection (for what runs outside a write transaction: a checkpoint).
    package let writer: ConnectionPool
    /// The write transactions, committed together when they arrive together.
    package let writes: GroupCommit
    /// The reader connections, which answer queries from the last commit.
    package let readers: ConnectionPool
    /// Where the events of committed changes are published.
    package let events: StoreEventHub
    /// The statements run, on every connection.
    package let statements: StatementCounter
    /// Where failures are logged.
    package let logger: Logger

    /// - Parameters:
    ///   - writer: The pool of the one writer connection.
    ///   - writes: The group commit over `writer`.
    ///   - readers: The pool of the reader connections.
    ///   - events: Where events are published once their change has committed.
    ///   - statements: The counter of the connections' statements.
    ///   - logger: Where failures are logged.
    package init(
        writer: ConnectionPool, writes: GroupCommit, readers: ConnectionPool, events: StoreEventHub, statements: StatementCounter,
        logger: Logger
    ) {
        self.writer = writer
        self.writes = writes
        self.readers = readers
        self.events = events
        self.statements = statements
        self.logger = logger
    }

    /// Runs a read on one of the reader connections.
    package func read(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        do {
            return try await readers.run { try $0.query(sql, binds) }
        } catch {
            throw storeError(error)
        }
    }

    /// Runs `body` in one write transaction on the writer (rolled back when it throws),
    /// committed together with the writes of other tasks queued meanwhile (``GroupCommit``);
    /// then publishes the events it returned.
    /// - Parameters:
    ///   - single: `body` changes the file by one statement at most (it needs no transaction alone).
    ///   - short: `body` is bounded work (a job's transition, a usage record): it may run on the
    ///     caller's thread when the writer is idle.
    ///   - body: The statements, and the events to publish once they have committed.
    package func write<T: Sendable>(
        single: Bool = false, short: Bool = false, _ body: @escaping @Sendable (Database) throws -> (T, [StoreEvent])
    ) async throws -> T {
        let (value, events): (T, [StoreEvent])
        do {
            (value, events) = try await writes.write(single: single, short: short, body)
        } catch {
            throw storeError(error)
        }
        self.events.publish(events)
        return value
    }

    /// Runs one statement on the writer (in a transaction only when other writes share its
    /// commit: one statement is atomic on its own), on the caller's thread when the writer is
    /// idle (it changes a few rows through an index). Publishes `events(rows)` once it has committed.
    package func writeOne(_ sql: String, _ binds: [SQLValue], events: ([SQLRow]) -> [StoreEvent] = { _ in [] }) async throws -> [SQLRow] {
        let rows: [SQLRow]
        do {
            rows = try await writes.write(single: true, short: true) { try $0.query(sql, binds) }
        } catch {
            throw storeError(error)
        }
        self.events.publish(events(rows))
        return rows
    }

    /// Copies the WAL into the file as far as no reader needs it, on the writer outside any
    /// transaction (a checkpoint cannot run inside one); a failure is left for the next one.
    package func checkpoint() async {
        _ = try? await writer.run { try $0.checkpoint() }
    }

    /// What a caller is told of a failure: Mizan's and the store's own errors and cancellation
    /// as they are, anything else logged and answered as `storeUnavailable`.
    func storeError(_ error: any Error) -> any Error {
        if error is MizanError || error is SQLiteStoreError || error is CancellationError { return error }
        logger.error("SQLite statement failed", metadata: ["mizan.error": "\(String(reflecting: error).prefix(300))"])
        return MizanError(.storeUnavailable, "The SQLite store failed: \(SafeText.excerpt("\(error)", limit: 200)).")
    }
}
