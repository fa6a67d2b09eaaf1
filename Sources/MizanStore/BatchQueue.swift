import Synchronization

/// Work of concurrent tasks run together: while a batch of a key runs, the items that arrive
/// for that key queue up, and the next batch takes them all (up to ``limit``). What a store
/// writes once per batch instead of once per item — a commit, a statement, a read and write of
/// a row — is what it saves.
///
/// There is no extra thread and no timer: the task whose item finds fewer than ``depth`` batches
/// of its key running leads — it runs a batch with its own item first and the queued ones after
/// it — and hands the lead to the first item that queued meanwhile, so no item waits behind more
/// than one batch of others, and a lone item waits for nothing. With a depth of two, a second
/// batch starts while the first runs (a store that chains its writes, each on the one before,
/// saves the wait for the first's answer). Keys are independent (one key's batch never waits
/// for another's).
package final class BatchQueue<Item: Sendable>: Sendable {
    /// Runs one batch, in the order the items arrived. What it throws fails every item of it.
    package typealias Run = @Sendable (_ key: String, _ items: [Item]) async throws -> Void

    private enum Role { case lead, done }

    private final class Entry: @unchecked Sendable {
        // Set under the queue's lock, or by the leader before it resumes the entry's task.
        let item: Item
        var failure: (any Error)?
        var continuation: CheckedContinuation<Role, Never>?

        init(_ item: Item) { self.item = item }
    }

    private struct Queue {
        /// Items waiting for a batch (each one's task is suspended).
        var entries: [Entry] = []
        /// Batches running.
        var running = 0
    }

    private struct State {
        var queues: [String: Queue] = [:]
        var batches = 0
    }

    /// The most items run together.
    package let limit: Int
    /// The most batches of one key running at once.
    package let depth: Int
    private let state = Mutex(State())

    /// A queue whose batches hold at most `limit` items, at most `depth` of a key running at once.
    package init(limit: Int, depth: Int = 1) {
        precondition(limit > 0, "a batch holds an item at least")
        precondition(depth > 0, "a batch runs at least")
        self.limit = limit
        self.depth = depth
    }

    /// How many items are queued for a key's next batch.
    package func queued(_ key: String = "") -> Int { state.withLock { $0.queues[key]?.entries.count ?? 0 } }

    /// How many batches have been run (whether they threw or not).
    package var batches: Int { state.withLock { $0.batches } }

    /// Runs `item` in a batch with the items queued beside it under the same key.
    /// - Parameters:
    ///   - item: The item.
    ///   - key: The items of one key run together (at most ``depth`` batches at a time per key).
    ///   - run: How a batch runs (the same for every item of a key).
    /// - Throws: What the batch's run threw.
    package func submit(_ item: Item, key: String = "", run: Run) async throws {
        let entry = Entry(item)
        let role = await withCheckedContinuation { (continuation: CheckedContinuation<Role, Never>) in
            let leads = state.withLock { state in
                // Changed in place: a copy of the queue would copy its entries.
                if state.queues[key] == nil { state.queues[key] = Queue() }
                if state.queues[key]!.running < depth {
                    state.queues[key]!.running += 1
                    return true
                }
                entry.continuation = continuation
                state.queues[key]!.entries.append(entry)
                return false
            }
            if leads { continuation.resume(returning: .lead) }
        }
        if role == .lead { await lead(key, with: entry, run: run) }
        if let failure = entry.failure { throw failure }
    }

    /// Runs one batch — `own` first, then the key's queued items — wakes their tasks, and hands
    /// the lead to the next queued item, or gives it up when none is queued.
    private func lead(_ key: String, with own: Entry, run: Run) async {
        let batch = state.withLock { state in
            state.batches += 1
            let entries = state.queues[key]?.entries ?? []
            let count = min(entries.count, limit - 1)
            state.queues[key]?.entries.removeFirst(count)
            return [own] + entries.prefix(count)
        }
        do {
            try await run(key, batch.map(\.item))
        } catch {
            for entry in batch { entry.failure = error }
        }
        let next = state.withLock { state -> Entry? in
            guard state.queues[key] != nil else { return nil }
            if !state.queues[key]!.entries.isEmpty { return state.queues[key]!.entries.removeFirst() }
            state.queues[key]!.running -= 1
            if state.queues[key]!.running == 0 { state.queues[key] = nil }
            return nil
        }
        for entry in batch.dropFirst() {
            entry.continuation?.resume(returning: .done)
            entry.continuation = nil
        }
        if let next, let continuation = next.continuation {
            next.continuation = nil
            continuation.resume(returning: .lead)
        }
    }
}
