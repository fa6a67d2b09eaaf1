import Synchronization

/// Write transactions of concurrent tasks committed together: while the writer commits one
/// batch, the writes that arrive queue up, and the next batch takes them all (up to
/// ``batchLimit``) into one `BEGIN IMMEDIATE` … `COMMIT`, each in a savepoint of its own.
///
/// Each write is still atomic and isolated (a write that throws is rolled back to its savepoint
/// and fails alone) and has committed before its caller resumes; what the writes of a batch
/// share is the commit, whose WAL frames (the pages they all touch: index and table pages) are
/// written once instead of once per write. A lone write costs what it did: no task waits to
/// fill a batch. There is no extra thread: the task whose write finds the writer idle leads —
/// it commits the batch with its own write in it — and hands the lead to the first write that
/// queued meanwhile, so no write waits behind more than one batch of others.
package final class GroupCommit: Sendable {
    /// The most writes committed together.
    package static let batchLimit = 64

    /// One queued write: its statements, and where its outcome goes.
    private final class Item: @unchecked Sendable {
        // Set before the item is queued, read by the leader under the queue's lock's ordering.
        let work: (Database) throws -> Void
        /// A write that is one statement runs without a transaction when it is alone in its batch.
        let single: Bool
        var failure: (any Error)?
        var continuation: CheckedContinuation<Bool, Never>?

        init(single: Bool, work: @escaping (Database) throws -> Void) {
            self.single = single
            self.work = work
        }
    }

    /// The value a write's body returned, handed from the leader's thread to the writer's task.
    private final class Box<T>: @unchecked Sendable {
        var value: T?
    }

    private struct State {
        var queue: [Item] = []
        var leading = false
        var batches = 0
    }

    private let state = Mutex(State())
    private let writer: ConnectionPool

    package init(writer: ConnectionPool) {
        self.writer = writer
    }

    /// How many writes are queued for the next batch.
    package var queued: Int { state.withLock { $0.queue.count } }

    /// How many batches have been run (committed or not).
    package var batches: Int { state.withLock { $0.batches } }

    /// Runs `body` in a write transaction, committed with the writes queued beside it.
    /// - Parameters:
    ///   - single: `body` is one statement (atomic on its own, so it needs no transaction alone).
    ///   - body: The statements; when it throws, its changes are rolled back and it fails alone.
    /// - Returns: What `body` returned, once it has committed.
    /// - Throws: What `body` threw, or why the batch could not commit.
    package func write<T: Sendable>(single: Bool = false, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let box = Box<T>()
        let item = Item(single: single) { box.value = try body($0) }
        let leads = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            item.continuation = continuation
            let leads = state.withLock { state in
                state.queue.append(item)
                if state.leading { return false }
                state.leading = true
                return true
            }
            if leads {
                item.continuation = nil
                continuation.resume(returning: true)
            }
        }
        if leads { await lead() }
        if let failure = item.failure { throw failure }
        guard let value = box.value else { preconditionFailure("a write that did not fail returned its value") }
        return value
    }

    /// Commits one batch (the leader's own write is its first), wakes its writers, and hands the
    /// lead to the next queued write, or gives it up when none is queued.
    private func lead() async {
        let batch = state.withLock { state in
            let count = min(state.queue.count, Self.batchLimit)
            state.batches += 1
            defer { state.queue.removeFirst(count) }
            return Array(state.queue.prefix(count))
        }
        do {
            try await writer.run { db in try Self.commit(batch, on: db) }
        } catch {
            for item in batch { item.failure = error }
        }
        let next = state.withLock { state -> Item? in
            guard let next = state.queue.first else {
                state.leading = false
                return nil
            }
            return next
        }
        for item in batch {
            item.continuation?.resume(returning: false)
            item.continuation = nil
        }
        if let next, let continuation = next.continuation {
            next.continuation = nil
            continuation.resume(returning: true)
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
