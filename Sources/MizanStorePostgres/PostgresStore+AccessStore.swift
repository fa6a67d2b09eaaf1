import Foundation
import MizanCore
import MizanStore

/// Keys, usage and sign-outs, kept by the ``PostgresAccessLedger``; keys' counters by ``PostgresKeyCounters``.
extension PostgresStore: AccessStore {
    /// Stores a new key under the hash of its secret.
    public func createAPIKey(_ key: APIKey, hash: Data) async throws -> APIKey {
        try await accessLedger.createAPIKey(key, hash: hash)
    }

    /// Every key, oldest first.
    public func apiKeys() async throws -> [APIKey] {
        try await accessLedger.apiKeys()
    }

    /// Revokes a key.
    public func revokeAPIKey(_ id: String, now: Date) async throws -> APIKey {
        try await accessLedger.revokeAPIKey(id, now: now)
    }

    /// Renames a key and replaces its policy.
    public func updateAPIKey(_ id: String, name: String, policy: KeyPolicy) async throws -> APIKey {
        try await accessLedger.updateAPIKey(id, name: name, policy: policy)
    }

    /// The key whose secret has this hash, if any.
    public func apiKey(hash: Data) async throws -> APIKey? {
        try await accessLedger.apiKey(hash: hash)
    }

    /// Records a request's usage.
    /// - Returns: Whether the record's tokens were counted.
    @discardableResult
    public func recordUsage(_ record: UsageRecord) async throws -> Bool {
        try await accessLedger.recordUsage(record)
    }

    /// Records the usage with the end of the admission in the key's next batch of counter
    /// changes: one statement writes the batch's records and counters. A record of an
    /// idempotent job (whose tokens may have been counted already) goes in two steps.
    @discardableResult
    public func recordUsage(_ record: UsageRecord, ending admission: KeyAdmissionEnd?) async throws -> Bool {
        guard let admission, PostgresKeyCounters.writesTogether(record, ending: admission) else {
            return try await recordUsageThenEnd(record, ending: admission)
        }
        try await counters.record(record, ending: admission)
        return true
    }

    /// Records the usage with the end of the admission in the key's next batch of counter
    /// changes without waiting for it: the next change of the key on this instance (a next
    /// request's admission) takes them into its statement, or they go on their own after a
    /// moment. Failures are logged and passed to `failed`. The store waits for them when it
    /// shuts down.
    public func recordUsageSoon(
        _ record: UsageRecord, ending admission: KeyAdmissionEnd, failed: @escaping @Sendable (UsageWriteFailure) -> Void
    ) async throws {
        guard PostgresKeyCounters.writesTogether(record, ending: admission) else {
            try await recordUsage(record, ending: admission)
            return
        }
        counters.recordSoon(record, ending: admission, failed: failed)
    }

    /// Waits until the usage records and ends of admissions queued by
    /// ``recordUsageSoon(_:ending:failed:)`` are written, or `timeout` has passed.
    /// - Parameter timeout: How long to wait at most.
    /// - Returns: Whether they are.
    public func usageWritten(timeout: Duration) async -> Bool {
        await counters.written(timeout: timeout)
    }

    /// Usage totals grouped as `query` asks.
    public func usage(_ query: UsageQuery) async throws -> [UsageRow] {
        try await accessLedger.usage(query)
    }

    /// Usage totals per key, model and endpoint.
    public func usageSummary() async throws -> [UsageSummary] {
        try await accessLedger.usageSummary()
    }

    /// Changes a key's counters by a compare-and-swap of its row, exact across instances.
    public func changeKeyCounters<T: Sendable>(_ keyID: String, _ change: @escaping @Sendable (inout KeyCounters) -> T) async throws -> T {
        try await counters.change(keyID, change)
    }

    /// A key's counters as stored.
    public func keyCounters(_ keyID: String) async throws -> KeyCounters {
        try await counters.counters(keyID)
    }

    /// Whether a usage record of this request, made at `createdAt`, is stored.
    public func usageRecorded(requestID: String, createdAt: Date) async throws -> Bool {
        try await accessLedger.usageRecorded(requestID: requestID, createdAt: createdAt)
    }

    /// Records a console session as signed out until it expires.
    public func endConsoleSession(_ id: String, expires: Date, now: Date) async throws {
        try await accessLedger.endConsoleSession(id, expires: expires, now: now)
    }

    /// Whether a console session was signed out.
    public func isConsoleSessionEnded(_ id: String) async throws -> Bool {
        try await accessLedger.isConsoleSessionEnded(id)
    }
}
