import Foundation
import Logging
import MizanCore
import MizanStore

/// A ``DispatchStore`` and `AccessStore` in one SQLite file: the durable store of a single
/// gateway (PostgreSQL serves several).
///
/// The file is in WAL mode: one writer connection applies every change in a short
/// `BEGIN IMMEDIATE` transaction (writes are serialized in process, so no statement waits on
/// SQLite's busy handler; those that queue meanwhile share the next commit), while two reader
/// connections answer queries concurrently from the last committed state. Every job transition
/// is a conditional statement guarded by `JobStateMachine`, as on PostgreSQL. Events are
/// published in process once a change has committed. The store holds a lock on `PATH.lock` for
/// as long as it is open, so that a second gateway on the same file is refused instead of
/// sharing it.
///
/// The store is made of parts that share the file's connections: the job queue, the node
/// registry, the access ledger and the batch ledger; it answers each protocol by handing the
/// call to its part.
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
    public var path: String { file.path }
    /// How commits are made durable.
    public let durability: Durability
    /// How long usage records are kept beyond the finished jobs' retention (90 days).
    public let usageRetention: Duration
    /// The statements this store has run, on every connection (migrations included).
    public var statements: StatementCounter { file.connections.statements }

    /// The open file and its connections.
    let file: SQLiteFile
    /// Jobs: insert, lease, completion, sweeps, queries.
    let jobQueue: SQLiteJobQueue
    /// Nodes: registration, heartbeats, revocation.
    let nodeRegistry: SQLiteNodeRegistry
    /// API keys, their counters, usage records, console sessions.
    let accessLedger: SQLiteAccessLedger
    /// Files, batches and their lines, background responses.
    let batchLedger: SQLiteBatchLedger

    private init(file: SQLiteFile, durability: Durability, usageRetention: Duration) {
        self.file = file
        self.durability = durability
        self.usageRetention = usageRetention
        let nodes = SQLiteNodeRegistry(connections: file.connections)
        nodeRegistry = nodes
        jobQueue = SQLiteJobQueue(connections: file.connections, nodes: nodes)
        accessLedger = SQLiteAccessLedger(connections: file.connections)
        batchLedger = SQLiteBatchLedger(connections: file.connections)
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
        let file = try await SQLiteFile.open(path: path, durability: durability, busyTimeout: busyTimeout, logger: logger)
        return SQLiteStore(file: file, durability: durability, usageRetention: usageRetention)
    }

    /// The newest schema version this build knows.
    public static var schemaVersion: Int { SQLiteSchema.version }

    /// Applies the migrations not yet applied, in one transaction (safe to run twice). A file
    /// whose schema is newer than this build is refused rather than used.
    public func migrate() async throws {
        try await SQLiteSchema.migrate(file.connections, path: path)
    }

    /// Closes the connections (checkpointing the WAL into the file) once the statements running
    /// have finished, and releases the file's lock; later calls fail. Closing twice is a no-op.
    public func close() async {
        try? await accessLedger.storeKeyCounters()
        await file.close()
    }

    /// Calls `handler` with each event of a change once it has committed.
    public func addEventHandler(_ handler: @escaping @Sendable (StoreEvent) -> Void) {
        file.connections.events.add(handler)
    }

    /// Runs a statement on a reader: throws when the file cannot be read.
    public func ping() async throws {
        _ = try await file.connections.read("SELECT 1")
    }

    /// Deletes finished jobs older than `finishedBefore`, and usage records older than it by the
    /// usage retention, in one transaction, so that the file does not grow without bound.
    /// - Returns: How many jobs were deleted.
    public func prune(finishedBefore: Date) async throws -> Int {
        let usageBefore = finishedBefore.addingTimeInterval(-usageRetention.timeInterval)
        let pruned: Int = try await file.connections.write { db in
            let deleted = try SQLiteJobQueue.deleteFinished(before: finishedBefore, on: db)
            try SQLiteAccessLedger.deleteUsage(before: usageBefore, on: db)
            return (deleted, [])
        }
        // Give the pages back to the checkpointed WAL, so that it stays small.
        if pruned > 0 { await file.connections.checkpoint() }
        return pruned
    }
}
