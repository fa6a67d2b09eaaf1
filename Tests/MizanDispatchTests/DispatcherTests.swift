import Foundation
import MizanCore
import MizanStore
import MizanStoreTesting
import MizanTestSupport
import Testing

@testable import MizanDispatch

/// A registered node and its token, for dispatcher tests.
struct EnrolledNode {
    var node: Node
    var token: String
}

extension Dispatcher {
    func enroll(models: [String] = ["m1"], maxConcurrency: Int = 4) async throws -> EnrolledNode {
        let enrollment = try await createNode(name: "test-node")
        let registration = try await register(
            registrationToken: enrollment.registrationToken,
            report: NodeReport(models: models, maxConcurrency: maxConcurrency)
        )
        return EnrolledNode(node: registration.node, token: registration.nodeToken)
    }
}

let chatBody = Data(#"{"model":"m1","messages":[{"role":"user","content":"hello"}],"tools":[{"type":"function"}]}"#.utf8)
let answer = Data(#"{"id":"c","object":"chat.completion","choices":[]}"#.utf8)

@Suite("Dispatcher")
struct DispatcherTests {
    @Test func aRecentNodeIsFoundWithoutReadingTheStore() async throws {
        let dispatcher = Dispatcher(store: .memory())
        let node = try await dispatcher.enroll()
        // Registration made the engine forget its list: nothing is at hand until it reads again.
        #expect(dispatcher.recentNode(node.node.id) == nil)
        _ = try await dispatcher.recentNodes()
        #expect(dispatcher.recentNode(node.node.id)?.name == "test-node")
        #expect(dispatcher.recentNode(NodeID()) == nil)
    }

    @Test func submitWaitsForTheAgentsResult() async throws {
        let dispatcher = Dispatcher(store: .memory())
        let agent = try await dispatcher.enroll()
        async let outcome = dispatcher.submit(DispatchRequest(model: "m1", body: chatBody))
        let leased = try await dispatcher.lease(for: agent.node, limit: 1, wait: .seconds(5))
        #expect(leased.count == 1)
        #expect(leased[0].job.body == chatBody)
        try await dispatcher.complete(leased[0].lease, result: answer, usage: TokenUsage(promptTokens: 3, completionTokens: 4))
        let job = try await outcome
        #expect(job.state == .succeeded)
        #expect(job.result == answer)
        #expect(job.usage?.totalTokens == 7)
        #expect(dispatcher.waitingSubmitters == 0)
    }

    @Test func leaseLongPollWakesOnSubmit() async throws {
        let dispatcher = Dispatcher(store: .memory())
        let agent = try await dispatcher.enroll()
        let started = ContinuousClock.now
        async let leased = dispatcher.lease(for: agent.node, limit: 4, wait: .seconds(20))
        try await waitUntil("a lease call waits") { dispatcher.waitingLeasers > 0 }
        let submitter = Task { try await dispatcher.submit(DispatchRequest(model: "m1", body: chatBody, deadline: .seconds(30))) }
        let jobs = try await leased
        #expect(jobs.count == 1)
        #expect(ContinuousClock.now - started < .seconds(10), "the lease returned on the event, not at the end of its wait")
        submitter.cancel()
        await #expect(throws: MizanError.self) { try await submitter.value }
    }

    @Test func leaseReturnsEmptyAfterItsWait() async throws {
        let dispatcher = Dispatcher(store: .memory())
        let agent = try await dispatcher.enroll()
        let leased = try await dispatcher.lease(for: agent.node, limit: 1, wait: .milliseconds(50))
        #expect(leased.isEmpty)
        #expect(dispatcher.waitingLeasers == 0)
    }

    @Test func leaseOfAnotherModelKeepsWaiting() async throws {
        let dispatcher = Dispatcher(store: .memory())
        let agent = try await dispatcher.enroll(models: ["m1"])
        let other = Task { try await dispatcher.submit(DispatchRequest(model: "m2", body: chatBody, deadline: .seconds(30))) }
        let leased = try await dispatcher.lease(for: agent.node, limit: 1, wait: .milliseconds(100))
        #expect(leased.isEmpty)
        other.cancel()
        _ = try? await other.value
    }

    @Test func cancellingTheSubmitterCancelsTheJobAndTellsTheNode() async throws {
        let dispatcher = Dispatcher(store: .memory())
        let agent = try await dispatcher.enroll()
        let submitter = Task { try await dispatcher.submit(DispatchRequest(model: "m1", body: chatBody)) }
        let leased = try await dispatcher.lease(for: agent.node, limit: 1, wait: .seconds(5))
        submitter.cancel()
        await #expect {
            try await submitter.value
        } throws: { error in
            (error as? MizanError)?.code == .cancelled
        }
        let job = try await dispatcher.job(leased[0].lease.jobID)
        #expect(job?.state == .failed)
        #expect(job?.errorCode == JobErrorCode.cancelled)
        let answer = try await dispatcher.heartbeat(
            nodeID: agent.node.id, report: NodeReport(models: ["m1"], maxConcurrency: 4, inFlight: 1), running: [leased[0].lease]
        )
        #expect(answer.abort == [leased[0].lease])
        await #expect {
            try await dispatcher.complete(
                Lease(jobID: leased[0].lease.jobID, attempt: 1, nodeID: agent.node.id), result: answer.node.name.data(using: .utf8)!,
                usage: nil)
        } throws: { error in
            (error as? MizanError)?.httpStatus == 409
        }
    }

    @Test func deadlineTimesTheJobOut() async throws {
        let dispatcher = Dispatcher(store: .memory())
        let job = try await dispatcher.submit(DispatchRequest(model: "m1", body: chatBody, deadline: .milliseconds(50)))
        #expect(job.state == .timedOut)
        #expect(job.errorCode == JobErrorCode.deadlineExceeded)
    }

    @Test func idempotentSubmitReturnsTheFirstOutcome() async throws {
        let dispatcher = Dispatcher(store: .memory())
        let agent = try await dispatcher.enroll()
        let request = DispatchRequest(model: "m1", body: chatBody, idempotencyKey: "k-1")
        async let first = dispatcher.submit(request)
        let leased = try await dispatcher.lease(for: agent.node, limit: 1, wait: .seconds(5))
        async let second = dispatcher.submit(request)
        // The repeat finds the running job and waits for it beside the first submitter.
        try await waitUntil("the repeated submit waits too") { dispatcher.waitingSubmitters == 2 }
        try await dispatcher.complete(Lease(jobID: leased[0].lease.jobID, attempt: 1, nodeID: agent.node.id), result: answer, usage: nil)
        let (a, b) = try await (first, second)
        #expect(a.id == b.id)
        #expect(b.state == .succeeded)
        let third = try await dispatcher.submit(request)
        #expect(third.id == a.id && third.result == answer)
        let all = try await dispatcher.jobs(state: nil, limit: 10)
        #expect(all.count == 1)
    }

    @Test func retryableFailureGoesToAnotherNode() async throws {
        let dispatcher = Dispatcher(store: .memory())
        let first = try await dispatcher.enroll()
        let second = try await dispatcher.enroll()
        async let outcome = dispatcher.submit(DispatchRequest(model: "m1", body: chatBody))
        let leased = try await dispatcher.lease(for: first.node, limit: 1, wait: .seconds(5))
        let requeued = try await dispatcher.fail(
            Lease(jobID: leased[0].lease.jobID, attempt: 1, nodeID: first.node.id), code: "provider_unreachable", message: "down",
            retryable: true
        )
        #expect(requeued.state == .accepted && requeued.attempt == 2)
        let again = try await dispatcher.lease(for: second.node, limit: 1, wait: .seconds(5))
        #expect(again.first?.lease.attempt == 2)
        try await dispatcher.complete(Lease(jobID: again[0].lease.jobID, attempt: 2, nodeID: second.node.id), result: answer, usage: nil)
        let job = try await outcome
        #expect(job.state == .succeeded && job.nodeID == second.node.id)
    }

    @Test func registrationTokensAreOneTimeAndNodeTokensAuthenticate() async throws {
        let dispatcher = Dispatcher(store: .memory())
        let enrollment = try await dispatcher.createNode(name: "gpu-box")
        #expect(enrollment.registrationToken.hasPrefix("mzn_reg_"))
        #expect(enrollment.registrationToken.count >= 8 + 43, "at least 256 bits of randomness")
        let registration = try await dispatcher.register(
            registrationToken: enrollment.registrationToken, report: NodeReport(models: ["m1"], maxConcurrency: 2)
        )
        #expect(registration.node.id == enrollment.node.id)
        await #expect(throws: MizanError.self) {
            _ = try await dispatcher.register(
                registrationToken: enrollment.registrationToken, report: NodeReport(models: ["m1"], maxConcurrency: 2))
        }
        let node = try await dispatcher.authenticateNode(token: registration.nodeToken)
        #expect(node.id == enrollment.node.id)
        await #expect(throws: MizanError.self) { _ = try await dispatcher.authenticateNode(token: enrollment.registrationToken) }
        await #expect(throws: MizanError.self) { _ = try await dispatcher.authenticateNode(token: registration.nodeToken + "x") }
        try await dispatcher.revokeNode(node.id)
        await #expect {
            _ = try await dispatcher.authenticateNode(token: registration.nodeToken)
        } throws: { error in
            (error as? MizanError)?.httpStatus == 401
        }
    }

    @Test func anAuthenticatedNodeIsRememberedForTheCacheLifetimeOnly() async throws {
        let store = InMemoryStore()
        let dispatcher = Dispatcher(store: store, configuration: .init(cacheLifetime: .milliseconds(300)))
        let enrollment = try await dispatcher.createNode(name: "n")
        let registration = try await dispatcher.register(
            registrationToken: enrollment.registrationToken, report: NodeReport(models: ["m1"], maxConcurrency: 1)
        )
        _ = try await dispatcher.authenticateNode(token: registration.nodeToken)
        // A heartbeat forgets the remembered node, so a changed model list counts at once.
        _ = try await dispatcher.heartbeat(nodeID: registration.node.id, report: NodeReport(models: ["m2"], maxConcurrency: 1))
        #expect(try await dispatcher.authenticateNode(token: registration.nodeToken).models == ["m2"])
        // Revoked in the store directly (as another instance would): refused once the lifetime passed.
        _ = try await store.revokeNode(registration.node.id, now: Date())
        try await Task.sleep(for: .milliseconds(400))
        await #expect(throws: MizanError.self) { _ = try await dispatcher.authenticateNode(token: registration.nodeToken) }
    }

    @Test func aLeaseTheNodeNeverReportsIsTakenBackAfterTheGrace() async throws {
        let clock = ManualClock()
        let store = InMemoryStore()
        let dispatcher = Dispatcher(store: store, configuration: .init(unreportedLeaseGrace: .seconds(30)), now: { clock.date })
        let node = try await dispatcher.enroll(models: ["m1"], maxConcurrency: 4)
        let report = NodeReport(models: ["m1"], maxConcurrency: 4)
        for attempts in [3, 3, 1] {
            _ = try await store.insert(
                Job(
                    requestID: "r", model: "m1", body: chatBody, deadline: clock.date.addingTimeInterval(600), maxAttempts: attempts,
                    now: clock.date)
            )
        }
        // Three leases handed out; the node got (and reports) only the first, the answers of the
        // others were lost on the way. One of the lost ones is on its last attempt.
        let handedOut = try await dispatcher.lease(for: node.node, limit: 3, wait: .zero)
        #expect(handedOut.count == 3)
        // The node runs one with attempts to spare; the last-attempt job is among the lost ones.
        let kept = try #require(handedOut.first { $0.job.maxAttempts == 3 })
        let leased = [kept] + handedOut.filter { $0.job.id != kept.job.id }
        let running = [kept.lease]

        clock.advance(by: .seconds(10))
        _ = try await dispatcher.heartbeat(nodeID: node.node.id, report: report, running: running)
        #expect(try await store.leasedJobs(nodeID: node.node.id).count == 3, "within the grace nothing is taken back")

        clock.advance(by: .seconds(25))
        _ = try await dispatcher.heartbeat(nodeID: node.node.id, report: report, running: running)
        let held = try await store.leasedJobs(nodeID: node.node.id)
        #expect(held.map(\.id) == [leased[0].job.id], "the reported lease stays, the unreported ones are taken back")
        for lost in leased.dropFirst() {
            let job = try #require(try await store.job(lost.job.id))
            if job.maxAttempts == 1 {
                #expect(
                    job.state == .failed && job.errorCode == JobErrorCode.leaseLost,
                    "no attempt left: failed as lease_lost, not \(job.state)")
            } else {
                #expect(job.state == .accepted && job.attempt == 2, "requeued for another attempt: \(job.state) \(job.attempt)")
            }
        }
        #expect(try await store.jobs(state: .failed, limit: 10).count == 1, "exactly the job on its last attempt failed")
        // The node's late report of a taken-back lease is refused.
        await #expect(throws: MizanError.self) {
            try await dispatcher.complete(
                Lease(jobID: leased[1].job.id, attempt: 1, nodeID: node.node.id), result: Data("{}".utf8), usage: nil)
        }
    }

    @Test func secretsAreHashedAndComparedSafely() {
        let secret = Secrets.generate(prefix: "p_")
        #expect(Secrets.hash(secret).count == 32)
        #expect(Secrets.matches(secret, hash: Secrets.hash(secret)))
        #expect(!Secrets.matches(secret + "0", hash: Secrets.hash(secret)))
        #expect(Secrets.generate(prefix: "p_") != secret)
    }
}
