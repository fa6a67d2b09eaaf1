import Foundation
import MizanCore
import MizanStore
import PostgresNIO

extension PostgresStore: AccessStore {
    static let keyColumns = "id, name, prefix, created_at, revoked_at"

    static func apiKey(_ row: PostgresRow) throws -> APIKey {
        let (id, name, prefix, createdAt, revokedAt) = try row.decode((String, String, String, Date, Date?).self)
        return APIKey(id: id, name: name, prefix: prefix, createdAt: createdAt, revokedAt: revokedAt)
    }

    public func createAPIKey(_ key: APIKey, hash: Data) async throws -> APIKey {
        let rows = try await client.prepared(
            CreateKey.self,
            """
            INSERT INTO mizan_api_keys (id, name, prefix, key_hash, created_at, revoked_at)
            VALUES (\(key.id), \(key.name), \(key.prefix), \(hash), \(key.createdAt), \(key.revokedAt))
            ON CONFLICT DO NOTHING
            RETURNING \(unescaped: Self.keyColumns)
            """,
            logger: logger, Self.apiKey
        )
        guard let created = rows.first else { throw MizanError(.conflict, "The API key exists.") }
        return created
    }

    public func apiKeys() async throws -> [APIKey] {
        try await client.prepared(
            ListKeys.self, "SELECT \(unescaped: Self.keyColumns) FROM mizan_api_keys ORDER BY created_at, id",
            logger: logger, Self.apiKey
        )
    }

    public func revokeAPIKey(_ id: String, now: Date) async throws -> APIKey {
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

    public func apiKey(hash: Data) async throws -> APIKey? {
        try await client.prepared(
            KeyByHash.self, "SELECT \(unescaped: Self.keyColumns) FROM mizan_api_keys WHERE key_hash = \(hash)",
            logger: logger, Self.apiKey
        ).first
    }

    public func recordUsage(_ record: UsageRecord) async throws {
        // An idempotent job's tokens count on the first record of it only (its unique
        // `tokens_of_job`); a retry that got the same answer is recorded without them.
        let counted = try await client.prepared(
            RecordUsage.self,
            """
            INSERT INTO mizan_usage (request_id, api_key_id, model, served_by, status, latency_ms,
                prompt_tokens, completion_tokens, usage_source, created_at, tokens_of_job, endpoint)
            VALUES (\(record.requestID), \(record.apiKeyID), \(record.model), \(record.servedBy), \(record.status),
                \(record.latencyMilliseconds), \(record.usage?.promptTokens), \(record.usage?.completionTokens),
                \(record.usage?.source.rawValue), \(record.createdAt), \(record.jobID?.description), \(record.endpoint.rawValue))
            ON CONFLICT (tokens_of_job) DO NOTHING
            RETURNING id
            """,
            logger: logger
        ) { $0 }
        guard counted.isEmpty else { return }
        _ = try await client.prepared(
            RecordRetryUsage.self,
            """
            INSERT INTO mizan_usage (request_id, api_key_id, model, served_by, status, latency_ms, created_at, endpoint)
            VALUES (\(record.requestID), \(record.apiKeyID), \(record.model), \(record.servedBy), \(record.status),
                \(record.latencyMilliseconds), \(record.createdAt), \(record.endpoint.rawValue))
            """,
            logger: logger
        ) { $0 }
    }

    public func usageSummary() async throws -> [UsageSummary] {
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
}

private enum CreateKey {}
private enum ListKeys {}
private enum RevokeKey {}
private enum KeyByHash {}
private enum RecordUsage {}
private enum RecordRetryUsage {}
private enum Summary {}
