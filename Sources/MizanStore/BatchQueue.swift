import Synchronization

/// Work of concurrent tasks run together: while one batch of a key runs, the items that arrive
/// for that key queue up, and the next batch takes them all (up to ``limit``). What a store
/// writes once per batch instead of once per item — a commit, a statement, a read and write of
/// a row — is what it saves.
///
/// There is no extra thread and no timer: the task whose item finds its key idle leads — it runs
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

        init(_ item: Item) { self.item = item }
    }

    private struct Queue {
        var entries: [Entry] = []
        var leading = false
    }

    private struct State {
        var queues: [String: Queue] = [:]
        var batches = 0
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
    package func submit(_ item: Item, key: String = "", run: Run) async throws {
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
        if leads { await lead(key, run: run) }
        if let failure = entry.failure { throw failure }
    }

    /// Runs one batch of the key's queued items (the leader's own is its first), wakes their
    /// tasks, and hands the lead to the next queued item, or gives it up when none is queued.
    private func lead(_ key: String, run: Run) async {
        let batch = state.withLock { state in
            state.batches += 1
            let entries = state.queues[key]?.entries ?? []
            let count = min(entries.count, limit)
            state.queues[key]?.entries.removeFirst(count)
            return Array(entries.prefix(count))
        }
        do {
            try await run(key, batch.map(\.item))
        } catch {
            for entry in batch { entry.failure = error }
        }
        let next = state.withLock { state -> Entry? in
            guard let next = state.queues[key]?.entries.first else {
                state.queues[key] = nil
                return nil
            }
            return next
        }
        for entry in batch {
            entry.continuation?.resume(returning: false)
            entry.continuation = nil
        }
        if let next, let continuation = next.continuation {
            next.continuation = nil
            continuation.resume(returning: true)
        }
    }
}
