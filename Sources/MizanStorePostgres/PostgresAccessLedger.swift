import Foundation
import Logging
import MizanCore
import MizanStore
import PostgresNIO

/// The access ledger: API keys, usage records and their totals, and console sign-outs.
///
/// Usage records without a job that arrive together are inserted by one statement. A key's
/// counters (its limits' state) are kept by ``PostgresKeyCounters``.
final class PostgresAccessLedger: Sendable {
    private let context: PostgresStoreContext
    private var client: StoreClient { context.client }
    private var logger: Logger { context.logger }
    /// Usage records that arrive together, inserted together.
    private let usageBatches = BatchQueue<UsageRecord>(limit: 256)

    /// Creates the ledger over the store's shared context.
    init(context: PostgresStoreContext) {
        self.context = context
    }

    /// The columns an ``APIKey`` is read from.
    static let keyColumns = "id, name, prefix, created_at, revoked_at, policy"

    static func apiKey(_ row: PostgresRow) throws -> APIKey {
        let (id, name, prefix, createdAt, revokedAt, policy) = try row.decode((String, String, String, Date, Date?, String).self)
        return APIKey(id: id, name: name, prefix: prefix, createdAt: createdAt, revokedAt: revokedAt, policy: try Self.policy(policy))
    }

    /// A key's policy from its stored JSON.
    static func policy(_ json: String) throws -> KeyPolicy {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(KeyPolicy.self, from: Data(json.utf8))
        } catch {
            throw MizanError(.storeUnavailable, "The database holds a key policy it cannot read.")
        }
    }

    /// A key's policy as its stored JSON.
    static func policyText(_ policy: KeyPolicy) -> String {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(policy)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// Stores a new key under the hash of its secret.
    func createAPIKey(_ key: APIKey, hash: Data) async throws -> APIKey {
        let rows = try await client.prepared(
            CreateKey.self,
            """
            INSERT INTO mizan_api_keys (id, name, prefix, key_hash, created_at, revoked_at, policy)
            VALUES (\(key.id), \(key.name), \(key.prefix), \(hash), \(key.createdAt), \(key.revokedAt), \(Self.policyText(key.policy)))
            ON CONFLICT DO NOTHING
            RETURNING \(unescaped: Self.keyColumns)
            """,
            logger: logger, Self.apiKey
        )
        guard let created = rows.first else { throw MizanError(.conflict, "The API key exists.") }
        return created
    }

    /// Every key, oldest first.
    func apiKeys() async throws -> [APIKey] {
        try await client.prepared(
            ListKeys.self, "SELECT \(unescaped: Self.keyColumns) FROM mizan_api_keys ORDER BY created_at, id",
            logger: logger, Self.apiKey
        )
    }

    /// Revokes a key (its first revocation time is kept).
    func revokeAPIKey(_ id: String, now: Date) async throws -> APIKey {
        let rows = try await client.prepared(
            RevokeKey.self,
            """
            UPDATE mizan_api_keys SET revoked_at = COALESCE(revoked_at, \(now)) WHERE id = \(id)
            RETURNING \(unescaped: Self.keyColumns)
            """,
            logger: logger, Self.apiKey
        )
        guard let key = rows.first else { throw MizanError(.notFound, "No API key with id \(id).") }
        return key
    }

    /// Renames a key and replaces its policy.
    func updateAPIKey(_ id: String, name: String, policy: KeyPolicy) async throws -> APIKey {
        let rows = try await client.prepared(
            UpdateKey.self,
            "UPDATE mizan_api_keys SET name = \(name), policy = \(Self.policyText(policy)) WHERE id = \(id) RETURNING \(unescaped: Self.keyColumns)",
            logger: logger, Self.apiKey
        )
        guard let key = rows.first else { throw MizanError(.notFound, "No API key with id \(id).") }
        return key
    }

    /// The key whose secret has this hash, if any.
    func apiKey(hash: Data) async throws -> APIKey? {
        try await client.prepared(
            KeyByHash.self, "SELECT \(unescaped: Self.keyColumns) FROM mizan_api_keys WHERE key_hash = \(hash)",
            logger: logger, Self.apiKey
        ).first
    }

    /// Records a request's usage: records without a job share statements with those that
    /// arrive together; an idempotent job's tokens count on its first record only.
    /// - Returns: Whether the record's tokens were counted.
    @discardableResult
    func recordUsage(_ record: UsageRecord) async throws -> Bool {
        guard record.jobID != nil else {
            // Records that arrive together share one statement.
            try await usageBatches.submit(record) { _, records in
                var binds = PostgresBindings(capacity: 11)
                Rows.appendUsageArrays(records, to: &binds)
                _ = try await self.client.prepared(
                    RecordUsageBatch.self, PostgresQuery(unsafeSQL: Rows.insertUsageArrays(from: 1), binds: binds), logger: self.logger
                ) { $0 }
            }
            return true
        }
        // An idempotent job's tokens count on the first record of it only (its unique
        // `tokens_of_job`); a retry that got the same answer is recorded without them.
        let counted = try await client.prepared(
            RecordUsage.self,
            """
            INSERT INTO mizan_usage (request_id, api_key_id, model, served_by, status, latency_ms,
                prompt_tokens, completion_tokens, usage_source, created_at, tokens_of_job, endpoint, priority)
            VALUES (\(record.requestID), \(record.apiKeyID), \(record.model), \(record.servedBy), \(record.status),
                \(record.latencyMilliseconds), \(record.usage?.promptTokens), \(record.usage?.completionTokens),
                \(record.usage?.source.rawValue), \(record.createdAt), \(record.jobID?.description), \(record.endpoint.rawValue),
                \(record.priority?.rawValue))
            ON CONFLICT (tokens_of_job) DO NOTHING
            RETURNING id
            """,
            logger: logger
        ) { $0 }
        guard counted.isEmpty else { return true }
        _ = try await client.prepared(
            RecordRetryUsage.self,
            """
            INSERT INTO mizan_usage (request_id, api_key_id, model, served_by, status, latency_ms, created_at, endpoint, priority)
            VALUES (\(record.requestID), \(record.apiKeyID), \(record.model), \(record.servedBy), \(record.status),
                \(record.latencyMilliseconds), \(record.createdAt), \(record.endpoint.rawValue), \(record.priority?.rawValue))
            """,
            logger: logger
        ) { $0 }
        return false
    }

    /// Usage totals grouped as `query` asks.
    func usage(_ query: UsageQuery) async throws -> [UsageRow] {
        // Built from the query's fixed parts (the values are binds), so unprepared: an admin call.
        var sql = ""
        var binds = PostgresBindings()
        var filters: [String] = []
        if let since = query.since {
            binds.append(since)
            filters.append("created_at >= $\(binds.count)")
        }
        if let until = query.until {
            binds.append(until)
            filters.append("created_at < $\(binds.count)")
        }
        if let key = query.apiKeyID {
            binds.append(key)
            filters.append("api_key_id = $\(binds.count)")
        }
        if let model = query.model {
            binds.append(model)
            filters.append("model = $\(binds.count)")
        }
        var columns = [
            query.groupBy.contains(.key) ? "api_key_id" : "NULL::text", query.groupBy.contains(.model) ? "model" : "NULL::text",
            query.groupBy.contains(.endpoint) ? "endpoint" : "NULL::text",
        ]
        let bucket = query.groupBy.contains(.hour) ? "hour" : query.groupBy.contains(.day) ? "day" : nil
        columns.append(bucket.map { "date_trunc('\($0)', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'" } ?? "NULL::timestamptz")
        columns.append(query.groupBy.contains(.priority) ? "priority" : "NULL::text")
        let grouped = (1...5).filter { index in
            [
                query.groupBy.contains(.key), query.groupBy.contains(.model), query.groupBy.contains(.endpoint), bucket != nil,
                query.groupBy.contains(.priority),
            ][index - 1]
        }
        sql = """
            SELECT \(columns.joined(separator: ", ")), count(*), COALESCE(sum(prompt_tokens), 0)::bigint,
                COALESCE(sum(completion_tokens), 0)::bigint
            FROM mizan_usage \(filters.isEmpty ? "" : "WHERE " + filters.joined(separator: " AND "))
            \(grouped.isEmpty ? "" : "GROUP BY " + grouped.map(String.init).joined(separator: ", "))
            """
        let statement = PostgresQuery(unsafeSQL: sql, binds: binds)
        let logger = logger
        let rows = try await client.withOpenConnection(logger: logger) { connection in
            var rows: [UsageRow] = []
            for try await row in try await connection.query(statement, logger: logger) {
                let (key, model, endpoint, period, priority, requests, prompt, completion) = try row.decode(
                    (String?, String?, String?, Date?, String?, Int, Int, Int).self)
                rows.append(
                    UsageRow(
                        apiKeyID: key, model: model, endpoint: endpoint.flatMap(Endpoint.init(rawValue:)), period: period,
                        priority: priority.flatMap(PriorityClass.init(rawValue:)), requests: requests,
                        promptTokens: prompt, completionTokens: completion))
            }
            return rows
        }
        return rows.filter { $0.requests > 0 }.sorted(by: UsageRow.precedes)  // no grouping and no match: no row
    }

    /// Usage totals per key, model and endpoint.
    func usageSummary() async throws -> [UsageSummary] {
        try await client.prepared(
            Summary.self,
            """
            SELECT api_key_id, model, endpoint, count(*), COALESCE(sum(prompt_tokens), 0)::bigint,
                COALESCE(sum(completion_tokens), 0)::bigint
            FROM mizan_usage GROUP BY api_key_id, model, endpoint
            """,
            logger: logger
        ) { row in
            let (key, model, endpoint, requests, prompt, completion) = try row.decode((String?, String, String, Int, Int, Int).self)
            return UsageSummary(
                apiKeyID: key, model: model, endpoint: Endpoint(rawValue: endpoint) ?? .chatCompletions, requests: requests,
                promptTokens: prompt, completionTokens: completion)
        }.sorted(by: UsageSummary.precedes)
    }

    /// Whether a usage record of this request, made at `createdAt`, is stored.
    func usageRecorded(requestID: String, createdAt: Date) async throws -> Bool {
        try await !client.rows(
            "SELECT 1 FROM mizan_usage WHERE created_at = \(createdAt) AND request_id = \(requestID) LIMIT 1", logger: logger
        ) { _ in () }.isEmpty
    }

    /// Records a console session as signed out until it expires (and forgets expired ones).
    func endConsoleSession(_ id: String, expires: Date, now: Date) async throws {
        try await client.run(
            """
            WITH gone AS (DELETE FROM mizan_console_signouts WHERE expires <= \(now))
            INSERT INTO mizan_console_signouts (id, expires) VALUES (\(id), \(expires)) ON CONFLICT (id) DO NOTHING
            """,
            logger: logger)
    }

    /// Whether a console session was signed out.
    func isConsoleSessionEnded(_ id: String) async throws -> Bool {
        try await !client.rows("SELECT 1 FROM mizan_console_signouts WHERE id = \(id)", logger: logger) { _ in () }.isEmpty
    }
}

private enum CreateKey {}
private enum UpdateKey {}
private enum RecordUsageBatch {}
private enum ListKeys {}
private enum RevokeKey {}
private enum KeyByHash {}
private enum RecordUsage {}
private enum RecordRetryUsage {}
private enum Summary {}
