import Foundation
import MizanCore
import Synchronization

/// Changes of one key's counters that arrive together, applied together: while a batch of a
/// key is being written, the changes that arrive for it queue up, and the next batch takes them
/// all into one read and one write of the counters. A store gives the batcher how to apply a
/// batch atomically (``ApplyBatch``); each change's result is what it returned in the
/// application that was written (a store that retries a lost race applies them all again).
///
/// A change may carry an attachment for the store to write with the batch (PostgreSQL's usage
/// records: a request's record and the end of its admission, one statement for the batch).
///
/// Without it, every request of a busy key would read and write the key's row on its own:
/// concurrent requests of one key race for its row (and lose, and retry).
package final class KeyCounterBatcher<Attachment: Sendable>: Sendable {
    /// Applies `changes` in order to a key's counters, atomically, and writes the result once;
    /// writes the attachments once, whatever number of attempts it takes. Runs `changes` on
    /// each attempt it makes (they are pure); throws when it cannot.
    package typealias ApplyBatch =
        @Sendable (_ keyID: String, _ attachments: [Attachment], _ changes: @escaping @Sendable (inout KeyCounters) -> Void) async throws ->
        Void

    private final class Item: @unchecked Sendable {
        // Written by the leader only, read by the change's task after it resumes.
        let change: (inout KeyCounters) -> any Sendable
        let attachment: Attachment?
        var result: (any Sendable)?
        var failure: (any Error)?
        var continuation: CheckedContinuation<Bool, Never>?

        init(_ attachment: Attachment?, _ change: @escaping (inout KeyCounters) -> any Sendable) {
            self.attachment = attachment
            self.change = change
        }
    }

    private struct Queue {
        var items: [Item] = []
        var leading = false
    }

    /// The most changes applied in one batch.
    package static var batchLimit: Int { 256 }

    private let queues = Mutex<[String: Queue]>([:])

    package init() {}

    /// Runs `change` on the key's counters with the other changes queued for the key.
    /// - Parameters:
    ///   - keyID: The key.
    ///   - attachment: What to write with the change's batch.
    ///   - apply: How the store applies a batch (the same for every call on a store).
    ///   - change: The change.
    package func change<T: Sendable>(
        _ keyID: String, attachment: Attachment? = nil, apply: ApplyBatch, _ change: @escaping @Sendable (inout KeyCounters) -> T
    ) async throws -> T {
        let item = Item(attachment) { change(&$0) }
        let leads = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            item.continuation = continuation
            let leads = queues.withLock { queues in
                queues[keyID, default: Queue()].items.append(item)
                if queues[keyID]!.leading { return false }
                queues[keyID]!.leading = true
                return true
            }
            if leads {
                item.continuation = nil
                continuation.resume(returning: true)
            }
        }
        if leads { await lead(keyID, apply: apply) }
        if let failure = item.failure { throw failure }
        guard let result = item.result as? T else { preconditionFailure("a change that did not fail has its result") }
        return result
    }

    /// Applies one batch of the key's queued changes, wakes their tasks, and hands the lead to
    /// the next queued change (or gives it up).
    private func lead(_ keyID: String, apply: ApplyBatch) async {
        let batch = queues.withLock { queues in
            let items = queues[keyID]?.items ?? []
            let count = min(items.count, Self.batchLimit)
            queues[keyID]?.items.removeFirst(count)
            return Array(items.prefix(count))
        }
        let changes = UnsafeItems(batch)
        do {
            try await apply(keyID, batch.compactMap(\.attachment)) { counters in
                for item in changes.items { item.result = item.change(&counters) }
            }
        } catch {
            for item in batch { item.failure = error }
        }
        let next = queues.withLock { queues -> Item? in
            guard let next = queues[keyID]?.items.first else {
                queues[keyID] = nil
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

    /// A batch handed to the store's closure: its items are touched by one attempt at a time.
    private struct UnsafeItems: @unchecked Sendable {
        let items: [Item]
        init(_ items: [Item]) { self.items = items }
    }
}
