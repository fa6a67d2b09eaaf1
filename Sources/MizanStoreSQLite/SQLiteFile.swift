import Logging
import MizanStore
import NIOPosix

/// The database file, open: locked for this process, its files the owner's alone, its schema up
/// to date, and its connections (``SQLiteConnections``) ready for the store's parts.
///
/// The file is in WAL mode: one writer connection applies every change, while the readers answer
/// queries concurrently from the last committed state. The lock on `PATH.lock` is held until
/// ``close()``, so that a second gateway on the same file is refused instead of sharing it.
package struct SQLiteFile: Sendable {
    /// The file's path.
    package let path: String
    /// The connections to the file.
    package let connections: SQLiteConnections
    private let lock: FileLock

    /// How many reader connections answer queries.
    static let readerCount = 2
    /// How many WAL pages the writer lets build up before it checkpoints them into the file,
    /// rather than SQLite's 1,000: a checkpoint copies each page once however often it was
    /// rewritten since the last, and the pages a lease and a completion touch (the newest jobs',
    /// their indexes') are rewritten by nearly every commit.
    static let walCheckpointPages = 4_000

    /// Opens (creating it when missing) the file, locks it for this process, narrows its files'
    /// mode, connects, and migrates its schema (``SQLiteSchema``).
    /// - Parameters:
    ///   - path: The database file; `PATH-wal`, `PATH-shm` and `PATH.lock` sit beside it.
    ///   - durability: How commits are made durable.
    ///   - busyTimeout: How long a statement waits for a lock held by another connection.
    ///   - logger: Where the connections log.
    /// - Returns: The open file.
    /// - Throws: ``SQLiteStoreError`` when the file is locked by another process, cannot be
    ///   opened or written, or is not a Mizan database.
    package static func open(
        path: String, durability: SQLiteStore.Durability = .normal, busyTimeout: Duration = .seconds(5),
        logger: Logger = Logger(label: "mizan.store.sqlite")
    ) async throws -> SQLiteFile {
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
            let writerPool = ConnectionPool([writer])
            // A commit that waits for the disk (`FULL`) never runs on a caller's thread.
            let writes = GroupCommit(writer: writerPool, runsShortWritesHere: durability == .normal, checkpointFrames: walCheckpointPages)
            let connections = SQLiteConnections(
                writer: writerPool, writes: writes, readers: ConnectionPool(readers), events: StoreEventHub(), statements: statements,
                logger: logger)
            let file = SQLiteFile(path: path, connections: connections, lock: lock)
            do {
                try await SQLiteSchema.migrate(connections, path: path)
            } catch {
                await file.close()
                throw error
            }
            return file
        } catch {
            lock.release()
            if let error = error as? SQLiteStoreError { throw error }
            throw SQLiteStoreError.cannotOpen(path: path, reason: "\(error)")
        }
    }

    /// Opens the writer (WAL mode, the durability's `synchronous`) and the readers.
    private static func connect(path: String, durability: SQLiteStore.Durability, busyTimeout: Duration, counter: StatementCounter) throws
        -> (Database, [Database])
    {
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
    /// have finished, and releases the file's lock; later statements fail. Closing twice is a no-op.
    package func close() async {
        await connections.readers.close()
        await connections.writer.close { try? $0.execute("PRAGMA wal_checkpoint(TRUNCATE)") }
        lock.release()
    }
}
