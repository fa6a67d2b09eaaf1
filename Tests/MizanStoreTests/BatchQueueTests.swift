import Foundation
import MizanStore
import Synchronization
import Testing

@Suite("Batches of concurrent work")
struct BatchQueueTests {
    struct Failed: Error {}

    /// What the runs of a queue saw: items run, batches running at once at most, and whether
    /// any batch ran with more than one item.
    final class Record: Sendable {
        struct State {
            var items: [Int] = []
            var running = 0
            var mostRunning = 0
            var largest = 0
        }
        let state = Mutex(State())
    }

    /// Submits `count` items from concurrent tasks; each batch takes a moment. Items whose
    /// number `fails` holds make their batch throw.
    func run(depth: Int, count: Int, fails: Set<Int> = []) async throws -> (Record, [Int: Bool], Int) {
        let queue = BatchQueue<Int>(limit: 8, depth: depth)
        let record = Record()
        let outcomes = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            for n in 0..<count {
                group.addTask {
                    do {
                        try await queue.submit(n, key: "k") { _, items in
                            record.state.withLock { state in
                                state.running += 1
                                state.mostRunning = max(state.mostRunning, state.running)
                                state.largest = max(state.largest, items.count)
                                state.items += items
                            }
                            try await Task.sleep(for: .milliseconds(3))
                            record.state.withLock { $0.running -= 1 }
                            if items.contains(where: fails.contains) { throw Failed() }
                        }
                        return (n, true)
                    } catch {
                        return (n, false)
                    }
                }
            }
            var outcomes: [Int: Bool] = [:]
            for try await (n, succeeded) in group { outcomes[n] = succeeded }
            return outcomes
        }
        return (record, outcomes, queue.batches)
    }

    @Test("one batch of a key at a time: every item runs once, those that queued together run together")
    func depthOne() async throws {
        let (record, outcomes, batches) = try await run(depth: 1, count: 200)
        let state = record.state.withLock { $0 }
        #expect(state.items.sorted() == Array(0..<200))
        #expect(state.mostRunning == 1)
        #expect(state.largest > 1)
        #expect(state.largest <= 8)
        #expect(batches < 200)
        #expect(outcomes.values.allSatisfy { $0 })
    }

    @Test("a depth of two runs two batches of a key at once, never three; every item once")
    func depthTwo() async throws {
        let (record, outcomes, batches) = try await run(depth: 2, count: 400)
        let state = record.state.withLock { $0 }
        #expect(state.items.sorted() == Array(0..<400))
        #expect(state.mostRunning == 2)
        #expect(state.largest > 1)
        #expect(batches < 400)
        #expect(outcomes.values.allSatisfy { $0 })
    }

    @Test("a batch that throws fails its own items only", arguments: [1, 2])
    func failures(depth: Int) async throws {
        let (record, outcomes, _) = try await run(depth: depth, count: 120, fails: [17])
        let items = record.state.withLock { $0.items }
        #expect(items.sorted() == Array(0..<120))
        #expect(outcomes[17] == false)
        // The failed batch held at most 8 items; every other item succeeded.
        let failed = outcomes.filter { !$0.value }.count
        #expect(failed >= 1 && failed <= 8)
    }
}
