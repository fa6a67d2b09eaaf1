import Foundation
import MizanCore
import MizanStore
import PostgresNIO

/// The sweeper's statements: deadlines, lost nodes, retention.
extension PostgresStore {
    public func timeOutExpired(now: Date) async throws -> [Job] {
        var all: [Job] = []
        while true {
            let batch = try await client.prepared(
                Key6.self,
                """
                WITH cur AS (
                    SELECT id, state AS prev_state, node_id AS prev_node FROM mizan_jobs
                    WHERE state IN (\(unescaped: JobStateMachine.sqlSources(of: .timeOut))) AND deadline <= \(now)
                    ORDER BY deadline LIMIT 2000
                    FOR UPDATE SKIP LOCKED
                ), upd AS (
                    UPDATE mizan_jobs j SET state = 'timed_out', error_code = \(JobErrorCode.deadlineExceeded),
                        error_message = 'The job''s deadline passed.', finished_at = \(now), updated_at = \(now)
                    FROM cur WHERE j.id = cur.id
                    RETURNING \(unescaped: Rows.jobColumns("j")), cur.prev_state, cur.prev_node
                ), dec AS (
                    UPDATE mizan_nodes n SET leased = n.leased - c.count
                    FROM (SELECT prev_node, count(*) AS count FROM upd WHERE prev_state = 'leased' GROUP BY prev_node) c
                    WHERE n.id = c.prev_node
                )
                SELECT \(unescaped: Rows.jobColumns) FROM upd
                """,
                logger: logger, Rows.job
            )
            all += batch
            if batch.count < 2000 { break }
        }
        let events = all.map { StoreEvent.jobFinished(id: $0.id, state: $0.state) }
        publishLocally(events)
        try await notify(events)
        return all
    }

    public func recoverLeases(staleBefore: Date, now: Date) async throws -> [Job] {
        let changed = try await client.prepared(
            Key7.self,
            """
            WITH cur AS (
                SELECT j.id, j.node_id AS prev_node, (j.attempt < j.max_attempts AND j.deadline > \(now)) AS again
                FROM mizan_jobs j JOIN mizan_nodes n ON n.id = j.node_id
                WHERE j.state = 'leased'
                    AND (n.status = 'revoked' OR n.last_seen IS NULL OR n.last_seen < \(staleBefore))
                FOR UPDATE OF j SKIP LOCKED
            ), upd AS (
                UPDATE mizan_jobs j SET
                    state = CASE WHEN cur.again THEN 'accepted' ELSE 'failed' END,
                    attempt = j.attempt + CASE WHEN cur.again THEN 1 ELSE 0 END,
                    node_id = CASE WHEN cur.again THEN NULL ELSE j.node_id END,
                    finished_at = CASE WHEN cur.again THEN NULL ELSE \(now) END,
                    error_code = CASE WHEN cur.again THEN NULL ELSE \(JobErrorCode.nodeLost) END,
                    error_message = CASE WHEN cur.again THEN NULL
                        ELSE 'The node running the job was lost and no attempt is left.' END,
                    lease_history = CASE WHEN cur.again THEN COALESCE(j.lease_history, '') || j.attempt || ','
                        || COALESCE(extract(epoch from j.leased_at)::text, '') || ',' || COALESCE(j.node_id::text, '') || ','
                        || \(String(now.timeIntervalSince1970))::text || ',' || \(JobErrorCode.nodeLost)::text || ';'
                        ELSE j.lease_history END,
                    updated_at = \(now)
                FROM cur WHERE j.id = cur.id
                RETURNING \(unescaped: Rows.jobColumns("j")), cur.prev_node
            ), dec AS (
                UPDATE mizan_nodes n SET leased = n.leased - c.count
                FROM (SELECT prev_node, count(*) AS count FROM upd GROUP BY prev_node) c
                WHERE n.id = c.prev_node
            )
            SELECT \(unescaped: Rows.jobColumns) FROM upd
            """,
            logger: logger, Rows.job
        )
        let events = StoreEvent.describing(changed)
        publishLocally(events)
        try await notify(events)
        return changed
    }

    public func recoverLeases(of nodeID: NodeID, now: Date) async throws -> [Job] {
        let changed = try await client.prepared(
            Key8.self,
            """
            WITH cur AS (
                SELECT j.id, j.node_id AS prev_node, (j.attempt < j.max_attempts AND j.deadline > \(now)) AS again
                FROM mizan_jobs j
                WHERE j.state = 'leased' AND j.node_id = \(nodeID.uuid)
                FOR UPDATE OF j SKIP LOCKED
            ), upd AS (
                UPDATE mizan_jobs j SET
                    state = CASE WHEN cur.again THEN 'accepted' ELSE 'failed' END,
                    attempt = j.attempt + CASE WHEN cur.again THEN 1 ELSE 0 END,
                    node_id = CASE WHEN cur.again THEN NULL ELSE j.node_id END,
                    finished_at = CASE WHEN cur.again THEN NULL ELSE \(now) END,
                    error_code = CASE WHEN cur.again THEN NULL ELSE \(JobErrorCode.nodeLost) END,
                    error_message = CASE WHEN cur.again THEN NULL
                        ELSE 'The node running the job was lost and no attempt is left.' END,
                    lease_history = CASE WHEN cur.again THEN COALESCE(j.lease_history, '') || j.attempt || ','
                        || COALESCE(extract(epoch from j.leased_at)::text, '') || ',' || COALESCE(j.node_id::text, '') || ','
                        || \(String(now.timeIntervalSince1970))::text || ',' || \(JobErrorCode.nodeLost)::text || ';'
                        ELSE j.lease_history END,
                    updated_at = \(now)
                FROM cur WHERE j.id = cur.id
                RETURNING \(unescaped: Rows.jobColumns("j")), cur.prev_node
            ), dec AS (
                UPDATE mizan_nodes n SET leased = n.leased - c.count
                FROM (SELECT prev_node, count(*) AS count FROM upd GROUP BY prev_node) c
                WHERE n.id = c.prev_node
            )
            SELECT \(unescaped: Rows.jobColumns) FROM upd
            """,
            logger: logger, Rows.job
        )
        let events = StoreEvent.describing(changed)
        publishLocally(events)
        try await notify(events)
        return changed
    }

    public func prune(finishedBefore: Date) async throws -> Int {
        var total = 0
        while true {
            let deleted =
                try await client.rows(
                    """
                    WITH gone AS (
                        DELETE FROM mizan_jobs WHERE id IN (
                            SELECT id FROM mizan_jobs
                            WHERE state IN ('succeeded', 'failed', 'timed_out') AND finished_at < \(finishedBefore)
                            LIMIT 5000
                        ) RETURNING 1
                    )
                    SELECT count(*) FROM gone
                    """,
                    logger: logger
                ) { try $0.decode(Int.self) }.first ?? 0
            total += deleted
            if deleted < 5000 { return total }
        }
    }
}

// Marker types naming this file's prepared statements.
private enum Key6 {}
private enum Key7 {}
private enum Key8 {}
