import Foundation
import MizanCore
import MizanStore
import PostgresNIO

/// Reading jobs: by id, by state, a node's leases, queue depth.
extension PostgresStore {
    public func job(_ id: JobID) async throws -> Job? {
        try await client.prepared(
            Key8.self, "SELECT \(unescaped: Rows.jobColumns) FROM mizan_jobs WHERE id = \(id.uuid)", logger: logger, Rows.job
        ).first
    }

    public func jobs(_ ids: [JobID]) async throws -> [Job] {
        guard !ids.isEmpty else { return [] }
        return try await client.prepared(
            Key10.self, "SELECT \(unescaped: Rows.jobColumns) FROM mizan_jobs WHERE id = ANY(\(ids.map(\.uuid)))", logger: logger, Rows.job)
    }

    public func jobs(matching filter: JobFilter, limit: Int) async throws -> [Job] {
        let limit = max(0, limit)
        let state = filter.state?.rawValue
        let model = filter.model
        let before = filter.before?.uuid
        if state == nil, model == nil, before == nil {
            return try await client.prepared(
                Key12.self, "SELECT \(unescaped: Rows.jobColumns) FROM mizan_jobs ORDER BY id DESC LIMIT \(limit)", logger: logger, Rows.job
            )
        }
        return try await client.prepared(
            Key11.self,
            """
            SELECT \(unescaped: Rows.jobColumns) FROM mizan_jobs
            WHERE (\(state)::text IS NULL OR state = \(state)) AND (\(model)::text IS NULL OR model = \(model))
              AND (\(before)::uuid IS NULL OR id < \(before))
            ORDER BY id DESC LIMIT \(limit)
            """,
            logger: logger, Rows.job)
    }

    public func leasedJobs(nodeID: NodeID) async throws -> [Job] {
        try await client.prepared(
            Key13.self,
            "SELECT \(unescaped: Rows.jobColumns) FROM mizan_jobs WHERE state = 'leased' AND node_id = \(nodeID.uuid) ORDER BY id",
            logger: logger, Rows.job
        )
    }

    public func queueDepth() async throws -> [String: Int] {
        let rows = try await client.rows(
            "SELECT model, count(*) FROM mizan_jobs WHERE state = 'accepted' GROUP BY model",
            logger: logger
        ) { try $0.decode((String, Int).self) }
        return Dictionary(rows, uniquingKeysWith: +)
    }
}

// Marker types naming this file's prepared statements.
private enum Key8 {}
private enum Key10 {}
private enum Key11 {}
private enum Key12 {}
private enum Key13 {}
