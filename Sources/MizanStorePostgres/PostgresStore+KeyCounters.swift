import Foundation
import MizanCore
import MizanStore
import PostgresNIO

/// A key's counters on PostgreSQL: batched changes applied by a compare-and-swap of the key's
/// row, exact across instances, with the batch's usage records in the same statement.
extension PostgresStore {
    public func changeKeyCounters<T: Sendable>(_ keyID: String, _ change: @escaping @Sendable (inout KeyCounters) -> T) async throws -> T {
        try await keyCounterBatcher.change(keyID, apply: { try await self.swapKeyCounters($0, recording: $1, $2) }, change)
    }

    /// Records the usage with the end of the admission in the key's next batch of counter
    /// changes: one statement writes the batch's records and counters. A record of an
    /// idempotent job (whose tokens may have been counted already) goes in two steps.
    @discardableResult
    public func recordUsage(_ record: UsageRecord, ending admission: KeyAdmissionEnd?) async throws -> Bool {
        guard let admission, record.jobID == nil, record.apiKeyID == admission.key.id else {
            return try await recordUsageThenEnd(record, ending: admission)
        }
        let policy = admission.key.policy
        let now = Date()
        try await keyCounterBatcher.change(
            admission.key.id, attachment: record, apply: { try await self.swapKeyCounters($0, recording: $1, $2) }
        ) { counters in
            KeyLimiter.finish(&counters, policy: policy, holdID: admission.holdID, tokens: record.tokens, now: now)
        }
        return true
    }

    /// Applies a batch of changes to a key's counters by a compare-and-swap: written only when
    /// their version is still the one the batch started from; either way the statement answers
    /// the version and counters it found, so that a batch that lost a race to another instance
    /// starts again from them — one statement per attempt, one attempt when no other instance
    /// came between. The batch's usage records are inserted by its first swap, won or lost.
    ///
    /// A version is a random number each write draws, never a count, so that a batch may start
    /// from the counters the batch before it is writing (kept here as soon as it sends them)
    /// without waiting for its answer: its swap can only win if exactly that write won — a
    /// count could have been reached by another instance's write too. When the first loses, the
    /// second loses as well and starts again from what its statement found.
    func swapKeyCounters(
        _ keyID: String, recording records: [UsageRecord], _ changes: @escaping @Sendable (inout KeyCounters) -> Void
    ) async throws {
        var known = keyCounterCache.withLock { $0[keyID] }
        var fresh = false
        // The usage records go with the first swap (whether it wins or not).
        var unrecorded = records
        for _ in 0..<64 {
            guard let (version, start) = known else {
                let rows = try await client.prepared(
                    ReadCounters.self, "SELECT counters_version, counters FROM mizan_api_keys WHERE id = \(keyID)", logger: logger
                ) { try $0.decode((Int64, String?).self) }
                guard let row = rows.first else { throw MizanError(.notFound, "No API key with id \(keyID).") }
                known = (row.0, KeyCounters.decoded(row.1))
                fresh = true
                continue
            }
            var counters = start
            changes(&counters)
            if counters == start, unrecorded.isEmpty {
                // Nothing to write (refusals): answered on counters just read, never on a copy
                // another instance may have changed since, or a write still under way.
                if fresh { return }
                known = nil
                continue
            }
            var next = Int64.random(in: .min ... .max)
            while next == version { next = Int64.random(in: .min ... .max) }
            // The next batch may start from these now.
            keyCounterCache.withLock { $0[keyID] = (next, counters) }
            let rows: [(Int64?, Int64, String?)]
            do {
                rows = try await swap(keyID, from: version, to: counters, as: next, recording: unrecorded)
            } catch {
                forget(keyID, unless: next)
                throw error
            }
            unrecorded = []
            guard let row = rows.first else {
                keyCounterCache.withLock { $0[keyID] = nil }
                throw MizanError(.notFound, "No API key with id \(keyID).")
            }
            if row.0 != nil { return }
            // Another instance's change (or a lost write this batch was chained on) came first:
            // start again from what the statement saw (or, when its snapshot predates that
            // change, from a fresh read).
            forget(keyID, unless: next)
            known = row.1 == version ? nil : (row.1, KeyCounters.decoded(row.2))
            fresh = known != nil
        }
        throw MizanError(.storeUnavailable, "The key's counters kept changing under this gateway; try again.")
    }

    /// Drops the counters kept for a key when they are the ones of the write `version` that did
    /// not win (a later batch's are left: that batch finds out by itself).
    private func forget(_ keyID: String, unless version: Int64) {
        keyCounterCache.withLock { cache in
            if cache[keyID]?.version == version { cache[keyID] = nil }
        }
    }

    /// One compare-and-swap of a key's counters to version `next`, inserting `records` in the
    /// same statement: the version written (`nil` when another change came first), then the
    /// version and counters the statement found; no row for an unknown key. A batch without
    /// records (the admissions) runs the statement without the insert, the cheaper for the server.
    private func swap(
        _ keyID: String, from version: Int64, to counters: KeyCounters, as next: Int64, recording records: [UsageRecord]
    ) async throws -> [(Int64?, Int64, String?)] {
        let swap = """
            UPDATE mizan_api_keys SET counters = $1, counters_version = $4
            WHERE id = $2 AND counters_version = $3
            RETURNING counters_version
            """
        // The counters found are needed only by a swap that lost (they are the next attempt's start).
        let answer = """
            SELECT s.counters_version, k.counters_version, CASE WHEN s.counters_version IS NULL THEN k.counters END
            FROM mizan_api_keys k LEFT JOIN swapped s ON true WHERE k.id = $2
            """
        var binds = PostgresBindings(capacity: 15)
        binds.append(counters.encoded())
        binds.append(keyID)
        binds.append(version)
        binds.append(next)
        let decode = { (row: PostgresRow) in try row.decode((Int64?, Int64, String?).self) }
        guard !records.isEmpty else {
            return try await client.prepared(
                SwapCounters.self, PostgresQuery(unsafeSQL: "WITH swapped AS (\(swap)) \(answer)", binds: binds), logger: logger, decode)
        }
        // The records' arrays are $5 to $15.
        Self.appendUsageArrays(records, to: &binds)
        return try await client.prepared(
            SwapCountersRecording.self,
            PostgresQuery(
                unsafeSQL: "WITH swapped AS (\(swap)), recorded AS (\(Self.insertUsageArrays(from: 5))) \(answer)", binds: binds),
            logger: logger, decode)
    }

    public func keyCounters(_ keyID: String) async throws -> KeyCounters {
        let rows = try await client.prepared(
            ReadCounters.self, "SELECT counters_version, counters FROM mizan_api_keys WHERE id = \(keyID)", logger: logger
        ) { try $0.decode((Int64, String?).self) }
        guard let row = rows.first else { throw MizanError(.notFound, "No API key with id \(keyID).") }
        return KeyCounters.decoded(row.1)
    }
}

private enum ReadCounters {}
private enum SwapCounters {}
private enum SwapCountersRecording {}
