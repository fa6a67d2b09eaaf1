import Foundation
import Logging
import MizanCore
import MizanStore
import NIOPosix

/// A ``DispatchStore`` and `AccessStore` in one SQLite file: the durable store of a single
/// gateway (PostgreSQL serves several).
///
/// The file is in WAL mode: one writer connection applies every change in a short
/// `BEGIN IMMEDIATE` transaction (writes are serialized in process, so no statement waits on
/// SQLite's busy handler; those that queue meanwhile share the next commit), while two reader connections answer queries concurrently from the
/// last committed state. Every job transition is a conditional statement guarded by
/// `JobStateMachine`, as on PostgreSQL. Events are published in process once a change has
/// committed. The store holds a lock on `PATH.lock` for as long as it is open, so that a second
/// gateway on the same file is refused instead of sharing it.
///
/// ```swift
/// let store = try await SQLiteStore.open(path: "mizan.sqlite")
/// let gateway = Gateway(store: store, adminToken: token)
/// ```
public final class SQLiteStore: DispatchStore, Sendable {
    /// How hard a commit waits for the disk.
    public enum Durability: String, Sendable, CaseIterable {
        /// `synchronous = NORMAL` (the default): a commit survives a crash of the process; a
        /// power loss or kernel crash may lose the last commits (never corrupt the file).
        case normal
        /// `synchronous = FULL`: a commit survives a power loss too; each commit waits for the
        /// disk (so every write runs on the writer's thread, none on its caller's).
        case full
    }

    /// The file's path.
    public let path: String
    /// How commits are made durable.
    public let durability: Durability
    /// How long usage records are kept beyond the finished jobs' retention (90 days).
    public let usageRetention: Duration
    let writer: ConnectionPool
    let writes: GroupCommit
    let readers: ConnectionPool
    static let readerCount = 2
    /// How many WAL pages the writer lets build up before it checkpoints them into the file:
    /// 4,000 (16 MiB of 4 KiB pages) rather than SQLite's 1,000, since a checkpoint copies each
    /// page once, however often it was rewritten since the last, and the pages a lease and a
    /// completion touch (the newest jobs', their indexes') are rewritten by nearly every commit
    /// — about an eighth more leases and completions a second on one writer.
    static let walCheckpointPages = 4_000
    let fileLock: FileLock?
    let logger: Logger
    let hub = StoreEventHub()
    /// The counters of the keys in use (written to the file behind them).
    let counterTable = KeyCounterTable()
    /// The jobs leased and not yet completed, as their lease returned them.
    let leasedJobs = LeasedJobs()
    /// When a lease last wrote each node's last-seen time.
    let nodesSeen = NodesSeen()
    /// The statements this store has run, on every connection (migrations included).
    public let statements: StatementCounter

    private init(
        path: String, durability: Durability, usageRetention: Duration, writer: Database, readers: [Database], fileLock: FileLock?,
        statements: StatementCounter, logger: Logger
    ) {
        self.statements = statements
        self.path = path
        self.durability = durability
        self.usageRetention = usageRetention
        self.writer = ConnectionPool([writer])
        // A commit that waits for the disk (`FULL`) never runs on a caller's thread.
        writes = GroupCommit(writer: self.writer, runsShortWritesHere: durability == .normal, checkpointFrames: Self.walCheckpointPages)
        self.readers = ConnectionPool(readers)
        self.fileLock = fileLock
        self.logger = logger
    }

    /// Opens (creating it when missing) the store in a file, migrates its schema, and locks it
    /// for this process.
    /// - Parameters:
    ///   - path: The database file; `PATH-wal`, `PATH-shm` and `PATH.lock` sit beside it.
    ///   - durability: How commits are made durable (``Durability/normal``).
    ///   - busyTimeout: How long a statement waits for a lock held by another connection (5 s).
    ///   - usageRetention: How long usage records outlive the finished jobs' retention (90 days).
    ///   - logger: Where the store logs.
    /// - Returns: The open store.
    /// - Throws: ``SQLiteStoreError`` when the file is locked by another process, cannot be
    ///   opened or written, or is not a Mizan database.
    public static func open(
        path: String,
        durability: Durability = .normal,
        busyTimeout: Duration = .seconds(5),
        usageRetention: Duration = .seconds(90 * 86_400),
        logger: Logger = Logger(label: "mizan.store.sqlite")
    ) async throws -> SQLiteStore {
        let lock = try FileLock(path: path + ".lock")
        do {
            let narrowed = try PrivateFiles.restrict(database: path)
            if !narrowed.isEmpty {
                logger.notice(
                    "the database's files could be read by other users; made them the owner's alone (mode 0600)",
                    metadata: ["mizan.files": "\(narrowed.joined(separator: ", "))"])
            }
            let statements = StatementCounter()
            let (writer, readers) = try await NIOThreadPool.singleton.runIfActive {
                try connect(path: path, durability: durability, busyTimeout: busyTimeout, counter: statements)
            }
            let store = SQLiteStore(
                path: path, durability: durability, usageRetention: usageRetention, writer: writer, readers: readers, fileLock: lock,
                statements: statements, logger: logger
            )
            do {
                try await store.migrate()
            } catch {
                await store.close()
                throw error
            }
            return store
        } catch {
            lock.release()
            if let error = error as? SQLiteStoreError { throw error }
            throw SQLiteStoreError.cannotOpen(path: path, reason: "\(error)")
        }
    }

