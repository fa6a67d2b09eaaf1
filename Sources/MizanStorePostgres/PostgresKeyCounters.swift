import Foundation
import Logging
import MizanCore
import MizanStore
import PostgresNIO
import Synchronization

/// Keys' counters (the state of their limits): batched changes applied by a compare-and-swap
/// of the key's row, exact across instances, with the batch's usage records in the same
/// statement.
///
/// Owns the counters as this instance last read or wrote them, with their version, so that
/// a change costs one statement when no other instance came between, and the batches of
/// changes that arrive together.
final class PostgresKeyCounters: Sendable {
    private let context: PostgresStoreContext
    private var client: StoreClient { context.client }
    private var logger: Logger { context.logger }
    /// The counters of keys as this instance last read or wrote them, with their version.
    private let cache = Mutex<[String: (version: Int64, counters: KeyCounters)]>([:])
    /// The changes of a key's counters that arrive together, written together.
    private let batcher = KeyCounterBatcher<UsageRecord>()

    /// Creates the counters' keeper over the store's shared context.
    init(context: PostgresStoreContext) {
        self.context = context
    }

    /// Whether `record` can be written with the end of `admission` in one statement: a record
    /// of the admitted key, of no idempotent job (whose tokens may have been counted already).
    static func writesTogether(_ record: UsageRecord, ending admission: KeyAdmissionEnd) -> Bool {
        record.jobID == nil && record.apiKeyID == admission.key.id
    }

    /// Changes a key's counters with the other changes of the key that arrive together.
    /// - Returns: What `change` returns.
    /// - Throws: ``MizanError`` `notFound` for an unknown key; a database error.
    func change<T: Sendable>(_ keyID: String, _ change: @escaping @Sendable (inout KeyCounters) -> T) async throws -> T {
        try await batcher.change(keyID, apply: { try await self.applyBatch($0, recording: $1, $2) }, change)
    }

    /// Records the usage with the end of the admission in the key's next batch of counter
    /// changes: one statement writes the batch's records and counters. Only for a record that
    /// ``writesTogether(_:ending:)``.
    /// - Throws: ``UsageWriteFailure`` (atomic: neither the record nor the end was applied).
    func record(_ record: UsageRecord, ending admission: KeyAdmissionEnd) async throws {
        do {
            try await batcher.change(
                admission.key.id, attachment: record, apply: { try await self.applyBatch($0, recording: $1, $2) },
                Self.end(admission, of: record))
        } catch {
            // The record and the counters go in one statement: neither was applied.
            throw UsageWriteFailure(admissionEnded: false, atomic: true, underlying: error)
        }
    }

    /// Records the usage with the end of the admission in the key's next batch of counter
    /// changes without waiting for it: the next change of the key on this instance (a next
    /// request's admission) takes them into its statement, or they go on their own after
    /// ``usageLinger``. Failures are logged and passed to `failed` (the hold lapses at its
    /// time). Only for a record that ``writesTogether(_:ending:)``.
    func recordSoon(_ record: UsageRecord, ending admission: KeyAdmissionEnd, failed: @escaping @Sendable (UsageWriteFailure) -> Void) {
        let logger = logger
        let requestID = record.requestID
        batcher.changeSoon(
            admission.key.id, attachment: record, linger: Self.usageLinger,
            apply: { try await self.applyBatch($0, recording: $1, $2) },
            done: { error in
                guard let error else { return }
                logger.warning(
                    "a limited key's usage record and the end of its admission could not be stored yet",
                    metadata: ["mizan.request.id": "\(requestID)", "mizan.error": "\(error)"])
                failed(UsageWriteFailure(admissionEnded: false, atomic: true, underlying: error))
            },
            Self.end(admission, of: record))
    }

    /// The change of a key's counters that ends `admission` with `record`'s tokens.
    private static func end(_ admission: KeyAdmissionEnd, of record: UsageRecord) -> @Sendable (inout KeyCounters) -> Void {
        let policy = admission.key.policy
        let now = Date()
        return {
            KeyLimiter.finish(
                &$0, policy: policy, holdID: admission.holdID, tokens: record.tokens, reserved: admission.reserved,
                admittedAt: admission.admittedAt, now: now)
        }
    }

