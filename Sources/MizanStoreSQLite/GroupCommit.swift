import MizanStore

/// Write transactions of concurrent tasks committed together: while the writer commits one
/// batch, the writes that arrive queue up, and the next batch takes them all (up to
/// ``batchLimit``) into one `BEGIN IMMEDIATE` … `COMMIT`, each in a savepoint of its own.
///
/// Each write is still atomic and isolated (a write that throws is rolled back to its savepoint
/// and fails alone) and has committed before its caller resumes; what the writes of a batch
/// share is the commit, whose WAL frames (the pages they all touch: index and table pages) are
/// written once instead of once per write. A lone write costs what it did: no task waits to
/// fill a batch (a ``BatchQueue``: the task whose write finds the writer idle leads).
package final class GroupCommit: Sendable {
    /// The most writes committed together.
    package static let batchLimit = 64

    /// One queued write: its statements, and where its outcome goes.
    private final class Item: @unchecked Sendable {
        // Set before the item is queued; `failure` by the leader, read by the writer's task after it resumes.
        let work: (Database) throws -> Void
        /// A write that is one statement runs without a transaction when it is alone in its batch.
        let single: Bool
        var failure: (any Error)?

        init(single: Bool, work: @escaping (Database) throws -> Void) {
            self.single = single
            self.work = work
        }
    }

    /// The value a write's body returned, handed from the leader's thread to the writer's task.
    private final class Box<T>: @unchecked Sendable {
        var value: T?
    }

    /// A batch handed to the writer's thread.
    private struct UnsafeItems: @unchecked Sendable {
        let items: [Item]
    }

    private let queue = BatchQueue<Item>(limit: GroupCommit.batchLimit)
    private let writer: ConnectionPool

    package init(writer: ConnectionPool) {
        self.writer = writer
    }

    /// How many writes are queued for the next batch.
    package var queued: Int { queue.queued() }

    /// How many batches have been run (committed or not).
    package var batches: Int { queue.batches }

    /// Runs `body` in a write transaction, committed with the writes queued beside it.
    /// - Parameters:
    ///   - single: `body` is one statement (atomic on its own, so it needs no transaction alone).
    ///   - body: The statements; when it throws, its changes are rolled back and it fails alone.
    /// - Returns: What `body` returned, once it has committed.
    /// - Throws: What `body` threw, or why the batch could not commit.
    package func write<T: Sendable>(single: Bool = false, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let box = Box<T>()
        let item = Item(single: single) { box.value = try body($0) }
        try await queue.submit(item, run: run)
        if let failure = item.failure { throw failure }
        guard let value = box.value else { preconditionFailure("a write that did not fail returned its value") }
        return value
    }

    /// Queues `body` for the next batch without waiting for it: it commits with the next write
    /// (before it), or on its own after `linger`.
    /// - Parameters:
    ///   - linger: How long it may wait for another write to share a commit with.
    ///   - body: The statements; when it throws, its changes are rolled back and it fails alone.
    ///   - done: Told how it went (`nil`: committed), on the writer's task.
    package func writeSoon(
        linger: Duration, _ body: @escaping @Sendable (Database) throws -> Void, done: @escaping @Sendable ((any Error)?) -> Void
    ) {
        let item = Item(single: false, work: body)
        queue.enqueue(item, linger: linger, run: run) { error in done(error ?? item.failure) }
    }

    /// Waits until no write is queued or committing, or `timeout` has passed.
    /// - Returns: Whether none is.
    package func idle(timeout: Duration) async -> Bool { await queue.idle(timeout: timeout) }

    /// How a batch runs: on the writer, in one transaction.
    private var run: BatchQueue<Item>.Run {
        { [writer] _, items in
            let batch = UnsafeItems(items: items)
            try await writer.run { db in try Self.commit(batch.items, on: db) }
        }
    }

    /// Runs a batch in one transaction; a write that throws rolls back to its savepoint.
    private static func commit(_ batch: [Item], on db: Database) throws {
        if batch.count == 1, let item = batch.first {
            do {
                if item.single { try item.work(db) } else { try db.transaction(item.work) }
            } catch {
                item.failure = error
            }
            return
        }
        try db.transaction { db in
            for item in batch {
                try db.query("SAVEPOINT mizan_write")
                do {
                    try item.work(db)
                } catch {
                    item.failure = error
                    // A failure SQLite answered by rolling the whole transaction back (a full
                    // disk, an I/O error) fails the batch: `ROLLBACK TO` then throws.
                    try db.query("ROLLBACK TO mizan_write")
                }
                try db.query("RELEASE mizan_write")
            }
        }
    }
}
