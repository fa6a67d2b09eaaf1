import Foundation
import MizanCore
import MizanPostgresTesting
import MizanStore
import MizanStorePostgres
import MizanTestSupport
import PostgresNIO
import Testing

@testable import MizanDispatch

/// Two gateway instances: two stores (each with its own listener) and two dispatchers on one database.
@Suite("Two dispatchers on one PostgreSQL database")
struct TwoInstanceTests {
    let body = Data(#"{"model":"m1","messages":[{"role":"user","content":"hi"}]}"#.utf8)
    let result = Data(#"{"id":"x","object":"chat.completion","choices":[]}"#.utf8)

    func withTwoInstances(_ test: @Sendable (Dispatcher, Dispatcher) async throws -> Void) async throws {
        try await withTwoStores { storeA, storeB, _ in
            try await test(Dispatcher(store: storeA), Dispatcher(store: storeB))
        }
    }

    func withTwoStores(_ test: @Sendable (PostgresStore, PostgresStore, PostgresClient) async throws -> Void) async throws {
        try await PostgresTestDatabase.withDatabase { clientA, url in
            try await PostgresTestDatabase.withClient(url: url) { clientB in
                let storeA = PostgresStore(client: clientA)
                let storeB = PostgresStore(client: clientB)
                try await withRunningStore(storeA) {
                    try await withRunningStore(storeB) {
                        try await test(storeA, storeB, clientA)
                    }
                }
            }
        }
    }

    @Test func jobSubmittedOnAIsServedThroughB() async throws {
        try await withTwoInstances { a, b in
            let enrollment = try await a.createNode(name: "agent-on-b")
            let registration = try await b.register(
                registrationToken: enrollment.registrationToken, report: NodeReport(models: ["m1"], maxConcurrency: 2)
            )
            let node = try await b.authenticateNode(token: registration.nodeToken)
            let leaseStarted = ContinuousClock.now
            async let leased = b.lease(for: node, limit: 1, wait: .seconds(20))
            try await waitUntil("instance B's lease call waits") { b.waitingLeasers > 0 }
            async let outcome = a.submit(DispatchRequest(model: "m1", body: body, deadline: .seconds(30)))
            let jobs = try await leased
            #expect(jobs.count == 1, "B's waiting lease is woken by A's notification")
            #expect(ContinuousClock.now - leaseStarted < .seconds(10))
            let completedAt = ContinuousClock.now
            try await b.complete(jobs[0].lease, result: result, usage: TokenUsage(promptTokens: 1, completionTokens: 2))
            let job = try await outcome
            let resolvedIn = ContinuousClock.now - completedAt
            #expect(job.state == .succeeded && job.result == result)
            #expect(resolvedIn < .seconds(5), "A's waiter resolves by notification, well before its deadline (took \(resolvedIn))")
        }
    }

    @Test func clientCancelOnAReachesTheNodeOnB() async throws {
        try await withTwoInstances { a, b in
            let enrollment = try await a.createNode(name: "n")
            let registration = try await b.register(
                registrationToken: enrollment.registrationToken, report: NodeReport(models: ["m1"], maxConcurrency: 1)
            )
            let submitter = Task { try await a.submit(DispatchRequest(model: "m1", body: body, deadline: .seconds(30))) }
            let leased = try await b.lease(for: registration.node, limit: 1, wait: .seconds(10))
            #expect(leased.count == 1)
            submitter.cancel()
            await #expect(throws: MizanError.self) { try await submitter.value }
            let answer = try await b.heartbeat(
                nodeID: registration.node.id, report: NodeReport(models: ["m1"], maxConcurrency: 1, inFlight: 1),
                running: leased.map(\.lease)
            )
            #expect(answer.abort == leased.map(\.lease))
            let freed = try await b.lease(for: registration.node, limit: 1, wait: .zero)
            #expect(freed.isEmpty)
            let node = try await b.store.node(registration.node.id)
            #expect(node?.inFlight == 1)
        }
    }

    @Test func sweepersOnBothInstancesRequeueALostNodesJobOnce() async throws {
        try await withTwoInstances { a, b in
            let lost = try await a.createNode(name: "lost")
            let lostNode = try await a.register(
                registrationToken: lost.registrationToken, report: NodeReport(models: ["m1"], maxConcurrency: 1)
            ).node
            let job = Job(requestID: "r", model: "m1", body: body, deadline: Date().addingTimeInterval(60))
            _ = try await a.store.insert(job)
            let leased = try await a.store.lease(nodeID: lostNode.id, limit: 1, now: Date())
            #expect(leased.count == 1)
            // Both instances count the node as lost at once.
            let eager = Dispatcher.Configuration(nodeStaleAfter: .zero)
            async let first = Sweeper(dispatcher: Dispatcher(store: a.store, configuration: eager)).sweep()
            async let second = Sweeper(dispatcher: Dispatcher(store: b.store, configuration: eager)).sweep()
            let (r1, r2) = try await (first, second)
            #expect(r1.requeued + r2.requeued == 1, "exactly one instance applies the requeue")
            let stored = try await b.store.job(job.id)
            #expect(stored?.state == .accepted && stored?.attempt == 2)
        }
    }

    @Test func listenerReconnectsAndWaitersLookAgain() async throws {
        try await withTwoStores { storeA, storeB, clientA in
            let a = Dispatcher(store: storeA)
            let b = Dispatcher(store: storeB)
            let enrollment = try await a.createNode(name: "n")
            let node = try await b.register(
                registrationToken: enrollment.registrationToken, report: NodeReport(models: ["m1"], maxConcurrency: 1)
            ).node
            async let leased = b.lease(for: node, limit: 1, wait: .seconds(20))
            try await waitUntil("instance B's lease call waits") { b.waitingLeasers > 0 }
            // Drop every listening connection; the stores reconnect on their own.
            _ = try await clientA.query(
                """
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE query LIKE 'LISTEN%' AND datname = current_database() AND pid <> pg_backend_pid()
                """
            ).collectInts()
            let job = Job(requestID: "r", model: "m1", body: body, deadline: Date().addingTimeInterval(60))
            _ = try await a.store.insert(job)
            let jobs = try await leased
            #expect(jobs.map(\.job.id) == [job.id], "B's waiting lease finds the job after its listener reconnects")
            for _ in 0..<500 where !(storeA.isListening && storeB.isListening) {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(storeA.isListening && storeB.isListening, "both listeners are back")
        }
    }
}
