import Foundation
import MizanCore
import MizanDispatch
import MizanStore
import MizanStoreTesting

/// What one agent-served request costs a store, in statements: the job accepted, leased by a
/// node, completed and seen finished through a `Dispatcher`, and its usage recorded, as the
/// gateway does for a request. A test holds a store to its count, so that it cannot grow
/// unnoticed.
public enum StatementBudget {
    /// The statements per job over `jobs` job lives, after one to warm up (prepared
    /// statements, caches). The dispatcher's clock is held still, so that what a store writes
    /// at most once a second (a node's sign of life at a lease) is written once, in the warm-up:
    /// the count does not depend on how fast the machine runs the lives.
    /// - Parameters:
    ///   - store: The store.
    ///   - counter: Where the store counts its statements.
    ///   - jobs: How many job lives to average over.
    /// - Returns: Statements per job.
    public static func perJob(store: some DispatchStore & AccessStore, counter: StatementCounter, jobs: Int = 20) async throws -> Double {
        let start = Date()
        let dispatcher = Dispatcher(store: store, now: { start })
        let enrollment = try await dispatcher.createNode(name: "statement-budget")
        let registration = try await dispatcher.register(
            registrationToken: enrollment.registrationToken, report: NodeReport(models: ["budget-model"], maxConcurrency: 4))
        func life() async throws {
            let pending = try await dispatcher.accept(
                DispatchRequest(model: "budget-model", body: Data(#"{"model":"budget-model","messages":[]}"#.utf8), apiKeyID: "budget-key"))
            let leased = try await dispatcher.lease(for: registration.node, limit: 1, wait: .seconds(5))
            guard let lease = leased.first?.lease else { throw ConformanceFailure("the job was not leased", location: "StatementBudget") }
            try await dispatcher.complete(
                lease, result: Data(#"{"object":"chat.completion"}"#.utf8), usage: TokenUsage(promptTokens: 3, completionTokens: 5))
            let job = try await dispatcher.awaitFinish(pending)
            guard job.state == .succeeded else { throw ConformanceFailure("the job ended \(job.state)", location: "StatementBudget") }
            _ = try await store.recordUsage(
                UsageRecord(
                    requestID: job.requestID, apiKeyID: "budget-key", model: job.model,
                    servedBy: ServedBy.node(registration.node.id).recorded,
                    status: 200,
                    latencyMilliseconds: 1, usage: job.usage, createdAt: Date()))
        }
        try await life()
        let before = counter.value
        for _ in 0..<jobs { try await life() }
        return Double(counter.value - before) / Double(jobs)
    }
}
