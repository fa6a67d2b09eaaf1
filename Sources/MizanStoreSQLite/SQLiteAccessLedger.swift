import Foundation
import MizanCore
import MizanStore
import Synchronization

/// The access ledger of an SQLite file: API keys, their counters (kept in the process by a
/// ``KeyCounterTable`` and written behind), usage records, and ended console sessions.
package final class SQLiteAccessLedger: Sendable {
    private let connections: SQLiteConnections
    /// The counters of the keys in use (written to the file behind them).
    private let counterTable = KeyCounterTable()

    /// - Parameter connections: The file's connections.
    package init(connections: SQLiteConnections) {
        self.connections = connections
    }

    /// Records a new key by its hash (see `AccessStore`).
    package func createAPIKey(_ key: APIKey, hash: Data) async throws -> APIKey {
        try await connections.write { db in
            let rows = try db.query(
                """
                INSERT INTO mizan_api_keys (id, name, prefix, key_hash, created_at, revoked_at, policy) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT DO NOTHING
                RETURNING \(Rows.keyColumns)
                """,
                [
                    .text(key.id), .text(key.name), .text(key.prefix), Rows.blob(hash), Rows.date(key.createdAt), Rows.date(key.revokedAt),
                    Rows.policy(key.policy),
                ]
            )
            guard let created = try rows.first.map(Rows.apiKey) else { throw MizanError(.conflict, "The API key exists.") }
            return (created, [])
        }
    }

    /// Every key, oldest first.
    package func apiKeys() async throws -> [APIKey] {
        try await connections.read("SELECT \(Rows.keyColumns) FROM mizan_api_keys ORDER BY created_at, id").map(Rows.apiKey)
    }

    /// Revokes a key (once: a second revocation keeps the first time).
    package func revokeAPIKey(_ id: String, now: Date) async throws -> APIKey {
        try await connections.write { db in
            let rows = try db.query(
                "UPDATE mizan_api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? RETURNING \(Rows.keyColumns)",
                [Rows.date(now), .text(id)]
            )
            guard let key = try rows.first.map(Rows.apiKey) else { throw MizanError(.notFound, "No API key with id \(id).") }
            return (key, [])
        }
    }

    /// Renames a key and sets its policy.
    package func updateAPIKey(_ id: String, name: String, policy: KeyPolicy) async throws -> APIKey {
        try await connections.write { db in
            let rows = try db.query(
                "UPDATE mizan_api_keys SET name = ?, policy = ? WHERE id = ? RETURNING \(Rows.keyColumns)",
                [.text(name), Rows.policy(policy), .text(id)]
            )
            guard let key = try rows.first.map(Rows.apiKey) else { throw MizanError(.notFound, "No API key with id \(id).") }
            return (key, [])
        }
    }

    /// Runs `change` on a key's counters, in memory (written behind).
    package func changeKeyCounters<T: Sendable>(_ keyID: String, _ change: @escaping @Sendable (inout KeyCounters) -> T) async throws -> T {
        try await loadKeyCounters(keyID)
        guard let (result, _) = counterTable.change(keyID, change) else { preconditionFailure("loaded counters stay") }
        return result
    }

    /// Whether a usage record of `requestID` at `createdAt` exists.
    package func usageRecorded(requestID: String, createdAt: Date) async throws -> Bool {
        try await !connections.read(
            "SELECT 1 FROM mizan_usage WHERE created_at = ? AND request_id = ? LIMIT 1", [Rows.date(createdAt), .text(requestID)]
        ).isEmpty
    }

    /// Records a console session signed out until it expires.
    package func endConsoleSession(_ id: String, expires: Date, now: Date) async throws {
        try await connections.write { db in
            try db.query("DELETE FROM mizan_console_signouts WHERE expires <= ?", [Rows.date(now)])
            try db.query(
                "INSERT INTO mizan_console_signouts (id, expires) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                [.text(id), Rows.date(expires)])
            return ((), [])
        }
    }

    /// Whether a console session was signed out.
    package func isConsoleSessionEnded(_ id: String) async throws -> Bool {
        try await !connections.read("SELECT 1 FROM mizan_console_signouts WHERE id = ?", [.text(id)]).isEmpty
    }

    /// A key's counters as they stand (in memory).
    package func keyCounters(_ keyID: String) async throws -> KeyCounters {
        try await loadKeyCounters(keyID)
        guard let counters = counterTable.counters(keyID) else { preconditionFailure("loaded counters stay") }
        return counters
    }

    /// Reads a key's counters from the file the first time they are needed.
    /// - Throws: `MizanError` `notFound` for an unknown key.
    private func loadKeyCounters(_ keyID: String) async throws {
        guard !counterTable.contains(keyID) else { return }
        let rows = try await connections.read("SELECT counters FROM mizan_api_keys WHERE id = ?", [.text(keyID)])
        guard let row = rows.first else { throw MizanError(.notFound, "No API key with id \(keyID).") }
        counterTable.load(keyID, stored: row.column("counters")?.string)
    }

    /// A key's counters as the file holds them (for tests: the store answers from memory).
    package func storedKeyCounters(_ keyID: String) async throws -> KeyCounters {
        let rows = try await connections.read("SELECT counters FROM mizan_api_keys WHERE id = ?", [.text(keyID)])
        guard let row = rows.first else { throw MizanError(.notFound, "No API key with id \(keyID).") }
        return KeyCounters.decoded(row.column("counters")?.string)
    }

    /// Writes the counters changed since they were last written (those that no usage record
    /// carried to the file).
    package func storeKeyCounters() async throws {
        guard counterTable.hasUnstored else { return }
        // Taken on the writer: no snapshot of a usage record's transaction is newer.
        let snapshots = try await connections.write { db in
            let snapshots = self.counterTable.unstored()
            for snapshot in snapshots {
                try db.query("UPDATE mizan_api_keys SET counters = ? WHERE id = ?", [.text(snapshot.text), .text(snapshot.keyID)])
            }
            return (snapshots, [])
        }
        for snapshot in snapshots { counterTable.stored(snapshot) }
    }

    /// The key with `hash`.
    package func apiKey(hash: Data) async throws -> APIKey? {
        try await connections.read("SELECT \(Rows.keyColumns) FROM mizan_api_keys WHERE key_hash = ?", [Rows.blob(hash)]).first.map(
            Rows.apiKey)
    }

    /// Records a request's usage (see `AccessStore`).
    @discardableResult
    package func recordUsage(_ record: UsageRecord) async throws -> Bool {
        // A record of no idempotent job is one insert (its tokens' job is NULL, which conflicts
        // with nothing): a write of one statement, without a transaction's BEGIN and COMMIT.
        try await connections.write(single: record.jobID == nil, short: true) { db in (try Self.insertUsage(record, db), []) }
    }

    /// Records the usage and, in the same transaction, writes the key's counters with the
    /// admission ended (they change here first: nothing waits for the file to admit).
    @discardableResult
    package func recordUsage(_ record: UsageRecord, ending admission: KeyAdmissionEnd?) async throws -> Bool {
        guard let admission else { return try await recordUsage(record) }
        let key = admission.key
        try? await loadKeyCounters(key.id)  // a key unknown here has no counters to end
        let ended = Mutex(false)
        let end: @Sendable (Bool) -> KeyCounterTable.Snapshot? = { counted in
            ended.withLock { $0 = true }
            return self.counterTable.change(key.id, snapshot: true) { counters in
                KeyLimiter.finish(
                    &counters, policy: key.policy, holdID: admission.holdID, tokens: counted ? record.tokens : 0,
                    reserved: admission.reserved, admittedAt: admission.admittedAt, now: Date())
            }?.1
        }
        do {
            let (counted, snapshot) = try await connections.write(short: true) { db in
                let counted = try Self.insertUsage(record, db)
                let snapshot = end(counted)
                if let snapshot {
                    try db.query("UPDATE mizan_api_keys SET counters = ? WHERE id = ?", [.text(snapshot.text), .text(key.id)])
                }
                return ((counted, snapshot), [])
            }
            if let snapshot { counterTable.stored(snapshot) }
            return counted
        } catch {
            // The tokens were used whether or not their record could be kept; the service
            // writes the counters later.
            if !ended.withLock({ $0 }) { _ = end(true) }
            throw UsageWriteFailure(admissionEnded: true, atomic: true, underlying: error)
        }
    }

    /// Ends the admission in memory at once — the next admission on this gateway comes after
    /// it — and writes the record and the key's counters with the next write transaction (or on
    /// their own 2 ms later) without waiting for them; a failure is logged. The store writes
    /// what is queued before it closes.
    package func recordUsageSoon(
        _ record: UsageRecord, ending admission: KeyAdmissionEnd, failed: @escaping @Sendable (UsageWriteFailure) -> Void
    ) async throws {
        guard record.jobID == nil, record.apiKeyID == admission.key.id else {
            try await recordUsage(record, ending: admission)
            return
        }
        let key = admission.key
        try? await loadKeyCounters(key.id)  // a key unknown here has no counters to end
        _ = counterTable.change(key.id) { counters in
            KeyLimiter.finish(
                &counters, policy: key.policy, holdID: admission.holdID, tokens: record.tokens, reserved: admission.reserved,
                admittedAt: admission.admittedAt, now: Date())
        }
        let logger = connections.logger
        let requestID = record.requestID
        let written = Mutex<KeyCounterTable.Snapshot?>(nil)
        connections.writes.writeSoon(linger: .milliseconds(2)) { db in
            _ = try Self.insertUsage(record, db)
            // The counters as they stand (a later end of the key may have changed them since).
            if let snapshot = self.counterTable.unstored(key.id) {
                try db.query("UPDATE mizan_api_keys SET counters = ? WHERE id = ?", [.text(snapshot.text), .text(key.id)])
                written.withLock { $0 = snapshot }
            }
        } done: { error in
            guard let error else {
                if let snapshot = written.withLock({ $0 }) { self.counterTable.stored(snapshot) }
                return
            }
            logger.warning(
                "a limited key's usage record could not be stored yet (its tokens are counted)",
                metadata: ["mizan.request.id": "\(requestID)", "mizan.error": "\(error)"])
            failed(UsageWriteFailure(admissionEnded: true, atomic: true, underlying: error))
        }
    }

    /// Inserts a usage record; an idempotent job's tokens count on the first record of it
    /// only (its unique `tokens_of_job`), a retry that got the same answer is recorded without them.
    /// - Returns: Whether the record counted its tokens.
    private static func insertUsage(_ record: UsageRecord, _ db: Database) throws -> Bool {
        let binds: [SQLValue] = [
            .text(record.requestID), Rows.text(record.apiKeyID), .text(record.model), Rows.text(record.servedBy),
            .integer(record.status), .float(record.latencyMilliseconds), Rows.date(record.createdAt), .text(record.endpoint.rawValue),
            Rows.text(record.priority?.rawValue),
        ]
        let tokens: [SQLValue] = [
            Rows.integer(record.usage?.promptTokens), Rows.integer(record.usage?.completionTokens),
            Rows.text(record.usage?.source.rawValue),
            Rows.text(record.jobID?.description),
        ]
        let counted = try db.query(
            """
            INSERT INTO mizan_usage (request_id, api_key_id, model, served_by, status, latency_ms, created_at, endpoint, priority,
                prompt_tokens, completion_tokens, usage_source, tokens_of_job)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (tokens_of_job) WHERE tokens_of_job IS NOT NULL DO NOTHING
            RETURNING id
            """,
            binds + tokens
        )
        guard counted.isEmpty else { return true }
        try db.query(
            """
            INSERT INTO mizan_usage (request_id, api_key_id, model, served_by, status, latency_ms, created_at, endpoint, priority)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            binds
        )
        return false
    }

    /// Usage totals, filtered and grouped as `query` asks.
    package func usage(_ query: UsageQuery) async throws -> [UsageRow] {
        var filters: [String] = []
        var binds: [SQLValue] = []
        if let since = query.since {
            filters.append("created_at >= ?")
            binds.append(Rows.date(since))
        }
        if let until = query.until {
            filters.append("created_at < ?")
            binds.append(Rows.date(until))
        }
        if let key = query.apiKeyID {
            filters.append("api_key_id = ?")
            binds.append(.text(key))
        }
        if let model = query.model {
            filters.append("model = ?")
            binds.append(.text(model))
        }
        // Times are seconds since the reference date, a UTC midnight: a bucket is a floor.
        var columns: [String] = []
        if query.groupBy.contains(.key) { columns.append("api_key_id") }
        if query.groupBy.contains(.model) { columns.append("model") }
        if query.groupBy.contains(.endpoint) { columns.append("endpoint") }
        if query.groupBy.contains(.priority) { columns.append("priority") }
        if let bucket = query.bucketSeconds { columns.append("CAST(created_at / \(Int(bucket)) AS INTEGER) * \(Int(bucket)) AS period") }
        let groups = columns.map { $0.components(separatedBy: " AS ").last! }
        let sql = """
            SELECT \((columns + ["count(*) AS requests", "coalesce(sum(prompt_tokens), 0) AS prompt", "coalesce(sum(completion_tokens), 0) AS completion"]).joined(separator: ", "))
            FROM mizan_usage \(filters.isEmpty ? "" : "WHERE " + filters.joined(separator: " AND "))
            \(groups.isEmpty ? "" : "GROUP BY " + groups.joined(separator: ", "))
            """
        return try await connections.read(sql, binds).map { row in
            UsageRow(
                apiKeyID: row.column("api_key_id")?.string,
                model: row.column("model")?.string,
                endpoint: row.column("endpoint")?.string.flatMap(Endpoint.init(rawValue:)),
                period: row.column("period")?.double.map { Date(timeIntervalSinceReferenceDate: $0) },
                priority: row.column("priority")?.string.flatMap(PriorityClass.init(rawValue:)),
                requests: Int(row.column("requests")?.integer ?? 0),
                promptTokens: Int(row.column("prompt")?.integer ?? 0),
                completionTokens: Int(row.column("completion")?.integer ?? 0)
            )
        }.filter { $0.requests > 0 }.sorted(by: UsageRow.precedes)  // no grouping and no match: no row
    }

    /// Usage totals by key, model and endpoint.
    package func usageSummary() async throws -> [UsageSummary] {
        try await connections.read(
            """
            SELECT api_key_id, model, endpoint, count(*) AS requests, coalesce(sum(prompt_tokens), 0) AS prompt,
                coalesce(sum(completion_tokens), 0) AS completion
            FROM mizan_usage GROUP BY api_key_id, model, endpoint
            """
        ).map { row in
            UsageSummary(
                apiKeyID: row.column("api_key_id")?.string,
                model: try Rows.string(row, "model"),
                endpoint: row.column("endpoint")?.string.flatMap(Endpoint.init(rawValue:)) ?? .chatCompletions,
                requests: Int(row.column("requests")?.integer ?? 0),
                promptTokens: Int(row.column("prompt")?.integer ?? 0),
                completionTokens: Int(row.column("completion")?.integer ?? 0)
            )
        }.sorted(by: UsageSummary.precedes)
    }

    /// Deletes the usage records older than `before`, on the writer inside a transaction (the
    /// store's prune, with the finished jobs).
    package static func deleteUsage(before: Date, on db: Database) throws {
        try db.query("DELETE FROM mizan_usage WHERE created_at < ?", [Rows.date(before)])
    }
}
