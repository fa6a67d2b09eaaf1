import MizanCore
import Synchronization

/// Work of concurrent tasks run together: while one batch of a key runs, the items that arrive
/// for that key queue up, and the next batch takes them all (up to ``limit``). What a store
/// writes once per batch instead of once per item — a commit, a statement, a read and write of
/// a row — is what it saves.
///
/// There is no extra thread, and no timer for items whose tasks wait: the task whose item finds its key idle leads — it runs
/// the batch with its own item in it — and hands the lead to the first item that queued
/// meanwhile, so no item waits behind more than one batch of others, and a lone item waits for
/// nothing. Keys are independent (one key's batch never waits for another's).
package final class BatchQueue<Item: Sendable>: Sendable {
    /// Runs one batch, in the order the items arrived. What it throws fails every item of it.
    package typealias Run = @Sendable (_ key: String, _ items: [Item]) async throws -> Void

    private final class Entry: @unchecked Sendable {
        // Set by the leader, read by the entry's task after it resumes.
        let item: Item
        var failure: (any Error)?
        var continuation: CheckedContinuation<Bool, Never>?
        /// For an item nobody waits for (``enqueue(_:key:linger:run:done:)``): told how its batch went.
        let done: (@Sendable ((any Error)?) -> Void)?

        init(_ item: Item, done: (@Sendable ((any Error)?) -> Void)? = nil) {
            self.item = item
            self.done = done
        }
    }

    /// Who runs a key's next batch.
    private enum Next {
        case none
        case waiter(Entry)
        case unwaited
    }

    private struct Queue {
        var entries: [Entry] = []
        var leading = false
        /// The timer that runs the key's queued items nobody waits for, when no batch came for them.
        var linger: OneShotTimer?
    }

    private struct State {
        var queues: [String: Queue] = [:]
        var batches = 0
        /// Tasks in ``idle(timeout:)``, resumed when the last key's queue empties.
        var idleWaiters: [IdleWaiter] = []
    }

    /// The most items run together.
    package let limit: Int
    private let state = Mutex(State())

    /// A queue whose batches hold at most `limit` items.
    package init(limit: Int) {
        precondition(limit > 0, "a batch holds an item at least")
        self.limit = limit
    }

    /// How many items are queued for a key's next batch.
    package func queued(_ key: String = "") -> Int { state.withLock { $0.queues[key]?.entries.count ?? 0 } }

    /// How many batches have been run (whether they threw or not).
    package var batches: Int { state.withLock { $0.batches } }

    /// Runs `item` in a batch with the items queued beside it under the same key.
    /// - Parameters:
    ///   - item: The item.
    ///   - key: The items of one key run together (one batch at a time per key).
    ///   - run: How a batch runs (the same for every item of a key).
    /// - Throws: What the batch's run threw.
    package func submit(_ item: Item, key: String = "", run: @escaping Run) async throws {
        let entry = Entry(item)
        let leads = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            entry.continuation = continuation
            let leads = state.withLock { state in
                state.queues[key, default: Queue()].entries.append(entry)
                if state.queues[key]!.leading { return false }
                state.queues[key]!.leading = true
                return true
            }
            if leads {
                entry.continuation = nil
                continuation.resume(returning: true)
            }
        }
        if leads { await lead(key, own: entry, run: run) }
        if let failure = entry.failure { throw failure }
    }

    /// Queues `item` for the key's next batch without waiting for it: the next item submitted
    /// under the key takes it into its batch (in order: before itself), or, when none comes
    /// within `linger`, a batch is run for it alone. An item submitted after this call under the
    /// same key is applied after it.
    /// - Parameters:
    ///   - item: The item.
    ///   - key: Its key.
    ///   - linger: How long it may wait for a batch to join.
    ///   - run: How a batch runs (the same for every item of a key).
    ///   - done: Told how the item's batch went (`nil`: it ran), from the task that ran it.
    package func enqueue(
        _ item: Item, key: String = "", linger: Duration, run: @escaping Run, done: @escaping @Sendable ((any Error)?) -> Void
    ) {
        state.withLock { state in
            state.queues[key, default: Queue()].entries.append(Entry(item, done: done))
            guard !state.queues[key]!.leading, state.queues[key]!.linger == nil else { return }
            // Armed under the lock: its handler, on another thread, takes the lock after this.
            state.queues[key]!.linger = OneShotTimer(after: linger) { [self] in
                let leads = self.state.withLock { state -> Bool in
                    guard var queue = state.queues[key] else { return false }
                    queue.linger = nil
                    defer { state.queues[key] = queue }
                    guard !queue.leading, !queue.entries.isEmpty else { return false }
                    queue.leading = true
                    return true
                }
                if leads { Task { await self.lead(key, own: nil, run: run) } }
            }
        }
    }

    /// Whether no item is queued or running, under any key.
    package var isIdle: Bool { state.withLock { $0.queues.isEmpty } }

    /// Waits until no item is queued or running (items that nobody waits for included), or
    /// until `timeout` has passed.
    /// - Returns: Whether the queue is idle.
    package func idle(timeout: Duration) async -> Bool {
        await IdleWaiter.wait(timeout: timeout) { waiter in
            state.withLock { state in
                if state.queues.isEmpty { return true }
                state.idleWaiters.append(waiter)
                return false
            }
        } unregister: { waiter in
            state.withLock { $0.idleWaiters.removeAll { $0 === waiter } }
        }
    }

    /// Runs one batch of the key's queued items (the leader's own among them), wakes their
    /// tasks, and hands the lead to the next queued item that a task waits for, or runs the
    /// next batch on a new task when only items nobody waits for are queued, or gives the lead
    /// up when none is queued.
    /// - Parameter own: The leader's own item, which its batch always takes (beyond ``limit`` when
    ///   that many items nobody waits for are queued ahead of it).
    private func lead(_ key: String, own: Entry?, run: @escaping Run) async {
        let batch = state.withLock { state in
            state.batches += 1
            let entries = state.queues[key]?.entries ?? []
            var count = min(entries.count, limit)
            if let own, let index = entries.firstIndex(where: { $0 === own }), index >= count { count = index + 1 }
            state.queues[key]?.entries.removeFirst(count)
            return Array(entries.prefix(count))
        }
        do {
            try await run(key, batch.map(\.item))
        } catch {
            for entry in batch { entry.failure = error }
        }
        var idleWaiters: [IdleWaiter] = []
        let next = state.withLock { state -> Next in
            guard let queue = state.queues[key], !queue.entries.isEmpty else {
                if let timer = state.queues[key]?.linger { timer.cancel() }
                state.queues[key] = nil
                if state.queues.isEmpty { swap(&idleWaiters, &state.idleWaiters) }
                return .none
            }
            if let waiter = queue.entries.first(where: { $0.continuation != nil }) { return .waiter(waiter) }
            return .unwaited
        }
        for entry in batch {
            if let done = entry.done {
                done(entry.failure)
            } else {
                entry.continuation?.resume(returning: false)
                entry.continuation = nil
            }
        }
        for waiter in idleWaiters { waiter.resume(true) }
        switch next {
        case .none: break
        case .waiter(let entry):
            // Its batch takes the items queued before it too.
            if let continuation = entry.continuation {
                entry.continuation = nil
                continuation.resume(returning: true)
            }
        case .unwaited:
            Task { await self.lead(key, own: nil, run: run) }
        }
    }
}
