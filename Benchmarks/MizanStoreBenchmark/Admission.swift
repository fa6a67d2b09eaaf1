import Foundation
import MizanCore
import MizanStore
import MizanStorePostgres
import Synchronization

// A counted key's admission and end, in the store alone: 32 tasks each run requests of one key
// — admit, then record the usage ending the admission — against the same tasks recording the
// usage of an unlimited key. CPU per request is this process's (user + system), so that the
// figure shows what the store's client work costs without the HTTP path around it.

/// This process's CPU time so far, in microseconds.
func processCPUMicroseconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let user = Double(usage.ru_utime.tv_sec) * 1e6 + Double(usage.ru_utime.tv_usec)
    let system = Double(usage.ru_stime.tv_sec) * 1e6 + Double(usage.ru_stime.tv_usec)
    return user + system
}

/// Numbers the requests of a run across its tasks.
final class RequestCounter: Sendable {
    private let count = Atomic<Int>(0)
    func take() -> Int { count.add(1, ordering: .relaxed).newValue }
}

struct AdmissionRun {
    var perSecond: Double
    var cpuMicroseconds: Double
    var statements: Double
}

/// Runs `requests` requests on `tasks` tasks; each is admitted first when `limited`.
func admissionRun(
    _ store: any AccessStore, statements: StatementCounter?, key: APIKey, limited: Bool, tasks: Int, requests: Int
) async throws -> AdmissionRun {
    let next = RequestCounter()
    let cpu0 = processCPUMicroseconds()
    let statements0 = statements?.value ?? 0
    let start = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<tasks {
            group.addTask {
                while next.take() <= requests {
                    var ending: KeyAdmissionEnd?
                    if limited {
                        let holdID = String(UInt64.random(in: 0...UInt64.max), radix: 36)
                        guard
                            case .admitted = try await store.admit(
                                key, holdID: holdID, holdUntil: Date().addingTimeInterval(330), now: Date())
                        else { throw MizanError(.internalError, "the benchmark's limits are never reached") }
                        ending = KeyAdmissionEnd(key: key, holdID: holdID)
                    }
                    let record = UsageRecord(
                        requestID: UUID().uuidString, apiKeyID: key.id, model: "bench", servedBy: "route", status: 200,
                        latencyMilliseconds: 1, usage: TokenUsage(promptTokens: 10, completionTokens: 16, source: .provider),
                        createdAt: Date())
                    // As the gateway ends a request: a limited key's record goes with the key's next change.
                    if let ending {
                        try await store.recordUsageSoon(record, ending: ending) { _ in }
                    } else {
                        try await store.recordUsage(record)
                    }
                }
            }
        }
        try await group.waitForAll()
    }
    if let postgres = store as? PostgresStore { _ = await postgres.usageWritten(timeout: .seconds(30)) }
    let elapsed = seconds(ContinuousClock.now - start)
    return AdmissionRun(
        perSecond: Double(requests) / elapsed, cpuMicroseconds: (processCPUMicroseconds() - cpu0) / Double(requests),
        statements: Double((statements?.value ?? 0) - statements0) / Double(requests))
}

/// The admission figures of one store: pairs of runs, limited and unlimited alternating, the
/// median pair by CPU per request.
func admissionFigures(_ name: String, _ store: any AccessStore, statements: StatementCounter?) async throws {
    let policy = KeyPolicy(
        limits: .init(requestsPerMinute: 1_000_000_000, tokensPerMinute: 1_000_000_000_000, concurrentRequests: 1_000_000),
        budget: .init(tokens: 1_000_000_000_000, period: .month))
    let limited = try await store.createAPIKey(
        APIKey(name: "limited", prefix: "mz-l", createdAt: Date(), policy: policy), hash: Data(UUID().uuidString.utf8))
    let unlimited = try await store.createAPIKey(
        APIKey(name: "unlimited", prefix: "mz-u", createdAt: Date()), hash: Data(UUID().uuidString.utf8))
    let requests = options.quick ? 2_000 : 20_000
    var pairs: [(limited: AdmissionRun, unlimited: AdmissionRun)] = []
    _ = try await admissionRun(store, statements: statements, key: limited, limited: true, tasks: 32, requests: requests / 4)
    for round in 0..<5 {
        let first = round % 2 == 0
        let a = try await admissionRun(
            store, statements: statements, key: first ? unlimited : limited, limited: !first, tasks: 32, requests: requests)
        let b = try await admissionRun(
            store, statements: statements, key: first ? limited : unlimited, limited: first, tasks: 32, requests: requests)
        pairs.append(first ? (b, a) : (a, b))
    }
    pairs.sort { $0.limited.cpuMicroseconds / $0.unlimited.cpuMicroseconds < $1.limited.cpuMicroseconds / $1.unlimited.cpuMicroseconds }
    let mid = pairs[pairs.count / 2]
    add(
        "key limits", "\(name) admission + end, 32 tasks: client CPU per request", "us", mid.limited.cpuMicroseconds,
        baseline: mid.unlimited.cpuMicroseconds, "usage record of an unlimited key")
    add(
        "key limits", "\(name) admission + end, 32 tasks: requests/s", "/s", mid.limited.perSecond,
        baseline: mid.unlimited.perSecond, "usage record of an unlimited key")
    if statements != nil {
        add(
            "key limits", "\(name) admission + end, 32 tasks: statements per request", "", mid.limited.statements,
            baseline: mid.unlimited.statements, "usage record of an unlimited key")
    }
}
