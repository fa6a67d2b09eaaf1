import Foundation
import MizanCore

/// Changes of one key's counters that arrive together, applied together (a ``BatchQueue`` per
/// key): the next batch takes all the changes queued for the key into one read and one write of
/// its counters. A store gives the batcher how to apply a batch atomically (``ApplyBatch``);
/// each change's result is what it returned in the application that was written (a store that
/// retries a lost race applies them all again). A change may carry an attachment for the store
/// to write with the batch (PostgreSQL's usage records: a request's record and the end of its
/// admission, one statement for the batch).
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

        init(_ attachment: Attachment?, _ change: @escaping (inout KeyCounters) -> any Sendable) {
            self.attachment = attachment
            self.change = change
        }
    }

    /// A batch handed to the store's closure: its items are touched by one attempt at a time.
    private struct UnsafeItems: @unchecked Sendable {
        let items: [Item]
    }

    private let queue = BatchQueue<Item>(limit: 256)

    package init() {}

    /// Runs `change` on the key's counters with the other changes queued for the key.
    /// - Parameters:
    ///   - keyID: The key.
    ///   - attachment: What to write with the change's batch.
    ///   - apply: How the store applies a batch (the same for every call on a store).
    ///   - change: The change.
    package func change<T: Sendable>(
        _ keyID: String, attachment: Attachment? = nil, apply: @escaping ApplyBatch, _ change: @escaping @Sendable (inout KeyCounters) -> T
    ) async throws -> T {
        let item = Item(attachment) { change(&$0) }
        try await queue.submit(item, key: keyID, run: Self.run(apply))
        guard let result = item.result as? T else { preconditionFailure("a change that did not fail has its result") }
        return result
    }

    /// Queues `change` for the key's next batch without waiting for it (``BatchQueue/enqueue(_:key:linger:run:done:)``):
    /// it goes with the next change of the key made on this instance — applied before it — or
    /// on its own after `linger`.
    /// - Parameters:
    ///   - keyID: The key.
    ///   - attachment: What to write with the change's batch.
    ///   - linger: How long it may wait for another change of the key to go with.
    ///   - apply: How the store applies a batch.
    ///   - done: Told how its batch went.
    ///   - change: The change.
    package func changeSoon(
        _ keyID: String, attachment: Attachment? = nil, linger: Duration, apply: @escaping ApplyBatch,
        done: @escaping @Sendable ((any Error)?) -> Void, _ change: @escaping @Sendable (inout KeyCounters) -> Void
    ) {
        let item = Item(attachment) { change(&$0) }
        queue.enqueue(item, key: keyID, linger: linger, run: Self.run(apply), done: done)
    }

    /// Waits until no change is queued or being applied, or `timeout` has passed.
    package func idle(timeout: Duration) async -> Bool { await queue.idle(timeout: timeout) }

    private static func run(_ apply: @escaping ApplyBatch) -> BatchQueue<Item>.Run {
        { keyID, items in
            let batch = UnsafeItems(items: items)
            try await apply(keyID, items.compactMap(\.attachment)) { counters in
                for item in batch.items { item.result = item.change(&counters) }
            }
        }
    }
}