    /// Opens the writer (WAL mode, the durability's `synchronous`) and the readers.
    private static func connect(path: String, durability: Durability, busyTimeout: Duration, counter: StatementCounter) throws -> (
        Database, [Database]
    ) {
        let writer = try Database.open(path: path, busyTimeout: busyTimeout, counter: counter)
        do {
            let mode = try writer.query("PRAGMA journal_mode = WAL").first?.column("journal_mode")?.string
            guard mode?.lowercased() == "wal" else {
                throw SQLiteStoreError.cannotOpen(path: path, reason: "the file cannot be put in WAL mode (it is in \(mode ?? "no") mode)")
            }
            // Temporary files in memory: a batch of writes puts each in a savepoint, whose
            // statement journal SQLite otherwise writes to a temporary file (bounded: the pages
            // one write changes). The WAL is checkpointed by the writer's turns (GroupCommit),
            // not by SQLite at whichever commit passes the limit: that commit may run on a
            // caller's thread.
            try writer.execute(
                "PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL"); PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY"
            )
            writer.watchWAL()
            var readers: [Database] = []
            for _ in 0..<readerCount { readers.append(try Database.open(path: path, busyTimeout: busyTimeout, counter: counter)) }
            return (writer, readers)
        } catch {
            writer.close()
            throw error
        }
    }

    /// Closes the connections (checkpointing the WAL into the file) once the statements running
    /// have finished, and releases the file's lock; later calls fail. Closing twice is a no-op.
    public func close() async {
        try? await storeKeyCounters()
        await readers.close()
        await writer.close { try? $0.execute("PRAGMA wal_checkpoint(TRUNCATE)") }
        fileLock?.release()
    }

    public func addEventHandler(_ handler: @escaping @Sendable (StoreEvent) -> Void) {
        hub.add(handler)
    }

    public func ping() async throws {
        _ = try await read("SELECT 1")
    }

    // MARK: Running statements

    /// Runs a read on one of the reader connections.
    func read(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
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
    func write<T: Sendable>(
        single: Bool = false, short: Bool = false, _ body: @escaping @Sendable (Database) throws -> (T, [StoreEvent])
    ) async throws -> T {
        let (value, events): (T, [StoreEvent])
        do {
            (value, events) = try await writes.write(single: single, short: short, body)
        } catch {
            throw storeError(error)
        }
        hub.publish(events)
        return value
    }

    /// Runs one statement on the writer (in a transaction only when other writes share its
    /// commit: one statement is atomic on its own), on the caller's thread when the writer is
    /// idle (it changes a few rows through an index). Publishes `events(rows)` once it has committed.
    func writeOne(_ sql: String, _ binds: [SQLValue], events: ([SQLRow]) -> [StoreEvent] = { _ in [] }) async throws -> [SQLRow] {
        let rows: [SQLRow]
        do {
            rows = try await writes.write(single: true, short: true) { try $0.query(sql, binds) }
        } catch {
            throw storeError(error)
        }
        hub.publish(events(rows))
        return rows
    }

    func storeError(_ error: any Error) -> any Error {
        if error is MizanError || error is SQLiteStoreError || error is CancellationError { return error }
        logger.error("SQLite statement failed", metadata: ["mizan.error": "\(String(reflecting: error).prefix(300))"])
        return MizanError(.storeUnavailable, "The SQLite store failed: \(SafeText.excerpt("\(error)", limit: 200)).")
    }
}
