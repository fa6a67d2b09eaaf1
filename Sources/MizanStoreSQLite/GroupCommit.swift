import MizanCore
import MizanStore
import Synchronization

/// Write transactions of concurrent tasks committed together: while the writer commits one
/// batch, the writes that arrive queue up, and the next batch takes them all (up to
/// ``batchLimit``) into one `BEGIN IMMEDIATE` … `COMMIT`, each in a savepoint of its own (but
/// those that change the file by one statement at most, which SQLite undoes alone).
///
/// Each write is still atomic and isolated (a write that throws is rolled back to its savepoint
/// and fails alone) and has committed before its caller resumes; what the writes of a batch
/// share is the commit, whose WAL frames are written once instead of once per write. A lone
/// write costs what it did: no task waits to fill a batch.
///
/// The batches run in turns on the writer's thread, the next as soon as the last has committed
/// (rather than after a hop back to a task that would lead it, with the writer idle meanwhile).
/// A turn gives the connection back after ``turnLimit`` batches, so that other work on it is
/// not shut out.
///
/// A short write (bounded work: a job's transition, a usage record) that finds the writer idle
/// with nothing queued runs on its caller's thread instead, when commits do not wait for the
/// disk: the hop to the writer's thread and back would cost more than the write. Long writes
/// (sweeps, migrations) always run on the writer's thread. The WAL is checkpointed by the
/// writer's turns (SQLite's own checkpoint would run on whichever caller's commit passed the
/// limit): a short write that passes the limit starts a turn for it.
package final class GroupCommit: Sendable {
    /// The most writes committed together.
    package static let batchLimit = 64
    /// The most batches in one turn on the writer.
    static let turnLimit = 32

    private struct State {
        var queue: [Item] = []
        /// A turn is scheduled or running on the writer.
        var running = false
        var batches = 0
        /// The timer that starts a turn for queued writes nobody waits for, when no write came for them.
        var linger: OneShotTimer?
        /// Tasks in ``idle(timeout:)``, resumed when the writer has nothing left.
        var idleWaiters: [IdleWaiter] = []

        /// Queues `item`; whether the caller must start a turn.
        mutating func add(_ item: Item) -> Bool {
            queue.append(item)
            guard !running else { return false }
            running = true
            linger?.cancel()
            linger = nil
            return true
        }

        /// Whether the writer is idle with nothing queued; if so, it is the caller's (`running`)
        /// until it ends its run.
        mutating func claim() -> Bool {
            guard !running, queue.isEmpty else { return false }
            running = true
            return true
        }

        /// The next batch, or none (the turn ends: the idle waiters are handed over).
        mutating func next(into waiters: inout [IdleWaiter]) -> [Item] {
            guard !queue.isEmpty else {
                running = false
                swap(&waiters, &idleWaiters)
                return []
            }
            batches += 1
            let count = min(queue.count, GroupCommit.batchLimit)
            defer { queue.removeFirst(count) }
            return Array(queue.prefix(count))
        }
    }

    private let state = Mutex(State())
    private let writer: ConnectionPool
    /// Whether a short write that finds the writer idle runs on its caller's thread.
    private let runsShortWritesHere: Bool
    /// The WAL frames past which a turn checkpoints (`nil`: SQLite's automatic checkpoint).
    private let checkpointFrames: Int?

    /// - Parameters:
    ///   - writer: The pool of the one writer connection.
    ///   - runsShortWritesHere: Whether a short write that finds the writer idle runs on its
    ///     caller's thread (only when a commit does not wait for the disk).
    ///   - checkpointFrames: Past how many WAL frames a turn checkpoints; `nil` leaves it to
    ///     SQLite. When given, the writer's connection must watch its WAL (`watchWAL()`).
    package init(writer: ConnectionPool, runsShortWritesHere: Bool = false, checkpointFrames: Int? = nil) {
        self.writer = writer
        self.runsShortWritesHere = runsShortWritesHere
        self.checkpointFrames = checkpointFrames
    }

    /// How many writes are queued for the next batch.
    package var queued: Int { state.withLock { $0.queue.count } }

    /// How many batches have been run (committed or not).
    package var batches: Int { state.withLock { $0.batches } }

    /// Runs `body` in a write transaction, committed with the writes queued beside it.
    /// - Parameters:
    ///   - single: `body` changes the file by one statement at most (atomic on its own, so it
    ///     needs no transaction alone).
    ///   - short: `body` is bounded work (a few rows through an index): it may run on the
    ///     caller's thread when the writer is idle.
    ///   - body: The statements; when it throws, its changes are rolled back and it fails alone.
    /// - Returns: What `body` returned, once it has committed.
    /// - Throws: What `body` threw, or why the batch could not commit; `CancellationError`
    ///   when the task was cancelled before the write was queued (a write queued runs to its
    ///   end, and its task waits for it: it may have committed).
    package func write<T: Sendable>(
        single: Bool = false, short: Bool = false, _ body: @escaping @Sendable (Database) throws -> T
    ) async throws -> T {
        try Task.checkCancellation()
        let box = Box<T>()
        let item = Item(single: single) { box.value = try body($0) }
        if short && runsShortWritesHere && state.withLock({ $0.claim() }) {
            // The writer is this call's: the write runs here, unless the connection is lent
            // out (a checkpoint, the store closing), when it waits for a turn like any other.
            let checkpointDue = writer.runHere { db in
                Self.commitAlone(item, on: db)
                return checkpointFrames.map { db.walFrames >= $0 } ?? false
            }
            if let checkpointDue {
                handOn(counting: true, again: checkpointDue)
            } else {
                await queue(item, holdingWriter: true)
            }
        } else {
            await queue(item)
        }
        if let failure = item.failure { throw failure }
        guard let value = box.value else { preconditionFailure("a write that did not fail returned its value") }
        return value
    }

    /// Queues `item` and waits until its batch has run, starting a turn when the writer is idle.
    /// - Parameter holdingWriter: The caller holds the writer (a short write whose connection
    ///   was lent out): it starts the turn itself.
    private func queue(_ item: Item, holdingWriter: Bool = false) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            item.continuation = continuation
            if state.withLock({ $0.add(item) }) || holdingWriter { startTurn() }
        }
    }

    /// Ends the caller's hold on the writer (a turn, or a write run on its caller's thread):
    /// another turn when writes are queued or `again`, else the writer is idle.
    /// - Parameters:
    ///   - counting: Count a batch (the caller ran one outside ``State/next(into:)``).
    ///   - again: Start a turn even with nothing queued (a checkpoint is due).
    private func handOn(counting: Bool = false, again: Bool = false) {
        var waiters: [IdleWaiter] = []
        let more = state.withLock { state -> Bool in
            if counting { state.batches += 1 }
            if again || !state.queue.isEmpty { return true }
            _ = state.next(into: &waiters)
            return false
        }
        for waiter in waiters { waiter.resume(true) }
        if more { startTurn() }
    }

    /// Queues `body` for the next batch without waiting for it: it commits with the next write
    /// (before it), or on its own after `linger`.
    /// - Parameters:
    ///   - linger: How long it may wait for another write to share a commit with.
    ///   - body: The statements; when it throws, its changes are rolled back and it fails alone.
    ///   - done: Told how it went (`nil`: committed), on the writer's thread.
    package func writeSoon(
        linger: Duration, _ body: @escaping @Sendable (Database) throws -> Void, done: @escaping @Sendable ((any Error)?) -> Void
    ) {
        let item = Item(single: false, work: body, done: done)
        state.withLock { state in
            state.queue.append(item)
            guard !state.running, state.linger == nil else { return }
            // Armed under the lock: its handler, on another thread, takes the lock after this.
            state.linger = OneShotTimer(after: linger) { [self] in
                let starts = self.state.withLock { state -> Bool in
                    state.linger = nil
                    guard !state.running, !state.queue.isEmpty else { return false }
                    state.running = true
                    return true
                }
                if starts { startTurn() }
            }
        }
    }

    /// Waits until no write is queued or committing, or `timeout` has passed.
    /// - Returns: Whether none is.
    package func idle(timeout: Duration) async -> Bool {
        await IdleWaiter.wait(timeout: timeout) { waiter in
            state.withLock { state in
                if !state.running && state.queue.isEmpty { return true }
                state.idleWaiters.append(waiter)
                return false
            }
        } unregister: { waiter in
            state.withLock { $0.idleWaiters.removeAll { $0 === waiter } }
        }
    }

    /// Starts a turn on the writer (the caller set `running`). When the writer is closed, the
    /// queued writes fail with its error.
    private func startTurn() {
        Task {
            do {
                try await writer.run { db in self.turn(on: db) }
            } catch {
                var waiters: [IdleWaiter] = []
                let failed = state.withLock { state -> [Item] in
                    defer {
                        state.queue = []
                        _ = state.next(into: &waiters)
                    }
                    return state.queue
                }
                for item in failed {
                    item.failure = error
                    item.finish()
                }
                for waiter in waiters { waiter.resume(true) }
            }
        }
    }

    /// Runs batches while writes are queued (at most ``turnLimit``), on the writer's thread.
    private func turn(on db: Database) {
        checkpointIfDue(db)
        for _ in 0..<Self.turnLimit {
            var waiters: [IdleWaiter] = []
            let batch = state.withLock { $0.next(into: &waiters) }
            guard !batch.isEmpty else {
                for waiter in waiters { waiter.resume(true) }
                return
            }
            do {
                try Self.commit(batch, on: db)
            } catch {
                for item in batch { item.failure = error }
            }
            for item in batch { item.finish() }
            checkpointIfDue(db)
        }
        // More turns while writes are queued; the connection is let go in between.
        handOn()
    }

    /// Checkpoints the WAL when it has passed ``checkpointFrames`` (a checkpoint that fails,
    /// for a reader in the way, is tried again after the next commit).
    private func checkpointIfDue(_ db: Database) {
        guard let checkpointFrames, db.walFrames >= checkpointFrames else { return }
        try? db.checkpoint()
    }
}
