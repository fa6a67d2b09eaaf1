import MizanStore

/// A write's part in a batch, and how a batch runs in one transaction.
extension GroupCommit {
    /// One queued write: its statements, and where its outcome goes.
    final class Item: @unchecked Sendable {
        // `continuation` is set before the item is queued; `failure` on the writer's thread,
        // read by the item's task after it resumes (or by `done`, on the writer's thread).
        let work: (Database) throws -> Void
        /// A write that changes the file by one statement at most runs without a transaction when it is alone in its batch.
        let single: Bool
        var failure: (any Error)?
        var continuation: CheckedContinuation<Void, Never>?
        /// For a write nobody waits for (``writeSoon(linger:_:done:)``): told how it went.
        let done: (@Sendable ((any Error)?) -> Void)?

        init(single: Bool, work: @escaping (Database) throws -> Void, done: (@Sendable ((any Error)?) -> Void)? = nil) {
            self.single = single
            self.work = work
            self.done = done
        }

        /// Hands the outcome over, once.
        func finish() {
            if let done {
                done(failure)
            } else {
                continuation?.resume()
                continuation = nil
            }
        }
    }

    /// The value a write's body returned, handed from the writer's thread to the writer's task.
    final class Box<T>: @unchecked Sendable {
        var value: T?
    }

    /// Runs one write in a transaction of its own (none when it is one statement).
    static func commitAlone(_ item: Item, on db: Database) {
        do {
            if item.single { try item.work(db) } else { try db.transaction(item.work) }
        } catch {
            item.failure = error
        }
    }

    /// Runs a batch in one transaction; a write that throws rolls back to its savepoint.
    static func commit(_ batch: [Item], on db: Database) throws {
        if batch.count == 1, let item = batch.first {
            commitAlone(item, on: db)
            return
        }
        try db.transaction { db in
            for item in batch {
                // A write of one statement at most needs no savepoint: SQLite undoes a statement
                // that fails, and the transaction goes on.
                guard !item.single else {
                    do {
                        try item.work(db)
                    } catch {
                        item.failure = error
                        // A failure SQLite answered by rolling the whole transaction back (a
                        // full disk, an I/O error) fails the batch.
                        guard db.inTransaction else { throw error }
                    }
                    continue
                }
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
