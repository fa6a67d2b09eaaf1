import Foundation
import Logging
import MizanCore
import MizanStore
import NIOCore
import NIOPosix
import SQLiteNIO

/// A ``DispatchStore`` and `AccessStore` in one SQLite file: the durable store of a single
/// gateway (PostgreSQL serves several).
///
/// The file is in WAL mode: one writer connection applies every change in a short
/// `BEGIN IMMEDIATE` transaction (writes are serialized in process, so no statement waits on
/// SQLite's busy handler), while two reader connections answer queries concurrently from the
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
        /// `synchronous = FULL`: a commit survives a power loss too; each commit waits for the disk.
        case full
    }

    /// The file's path.
    public let path: String
    /// How commits are made durable.
    public let durability: Durability
    /// How long usage records are kept beyond the finished jobs' retention (90 days).
    public let usageRetention: Duration
    let writer: SQLiteConnection
    let readers: [SQLiteConnection]
    let writeLock = AsyncLock()
    let nextReader = ReaderIndex()
    let fileLock: FileLock?
    let logger: Logger
    let hub = StoreEventHub()

    private init(
        path: String, durability: Durability, usageRetention: Duration, writer: SQLiteConnection, readers: [SQLiteConnection],
        fileLock: FileLock?, logger: Logger
    ) {
        self.path = path
        self.durability = durability
        self.usageRetention = usageRetention
        self.writer = writer
        self.readers = readers
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
            return try await open(
                storage: .file(path: path), path: path, durability: durability, busyTimeout: busyTimeout, usageRetention: usageRetention,
                fileLock: lock, logger: logger
            )
        } catch {
            lock.release()
            throw error
        }
    }

    private static func open(
        storage: SQLiteConnection.Storage, path: String, durability: Durability, busyTimeout: Duration, usageRetention: Duration,
        fileLock: FileLock?, logger: Logger
    ) async throws -> SQLiteStore {
        let writer: SQLiteConnection
        do {
            writer = try await SQLiteConnection.open(storage: storage, logger: logger)
        } catch {
            throw SQLiteStoreError.cannotOpen(path: path, reason: "\(error)")
        }
        var readers: [SQLiteConnection] = []
        do {
            let milliseconds = Int(busyTimeout.timeInterval * 1000)
            let mode = try await writer.query("PRAGMA journal_mode = WAL", []).first?.column("journal_mode")?.string
            guard mode?.lowercased() == "wal" else {
                throw SQLiteStoreError.cannotOpen(path: path, reason: "the file cannot be put in WAL mode (it is in \(mode ?? "no") mode)")
            }
            try await writer.execute("PRAGMA busy_timeout = \(milliseconds)")
            try await writer.execute("PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
            try await writer.execute("PRAGMA foreign_keys = ON")
            let store0 = SQLiteStore(
                path: path, durability: durability, usageRetention: usageRetention, writer: writer, readers: [], fileLock: fileLock,
                logger: logger
            )
            try await store0.migrate()
            for _ in 0..<2 {
                let reader = try await SQLiteConnection.open(storage: storage, logger: logger)
                try await reader.execute("PRAGMA busy_timeout = \(milliseconds)")
                readers.append(reader)
            }
            return SQLiteStore(
                path: path, durability: durability, usageRetention: usageRetention, writer: writer, readers: readers, fileLock: fileLock,
                logger: logger
            )
        } catch {
            for reader in readers { try? await reader.close() }
            try? await writer.close()
            if let error = error as? SQLiteStoreError { throw error }
            throw SQLiteStoreError.cannotOpen(path: path, reason: "\(error)")
        }
    }

    /// Closes the connections and releases the file's lock.
    public func close() async {
        await writeLock.lock()
        for reader in readers { try? await reader.close() }
        try? await writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try? await writer.close()
        fileLock?.release()
        writeLock.unlock()
    }

    public func addEventHandler(_ handler: @escaping @Sendable (StoreEvent) -> Void) {
        hub.add(handler)
    }

    public func ping() async throws {
        _ = try await read("SELECT 1")
    }

    // MARK: Running statements

    /// Runs a read on one of the reader connections.
    func read(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        let reader = readers.isEmpty ? writer : readers[nextReader.next() % readers.count]
        do {
            return try await reader.query(sql, binds)
        } catch {
            throw storeError(error)
        }
    }

    /// Runs `body` in one write transaction (`BEGIN IMMEDIATE` … `COMMIT`, rolled back when it
    /// throws), with the writer to itself; then publishes the events it returned.
    func write<T: Sendable>(_ body: (Transaction) async throws -> (T, [StoreEvent])) async throws -> T {
        await writeLock.lock()
        let (value, events): (T, [StoreEvent])
        do {
            defer { writeLock.unlock() }
            let transaction = Transaction(connection: writer)
            do {
                try await writer.execute("BEGIN IMMEDIATE")
            } catch {
                throw storeError(error)
            }
            do {
                (value, events) = try await body(transaction)
                try await writer.execute("COMMIT")
            } catch {
                try? await writer.execute("ROLLBACK")
                if error is MizanError || error is SQLiteStoreError { throw error }
                throw storeError(error)
            }
        }
        hub.publish(events)
        return value
    }

    /// Runs one statement on the writer, with the writer to itself, outside an explicit
    /// transaction: one statement is atomic on its own, and this saves the BEGIN and COMMIT round
    /// trips. Publishes `events(rows)` once it has run.
    func writeOne(_ sql: String, _ binds: [SQLiteData], events: ([SQLiteRow]) -> [StoreEvent] = { _ in [] }) async throws -> [SQLiteRow] {
        await writeLock.lock()
        let rows: [SQLiteRow]
        do {
            defer { writeLock.unlock() }
            do {
                rows = try await writer.query(sql, binds)
            } catch {
                throw storeError(error)
            }
        }
        hub.publish(events(rows))
        return rows
    }

    func storeError(_ error: any Error) -> any Error {
        if let error = error as? MizanError { return error }
        logger.error("SQLite statement failed", metadata: ["mizan.error": "\(String(reflecting: error).prefix(300))"])
        return MizanError(.storeUnavailable, "The SQLite store failed: \(SafeText.excerpt("\(error)", limit: 200)).")
    }
}

/// The writer inside a write transaction.
struct Transaction: Sendable {
    let connection: SQLiteConnection

    func query(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        try await connection.query(sql, binds)
    }

    func run(_ sql: String, _ binds: [SQLiteData] = []) async throws {
        _ = try await connection.query(sql, binds)
    }
}

extension SQLiteConnection {
    func execute(_ sql: String) async throws {
        _ = try await query(sql, [])
    }
}
