import Foundation
import MizanCore
import MizanDispatch
import MizanStore
import MizanStoreTesting
import MizanTestSupport
import Testing

@Suite("Sweeper")
struct SweeperTests {
    @Test func sweepsOnItsClockWithoutSleeping() async throws {
        let clock = ManualClock()
        let store = InMemoryStore()
        let configuration = Dispatcher.Configuration(
            nodeStaleAfter: .seconds(30),
            sweeping: .init(interval: .seconds(1), retention: .seconds(3600), pruneInterval: .seconds(60))
        )
        let dispatcher = Dispatcher(store: store, configuration: configuration, now: { clock.date })
        let sweeper = Sweeper(dispatcher: dispatcher, clock: clock)
        let lost = try await dispatcher.enroll()
        let expiring = Task { try await dispatcher.submit(DispatchRequest(model: "m2", body: chatBody, deadline: .seconds(10))) }
        let requeued = Task { try await dispatcher.submit(DispatchRequest(model: "m1", body: chatBody, deadline: .seconds(600))) }
        try await waitUntil("both jobs are queued") { try await store.queueDepth().values.reduce(0, +) == 2 }
        let leased = try await dispatcher.lease(for: lost.node, limit: 1, wait: .zero)
        #expect(leased.count == 1)

        let running = Task { try await sweeper.run() }
        try await clock.waitForSleepers()
        clock.advance(by: .seconds(11))
        // The expired job's submitter sees the timeout; the sweep did it (the deadline wait is real time here).
        try await waitUntil("the sweep to act") { try await store.jobs(state: .timedOut, limit: 10).count == 1 }
        let timedOut = try await store.jobs(state: .timedOut, limit: 10)
        #expect(timedOut.first?.model == "m2")

        try await clock.waitForSleepers()
        clock.advance(by: .seconds(30))
        try await waitUntil("the sweep to act") { try await store.job(leased[0].lease.jobID)?.state == .accepted }
        let job = try await store.job(leased[0].lease.jobID)
        #expect(job?.attempt == 2, "the lost node's job is back in the queue as attempt 2")

        expiring.cancel()
        requeued.cancel()
        _ = try? await expiring.value
        _ = try? await requeued.value
        try await clock.waitForSleepers()
        clock.advance(by: .seconds(3700))
        try await waitUntil("the sweep to act") { try await store.jobs(state: nil, limit: 10).isEmpty }
        running.cancel()
        try await running.value
    }

    @Test func oneSweepReportsWhatItDid() async throws {
        let clock = ManualClock()
        let store = InMemoryStore()
        let configuration = Dispatcher.Configuration(nodeStaleAfter: .seconds(30), sweeping: .init(retention: .seconds(60)))
        let dispatcher = Dispatcher(store: store, configuration: configuration, now: { clock.date })
        let sweeper = Sweeper(dispatcher: dispatcher, clock: clock)
        let start = clock.date
        // One job that will be past its deadline, one on a node that goes silent (with an
        // attempt left: requeued), one on that node with none left (failed), one finished
        // long enough ago to be pruned.
        _ = try await store.insert(Job(requestID: "late", model: "m2", body: chatBody, deadline: start.addingTimeInterval(10), now: start))
        _ = try await store.insert(Job(requestID: "lost", model: "m1", body: chatBody, deadline: start.addingTimeInterval(900), now: start))
        _ = try await store.insert(
            Job(requestID: "spent", model: "m1", body: chatBody, deadline: start.addingTimeInterval(900), maxAttempts: 1, now: start)
        )
        let old = Job(requestID: "old", model: "m3", body: chatBody, deadline: start.addingTimeInterval(900), now: start)
        _ = try await store.insert(old)
        _ = try await store.cancel(old.id, now: start)
        let silent = try await dispatcher.enroll(models: ["m1"])
        #expect(try await dispatcher.lease(for: silent.node, limit: 2, wait: .zero).count == 2)
        #expect(try await sweeper.sweep() == Sweeper<ManualClock>.Report(), "nothing is due yet")

        clock.advance(by: .seconds(120))
        // The first sweep started the prune interval; two minutes on, the next prune is due.
        let report = try await sweeper.sweep()
        #expect(report.timedOut == 1)
        #expect(report.requeued == 1)
        #expect(report.failed == 1)
        #expect(report.pruned == 1)
        #expect(try await store.job(old.id) == nil, "the old finished job is gone")
        #expect(try await store.jobs(state: .timedOut, limit: 10).map(\.requestID) == ["late"])
        #expect(try await store.jobs(state: .accepted, limit: 10).map(\.requestID) == ["lost"])
        #expect(try await store.jobs(state: .failed, limit: 10).map(\.requestID).contains("spent"))
        let again = try await sweeper.sweep()
        #expect(again.timedOut + again.requeued + again.failed == 0, "a second sweep finds nothing left to do")
    }
}
