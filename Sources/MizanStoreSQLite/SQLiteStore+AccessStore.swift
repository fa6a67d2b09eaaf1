import Foundation
import MizanCore
import MizanStore

/// API keys, their counters and usage, answered by the access ledger (``SQLiteAccessLedger``).
extension SQLiteStore: AccessStore {
    /// Records a new key by its hash.
    public func createAPIKey(_ key: APIKey, hash: Data) async throws -> APIKey {
        try await accessLedger.createAPIKey(key, hash: hash)
    }

    /// Every key, oldest first.
    public func apiKeys() async throws -> [APIKey] {
        try await accessLedger.apiKeys()
    }

    /// Revokes a key (a second revocation keeps the first time).
    public func revokeAPIKey(_ id: String, now: Date) async throws -> APIKey {
        try await accessLedger.revokeAPIKey(id, now: now)
    }

    /// Renames a key and sets its policy.
    public func updateAPIKey(_ id: String, name: String, policy: KeyPolicy) async throws -> APIKey {
        try await accessLedger.updateAPIKey(id, name: name, policy: policy)
    }

    /// The key with `hash`.
    public func apiKey(hash: Data) async throws -> APIKey? {
        try await accessLedger.apiKey(hash: hash)
    }

    /// Runs `change` on a key's counters (in memory; written to the file behind).
    public func changeKeyCounters<T: Sendable>(_ keyID: String, _ change: @escaping @Sendable (inout KeyCounters) -> T) async throws -> T {
        try await accessLedger.changeKeyCounters(keyID, change)
    }

    /// A key's counters as they stand.
    public func keyCounters(_ keyID: String) async throws -> KeyCounters {
        try await accessLedger.keyCounters(keyID)
    }

    /// A key's counters as the file holds them (for tests: the store answers from memory).
    package func storedKeyCounters(_ keyID: String) async throws -> KeyCounters {
        try await accessLedger.storedKeyCounters(keyID)
    }

    /// Records a request's usage; an idempotent job's tokens count on its first record only.
    /// - Returns: Whether the record counted its tokens.
    @discardableResult
    public func recordUsage(_ record: UsageRecord) async throws -> Bool {
        try await accessLedger.recordUsage(record)
    }

    /// Records the usage and, in the same transaction, writes the key's counters with the
    /// admission ended (they change here first: nothing waits for the file to admit).
    /// - Returns: Whether the record counted its tokens.
    @discardableResult
    public func recordUsage(_ record: UsageRecord, ending admission: KeyAdmissionEnd?) async throws -> Bool {
        try await accessLedger.recordUsage(record, ending: admission)
    }

    /// Ends the admission in memory at once, and writes the record and the key's counters with
    /// the next write transaction (or on their own 2 ms later) without waiting for them; a
    /// failure is logged and told to `failed`.
    public func recordUsageSoon(
        _ record: UsageRecord, ending admission: KeyAdmissionEnd, failed: @escaping @Sendable (UsageWriteFailure) -> Void
    ) async throws {
        try await accessLedger.recordUsageSoon(record, ending: admission, failed: failed)
    }

    /// Whether a usage record of `requestID` at `createdAt` exists.
    public func usageRecorded(requestID: String, createdAt: Date) async throws -> Bool {
        try await accessLedger.usageRecorded(requestID: requestID, createdAt: createdAt)
    }

    /// Usage totals, filtered and grouped as `query` asks.
    public func usage(_ query: UsageQuery) async throws -> [UsageRow] {
        try await accessLedger.usage(query)
    }

    /// Usage totals by key, model and endpoint.
    public func usageSummary() async throws -> [UsageSummary] {
        try await accessLedger.usageSummary()
    }

    /// Records a console session signed out until it expires.
    public func endConsoleSession(_ id: String, expires: Date, now: Date) async throws {
        try await accessLedger.endConsoleSession(id, expires: expires, now: now)
    }

    /// Whether a console session was signed out.
    public func isConsoleSessionEnded(_ id: String) async throws -> Bool {
        try await accessLedger.isConsoleSessionEnded(id)
    }
}
