import Foundation
import MizanCore
import MizanDispatch
import MizanStore
import MizanStoreTesting
import Testing

@Suite("Sweeper")
struct SweeperTests {
    @Test func sweepsOnItsClockWithoutSleeping() async throws {
        let clock = ManualClock()
        let store = InMemoryStore()
        let dispatcher = Dispatcher(store: store, now: { clock.date })
        let sweeper = Sweeper(
            dispatcher: dispatcher,
            configuration: .init(interval: .seconds(1), nodeStaleAfter: .seconds(30), retention: .seconds(3600), pruneInterval: .seconds(60)),
            clock: clock
        )
        let lost = try await dispatcher.enroll()
        let expiring = Task { try await dispatcher.submit(DispatchRequest(model: "m2", body: chatBody, deadline: .seconds(10))) }
        let requeued = Task { try await dispatcher.submit(DispatchRequest(model: "m1", body: chatBody, deadline: .seconds(600))) }
        while try await store.queueDepth().values.reduce(0, +) < 2 { try await Task.sleep(for: .milliseconds(1)) }
        let leased = try await dispatcher.lease(for: lost.node, limit: 1, wait: .zero)
        #expect(leased.count == 1)

        let running = Task { try await sweeper.run() }
        try await clock.waitForSleepers()
        clock.advance(by: .seconds(11))
        // The expired job's submitter sees the timeout; the sweep did it (the deadline wait is real time here).
        try await waitUntil { try await store.jobs(state: .timedOut, limit: 10).count == 1 }
        let timedOut = try await store.jobs(state: .timedOut, limit: 10)
        #expect(timedOut.first?.model == "m2")

        try await clock.waitForSleepers()
        clock.advance(by: .seconds(30))
        try await waitUntil { try await store.job(leased[0].lease.jobID)?.state == .accepted }
        let job = try await store.job(leased[0].lease.jobID)
        #expect(job?.attempt == 2, "the lost node's job is back in the queue as attempt 2")

        expiring.cancel()
        requeued.cancel()
        _ = try? await expiring.value
        _ = try? await requeued.value
        try await clock.waitForSleepers()
        clock.advance(by: .seconds(3700))
        try await waitUntil { try await store.jobs(state: nil, limit: 10).isEmpty }
        running.cancel()
        try await running.value
    }

    @Test func oneSweepReportsWhatItDid() async throws {
        let clock = ManualClock()
        let dispatcher = Dispatcher(store: .memory(), now: { clock.date })
        let sweeper = Sweeper(dispatcher: dispatcher, clock: clock)
        let report = try await sweeper.sweep()
        #expect(report == Sweeper<ManualClock>.Report())
    }

    func waitUntil(_ condition: () async throws -> Bool) async throws {
        for _ in 0..<2000 {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(1))
        }
        Issue.record("condition not met in time")
    }
}
