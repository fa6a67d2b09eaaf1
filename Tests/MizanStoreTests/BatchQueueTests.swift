import Foundation
import MizanCore
import MizanStore
import Synchronization
import Testing

/// What the batches of a queue ran, in order.
private final class Runs: Sendable {
    private let batches = Mutex<[[String]]>([])

    var all: [[String]] { batches.withLock { $0 } }

    func run(failing: Bool = false) -> BatchQueue<String>.Run {
        { _, items in
            self.batches.withLock { $0.append(items) }
            if failing { throw MizanError(.storeUnavailable, "the batch failed") }
        }
    }
}

/// How the items nobody waits for went.
private final class Outcomes: Sendable {
    private let outcomes = Mutex<[String: String]>([:])

    var all: [String: String] { outcomes.withLock { $0 } }

    func done(_ item: String) -> @Sendable ((any Error)?) -> Void {
        { error in self.outcomes.withLock { $0[item] = error.map { "\($0)" } ?? "ran" } }
    }
}

@Suite("Batch queue: items nobody waits for")
struct BatchQueueTests {
    @Test func theNextSubmittedItemTakesThemInOrderBeforeItself() async throws {
        let queue = BatchQueue<String>(limit: 256)
        let runs = Runs()
        let outcomes = Outcomes()
        for item in ["a", "b", "c"] {
            queue.enqueue(item, key: "k", linger: .seconds(30), run: runs.run(), done: outcomes.done(item))
        }
        #expect(runs.all.isEmpty, "nothing runs before the linger or a submitted item")
        try await queue.submit("w", key: "k", run: runs.run())
        #expect(runs.all == [["a", "b", "c", "w"]], "one batch, in order: \(runs.all)")
        #expect(outcomes.all == ["a": "ran", "b": "ran", "c": "ran"])
        #expect(queue.isIdle)
    }

    @Test func aLoneItemRunsAfterItsLinger() async throws {
        let queue = BatchQueue<String>(limit: 256)
        let runs = Runs()
        let outcomes = Outcomes()
        queue.enqueue("a", key: "k", linger: .milliseconds(5), run: runs.run(), done: outcomes.done("a"))
        queue.enqueue("b", key: "k", linger: .milliseconds(5), run: runs.run(), done: outcomes.done("b"))
        #expect(await queue.idle(timeout: .seconds(10)), "the queue empties by itself")
        #expect(runs.all == [["a", "b"]], "\(runs.all)")
        #expect(outcomes.all == ["a": "ran", "b": "ran"])
    }

    @Test func aSubmittedItemBehindMoreThanABatchStillRunsBeforeItReturns() async throws {
        let queue = BatchQueue<String>(limit: 2)
        let runs = Runs()
        let outcomes = Outcomes()
        let queued = (1...5).map { "p\($0)" }
        for item in queued { queue.enqueue(item, key: "k", linger: .seconds(30), run: runs.run(), done: outcomes.done(item)) }
        try await queue.submit("w", key: "k", run: runs.run())
        #expect(runs.all.flatMap { $0 } == queued + ["w"], "every item once, in order: \(runs.all)")
        #expect(await queue.idle(timeout: .seconds(10)))
        #expect(outcomes.all.count == 5)
    }

    @Test func aFailedBatchIsToldToItsItems() async throws {
        let queue = BatchQueue<String>(limit: 256)
        let runs = Runs()
        let outcomes = Outcomes()
        queue.enqueue("a", key: "k", linger: .seconds(30), run: runs.run(failing: true), done: outcomes.done("a"))
        await #expect(throws: MizanError.self) { try await queue.submit("w", key: "k", run: runs.run(failing: true)) }
        #expect(outcomes.all["a"]?.contains("the batch failed") == true, "\(outcomes.all)")
        #expect(queue.isIdle)
    }

    @Test func waitingForIdleEndsAtItsTimeoutOrWhenTheLastItemHasRun() async throws {
        let queue = BatchQueue<String>(limit: 256)
        let runs = Runs()
        let outcomes = Outcomes()
        #expect(await queue.idle(timeout: .zero), "an empty queue is idle at once")
        queue.enqueue("a", key: "k", linger: .seconds(30), run: runs.run(), done: outcomes.done("a"))
        #expect(await !queue.idle(timeout: .milliseconds(20)), "an item lingers: not idle within the timeout")
        async let idle = queue.idle(timeout: .seconds(30))
        try await queue.submit("w", key: "k", run: runs.run())
        #expect(await idle, "the wait ends when the batch that took the last items has run")
        #expect(outcomes.all == ["a": "ran"])
    }
}
