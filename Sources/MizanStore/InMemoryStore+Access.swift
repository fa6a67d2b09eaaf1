import Foundation
import MizanCore

extension InMemoryStore: AccessStore {
    public func usageRecorded(requestID: String, createdAt: Date) async throws -> Bool {
        access.withLock { $0.recorded.contains("\(requestID)|\(createdAt.timeIntervalSinceReferenceDate)") }
    }

    public func endConsoleSession(_ id: String, expires: Date, now: Date) async throws {
        access.withLock { access in
            if access.endedSessions.count > 10_000 { access.endedSessions = access.endedSessions.filter { $0.value > now } }
            access.endedSessions[id] = expires
        }
    }

    public func isConsoleSessionEnded(_ id: String) async throws -> Bool {
        access.withLock { $0.endedSessions[id] != nil }
    }

    public func createAPIKey(_ key: APIKey, hash: Data) async throws -> APIKey {
        try access.withLock { access in
            guard access.keys[key.id] == nil, access.keyHashes[hash] == nil else {
                throw MizanError(.conflict, "The API key exists.")
            }
            access.keys[key.id] = key
            access.keyHashes[hash] = key.id
            return key
        }
    }

    public func apiKeys() async throws -> [APIKey] {
        access.withLock { $0.keys.values.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) } }
    }

    public func revokeAPIKey(_ id: String, now: Date) async throws -> APIKey {
        try access.withLock { access in
            guard var key = access.keys[id] else { throw MizanError(.notFound, "No API key with id \(id).") }
            if key.revokedAt == nil { key.revokedAt = now }
            access.keys[id] = key
            return key
        }
    }

    public func updateAPIKey(_ id: String, name: String, policy: KeyPolicy) async throws -> APIKey {
        try access.withLock { access in
            guard var key = access.keys[id] else { throw MizanError(.notFound, "No API key with id \(id).") }
            key.name = name
            key.policy = policy
            access.keys[id] = key
            return key
        }
    }

    public func changeKeyCounters<T: Sendable>(_ keyID: String, _ change: @escaping @Sendable (inout KeyCounters) -> T) async throws -> T {
        try access.withLock { access in
            guard access.keys[keyID] != nil else { throw MizanError(.notFound, "No API key with id \(keyID).") }
            return change(&access.counters[keyID, default: KeyCounters()])
        }
    }

    public func keyCounters(_ keyID: String) async throws -> KeyCounters {
        try access.withLock { access in
            guard access.keys[keyID] != nil else { throw MizanError(.notFound, "No API key with id \(keyID).") }
            return access.counters[keyID] ?? KeyCounters()
        }
    }

    public func apiKey(hash: Data) async throws -> APIKey? {
        access.withLock { access in access.keyHashes[hash].flatMap { access.keys[$0] } }
    }

    @discardableResult
    public func recordUsage(_ record: UsageRecord) async throws -> Bool {
        access.withLock { access in
            let key = UsageKey(apiKeyID: record.apiKeyID, model: record.model, endpoint: record.endpoint)
            var summary =
                access.usage[key]
                ?? UsageSummary(
                    apiKeyID: record.apiKeyID, model: record.model, endpoint: record.endpoint, requests: 0, promptTokens: 0,
                    completionTokens: 0)
            // Sums saturate: a count is bounded when it is read, but sums run for the process's life.
            summary.requests = summary.requests.addingSaturated(1)
            let counted = access.counts(record)
            let usage = counted ? record.usage : nil
            summary.promptTokens = summary.promptTokens.addingSaturated(max(0, usage?.promptTokens ?? 0))
            summary.completionTokens = summary.completionTokens.addingSaturated(max(0, usage?.completionTokens ?? 0))
            access.usage[key] = summary
            access.records += 1
            access.recent.append(
                (
                    record.apiKeyID, record.model, record.endpoint, record.createdAt, max(0, usage?.promptTokens ?? 0),
                    max(0, usage?.completionTokens ?? 0), record.priority
                ))
            if access.recent.count > access.recentLimit { access.recent.removeFirst(access.recent.count / 10) }
            access.remember(record)
            return counted
        }
    }

    /// Sums the store's most recent records (at most its `maxUsageRecords`; the store
    /// is ephemeral, and its totals in ``usageSummary()`` cover every record).
    public func usage(_ query: UsageQuery) async throws -> [UsageRow] {
        let recent = access.withLock { $0.recent }
        return UsageRow.summing(recent, query)
    }

    public func usageSummary() async throws -> [UsageSummary] {
        access.withLock { access in
            access.usage.values.sorted(by: UsageSummary.precedes)
        }
    }
}

struct UsageKey: Hashable {
    var apiKeyID: String?
    var model: String
    var endpoint: Endpoint
}

/// API keys and usage sums of an ``InMemoryStore``.
struct AccessState {
    var keys: [String: APIKey] = [:]
    var counters: [String: KeyCounters] = [:]
    var keyHashes: [Data: String] = [:]
    var usage: [UsageKey: UsageSummary] = [:]
    var records = 0
    /// The most recent records, for queries by time (at most ``recentLimit``; a tenth of the
    /// oldest is dropped when it is reached).
    var recent: [(apiKeyID: String?, model: String, endpoint: Endpoint, at: Date, prompt: Int, completion: Int, priority: PriorityClass?)] =
        []
    /// The most records ``recent`` and ``recorded`` keep.
    let recentLimit: Int
    /// The idempotent jobs whose tokens were counted, oldest first, at most 100,000.
    var countedJobs: Set<JobID> = []
    var countedOrder: [JobID] = []
    /// Console sessions signed out, until they would have expired.
    var endedSessions: [String: Date] = [:]
    /// The latest records' identities (request id and time), at most ``recentLimit``.
    var recorded: Set<String> = []
    var recordedOrder: [String] = []

    init(recentLimit: Int) {
        self.recentLimit = recentLimit
    }

    /// Remembers a record's identity (for ``InMemoryStore/usageRecorded(requestID:createdAt:)``).
    mutating func remember(_ record: UsageRecord) {
        let identity = "\(record.requestID)|\(record.createdAt.timeIntervalSinceReferenceDate)"
        guard recorded.insert(identity).inserted else { return }
        recordedOrder.append(identity)
        if recordedOrder.count > recentLimit {
            let dropped = recordedOrder.count / 10
            for old in recordedOrder.prefix(dropped) { recorded.remove(old) }
            recordedOrder.removeFirst(dropped)
        }
    }

    /// Whether a record's tokens count: not when its job's were counted already.
    mutating func counts(_ record: UsageRecord) -> Bool {
        guard let job = record.jobID else { return true }
        guard countedJobs.insert(job).inserted else { return false }
        countedOrder.append(job)
        if countedOrder.count > 100_000 {
            for old in countedOrder.prefix(10_000) { countedJobs.remove(old) }
            countedOrder.removeFirst(10_000)
        }
        return true
    }
}
