import Foundation
import Logging
import MizanCore
import MizanStore
import MizanTestSupport
import Synchronization
import Testing

@testable import MizanGateway

/// An access store that fails every write while told to: a database that is down.
final class FailingAccessStore: AccessStore {
    let base: InMemoryStore
    let failing = Atomic<Bool>(false)
    let failures = Atomic<Int>(0)

    init(_ base: InMemoryStore) { self.base = base }

    private func check() throws {
        guard failing.load(ordering: .acquiring) else { return }
        failures.wrappingAdd(1, ordering: .relaxed)
        throw MizanError(.storeUnavailable, "The store is down (test).")
    }

    func createAPIKey(_ key: APIKey, hash: Data) async throws -> APIKey { try await base.createAPIKey(key, hash: hash) }
    func apiKeys() async throws -> [APIKey] { try await base.apiKeys() }
    func revokeAPIKey(_ id: String, now: Date) async throws -> APIKey { try await base.revokeAPIKey(id, now: now) }
    func apiKey(hash: Data) async throws -> APIKey? { try await base.apiKey(hash: hash) }
    func recordUsage(_ record: UsageRecord) async throws -> Bool {
        try check()
        return try await base.recordUsage(record)
    }
    func usageSummary() async throws -> [UsageSummary] { try await base.usageSummary() }
    func usage(_ query: UsageQuery) async throws -> [UsageRow] { try await base.usage(query) }
    func updateAPIKey(_ id: String, name: String, policy: KeyPolicy) async throws -> APIKey {
        try await base.updateAPIKey(id, name: name, policy: policy)
    }
    func changeKeyCounters<T: Sendable>(_ keyID: String, _ change: @escaping @Sendable (inout KeyCounters) -> T) async throws -> T {
        try check()
        return try await base.changeKeyCounters(keyID, change)
    }
    func keyCounters(_ keyID: String) async throws -> KeyCounters { try await base.keyCounters(keyID) }
    func endConsoleSession(_ id: String, expires: Date, now: Date) async throws {
        try await base.endConsoleSession(id, expires: expires, now: now)
    }
    func isConsoleSessionEnded(_ id: String) async throws -> Bool { try await base.isConsoleSessionEnded(id) }
    func usageRecorded(requestID: String, createdAt: Date) async throws -> Bool {
        try check()
        return try await base.usageRecorded(requestID: requestID, createdAt: createdAt)
    }
}

@Suite("Usage is never lost when the store blips")
struct UsageSpoolTests {
    /// Requests end while the store fails: their records and the ends of their key's
    /// admissions wait in the spool, the gateway says it is full, and once the store answers
    /// every record is stored and the budget counts every token, exactly.
    @Test func usageWrittenWhileTheStoreFailsIsStoredOnceItAnswers() async throws {
        let memory = InMemoryStore()
        let store = FailingAccessStore(memory)
        let key = try await memory.createAPIKey(
            APIKey(name: "k", prefix: "mzn_sk_test", createdAt: Date(), policy: KeyPolicy(budget: .init(tokens: 10_000, period: .total))),
            hash: Data([1, 2, 3]))
        let spool = UsageSpool(access: store, capacity: 3, logger: Logger(label: "test"))
        let recorder = RequestRecorder(
            admissions: Admissions(access: store, spool: spool, metrics: GatewayMetrics(), logger: Logger(label: "test")),
            metrics: GatewayMetrics(), activity: RecentActivity(), logger: Logger(label: "test"))
        store.failing.store(true, ordering: .releasing)
        for index in 0..<4 {
            let admitted = try await memory.admit(key, holdID: "h\(index)", holdUntil: Date().addingTimeInterval(60), now: Date())
            guard case .admitted(let hold, _) = admitted else { throw HarnessError("not admitted") }
            let record = RequestRecord()
            record.begin(requestID: "r\(index)")
            record.authenticated(apiKeyID: key.id)
            record.asked(.init(endpoint: .chatCompletions, model: "m"))
            record.model(.known)
            record.served(RequestOutcome(servedBy: .route("route"), usage: TokenUsage(promptTokens: 10, completionTokens: 5)))
            record.limits(headers: [], admission: KeyAdmissionEnd(key: key, holdID: hold, reserved: 0, admittedAt: Date()))
            await recorder.finish(method: "POST", path: "/v1/chat/completions", status: 200, started: .now, record: record)
        }
        #expect(spool.pending == 4 && spool.isFull, "every record waits; the spool is over its capacity of 3")
        #expect(try await memory.usageSummary().isEmpty)
        let running = Task { try await spool.run() }
        try await Task.sleep(for: .milliseconds(300))
        #expect(spool.pending == 4, "nothing is dropped while the store still fails")
        store.failing.store(false, ordering: .releasing)
        #expect(try await eventually(timeout: .seconds(10)) { spool.pending == 0 })
        #expect(!spool.isFull)
        let summary = try await memory.usageSummary()
        #expect(summary.map(\.requests) == [4] && summary.first?.completionTokens == 20 && summary.first?.promptTokens == 40)
        let counters = try await memory.keyCounters(key.id)
        #expect(KeyLimiter.periodTokens(counters, policy: key.policy, now: Date()) == 60, "the budget counts every token once")
        #expect(store.failures.load(ordering: .relaxed) > 4, "the writes were tried while the store failed")
        running.cancel()
        _ = await running.result
    }
}