    /// Waits until the usage records and ends of admissions queued by
    /// ``recordSoon(_:ending:failed:)`` are written, or `timeout` has passed.
    /// - Returns: Whether they are.
    func written(timeout: Duration) async -> Bool {
        await batcher.idle(timeout: timeout)
    }

    /// How long a deferred usage record waits for the next change of its key to go with
    /// before it is written on its own: about a client's turn-around between two requests.
    static let usageLinger: Duration = .milliseconds(2)

    /// Applies a batch of changes to a key's counters by a compare-and-swap: written only when
    /// their version is still the one the batch started from; either way the statement answers
    /// the version and counters it found, so that a batch that lost a race to another instance
    /// starts again from them — one statement per attempt, one attempt when no other instance
    /// came between (the counters this instance last wrote are kept with their version). The
    /// batch's usage records are inserted by the swap that wins, in its statement.
    func applyBatch(
        _ keyID: String, recording records: [UsageRecord], _ changes: @escaping @Sendable (inout KeyCounters) -> Void
    ) async throws {
        var known = cache.withLock { $0[keyID] }
        var fresh = false
        // The usage records go with the swap that wins, in its statement: a record is stored if
        // and only if the end of its admission is (what the usage spool relies on).
        let unrecorded = records
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
                // another instance may have changed since.
                if fresh { return }
                known = nil
                continue
            }
            let rows = try await swapOnce(keyID, from: version, to: counters, recording: unrecorded)
            guard let row = rows.first else {
                cache.withLock { $0[keyID] = nil }
                throw MizanError(.notFound, "No API key with id \(keyID).")
            }
            if let swapped = row.0 {
                cache.withLock { $0[keyID] = (swapped, counters) }
                return
            }
            // Another instance changed them first: start again from what the statement saw (or,
            // when its snapshot predates that change, from a fresh read).
            known = row.1 == version ? nil : (row.1, KeyCounters.decoded(row.2))
            fresh = known != nil
        }
        throw MizanError(.storeUnavailable, "The key's counters kept changing under this gateway; try again.")
    }

    /// One compare-and-swap of a key's counters, inserting `records` in the same statement when it wins: the
    /// version written (`nil` when another instance's change came first), then the version and
    /// counters the statement found; no row for an unknown key. A batch without records (the
    /// admissions) runs the statement without the insert, the cheaper for the server.
    private func swapOnce(
        _ keyID: String, from version: Int64, to counters: KeyCounters, recording records: [UsageRecord]
    ) async throws -> [(Int64?, Int64, String?)] {
        let swap = """
            UPDATE mizan_api_keys SET counters = $1, counters_version = counters_version + 1
            WHERE id = $2 AND counters_version = $3
            RETURNING counters_version
            """
        // The counters found are needed only by a swap that lost (they are the next attempt's start).
        let answer = """
            SELECT s.counters_version, k.counters_version, CASE WHEN s.counters_version IS NULL THEN k.counters END
            FROM mizan_api_keys k LEFT JOIN swapped s ON true WHERE k.id = $2
            """
        var binds = PostgresBindings(capacity: 14)
        binds.append(counters.encoded())
        binds.append(keyID)
        binds.append(version)
        let decode = { (row: PostgresRow) in try row.decode((Int64?, Int64, String?).self) }
        guard !records.isEmpty else {
            return try await client.prepared(
                SwapCounters.self, PostgresQuery(unsafeSQL: "WITH swapped AS (\(swap)) \(answer)", binds: binds), logger: logger, decode)
        }
        // The records' arrays are $4 to $15.
        Rows.appendUsageArrays(records, to: &binds)
        return try await client.prepared(
            SwapCountersRecording.self,
            PostgresQuery(
                unsafeSQL:
                    "WITH swapped AS (\(swap)), recorded AS (\(Rows.insertUsageArrays(from: 4, where: "EXISTS (SELECT 1 FROM swapped)"))) \(answer)",
                binds: binds),
            logger: logger, decode)
    }

    /// A key's counters as stored.
    func counters(_ keyID: String) async throws -> KeyCounters {
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
