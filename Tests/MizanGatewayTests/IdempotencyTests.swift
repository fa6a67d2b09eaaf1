import Foundation
import MizanCore
import MizanDispatch
import MizanGateway
import MizanStore
import MizanTestSupport
import Testing

@Suite("Idempotency-Key on agent-served requests")
struct IdempotencyTests {
    static let key = [("Idempotency-Key", "order-42")]

    @Test func aRetryAfterADisconnectAttachesToTheRunningJob() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["local"])
            // The first request's client goes away while the node holds the job.
            let first = Task { try await gateway.chat(model: "local", headers: Self.key) }
            let leased = try await gateway.lease(token: node.token)
            #expect(leased.count == 1)
            first.cancel()
            _ = await first.result
            try await Task.sleep(for: .milliseconds(300))
            let kept = try await gateway.store.job(leased[0].jobID)
            #expect(
                kept?.state == .leased,
                "the job keeps running for a retry: \(String(describing: kept?.idempotencyKey)) \(String(describing: kept?.errorMessage))")

            // The retry waits for that job and gets its answer; nothing runs twice.
            let retry = Task { try await gateway.chat(model: "local", headers: Self.key) }
            try await waitUntil("the retry waits") { gateway.gateway.dispatcher.waitingSubmitters == 1 }
            #expect(try await gateway.lease(token: node.token, wait: 0.2).isEmpty, "no second job")
            #expect(try await gateway.complete(leased[0], token: node.token, content: "the one answer").status == 200)
            let answer = try await retry.value
            #expect(answer.status == 200)
            #expect(answer.text.contains("the one answer"))
            #expect(try await gateway.store.jobs(state: nil, limit: 10).count == 1)

            // Usage: both requests are counted (the first as cancelled), the job's tokens once.
            func usage() async throws -> UsageSummary? { try await gateway.store.usageSummary().first { $0.model == "local" } }
            #expect(try await eventually { try await usage()?.requests == 2 })
            #expect(try await usage()?.completionTokens == 3)

            // A later retry gets the same outcome at once, its tokens not counted again; the same
            // key with another body is refused.
            let again = try await gateway.chat(model: "local", headers: Self.key)
            #expect(again.status == 200 && again.text.contains("the one answer"))
            #expect(try await eventually { try await usage()?.requests == 3 })
            #expect(try await usage()?.completionTokens == 3, "the job's tokens count once")
            let other = try await gateway.chat(model: "local", extra: #","temperature":1"#, headers: Self.key)
            #expect(other.status == 400 && other.errorMessage?.contains("different request") == true, "\(other.text)")
            // Keys are per API key: another client's same key is another job.
            let stranger = try await gateway.gateway.credentials.issueKey(name: "stranger")
            let theirs = Task { try await gateway.chat(model: "local", key: stranger.secret, headers: Self.key) }
            #expect(try await gateway.lease(token: node.token).count == 1, "another key's request is its own job")
            theirs.cancel()
            _ = await theirs.result
        }
    }

    @Test func anAbandonedJobIsCancelledAfterTheGrace() async throws {
        let configuration = Gateway.Configuration(dispatch: .init(idempotentRetryGrace: .milliseconds(400)))
        try await withGateway(configuration: configuration, inProcess: true) { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["local"])
            let first = Task { try await gateway.chat(model: "local", headers: Self.key) }
            let leased = try await gateway.lease(token: node.token)
            first.cancel()
            _ = await first.result
            #expect(
                try await eventually {
                    try await gateway.store.job(leased[0].jobID)?.errorCode == JobErrorCode.cancelled
                }, "no retry came within the grace: the job is cancelled")
            // Without the header, a disconnect cancels at once (as before).
            let plain = Task { try await gateway.chat(model: "local") }
            let second = try await gateway.lease(token: node.token)
            plain.cancel()
            _ = await plain.result
            #expect(try await eventually(timeout: .seconds(2)) { try await gateway.store.job(second[0].jobID)?.state == .failed })
        }
    }

    @Test func aBadKeyIsRefused() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            let answer = try await gateway.chat(headers: [("Idempotency-Key", String(repeating: "k", count: 256))])
            #expect(answer.status == 400 && answer.errorMessage?.contains("Idempotency-Key") == true)
        }
    }
}
