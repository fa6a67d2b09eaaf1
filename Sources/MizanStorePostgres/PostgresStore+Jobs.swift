import Foundation
import MizanCore
import MizanStore
import PostgresNIO

extension PostgresStore {

    public func insert(_ job: Job) async throws -> JobInsertion {
        precondition(job.state == .accepted, "only accepted jobs are inserted")
        let event = StoreEvent.jobsAvailable(model: job.model, count: 1)
        let rows = try await client.prepared(
            Key1.self,
            """
            WITH ins AS (
                INSERT INTO mizan_jobs (\(unescaped: Rows.jobColumns), origin)
                VALUES (
                    \(job.id.uuid), \(job.requestID), \(job.model), \(job.body), \(job.stream), 'accepted',
                    \(job.attempt), \(job.maxAttempts), \(job.priority), NULL, \(job.deadline), \(job.createdAt),
                    NULL, NULL, \(job.updatedAt), NULL, NULL, NULL, NULL, NULL, NULL, \(job.idempotencyKey), \(job.apiKeyID),
                    \(job.endpoint.rawValue), NULL, \(origin)
                )
                ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                RETURNING \(unescaped: Rows.jobColumns)
            )
            SELECT \(unescaped: Rows.jobColumns("ins")) FROM ins,
                LATERAL (SELECT pg_notify(\(Self.channel), \(payload([event]))) WHERE ins.id IS NOT NULL) AS n
            """,
            logger: logger, Rows.job
        )
        if let inserted = rows.first {
            publishLocally([event])
            return JobInsertion(job: inserted, inserted: true)
        }
        guard let key = job.idempotencyKey else {
            throw MizanError(.internalError, "The job was not inserted.")
        }
        let existing = try await client.prepared(
            Key9.self, "SELECT \(unescaped: Rows.jobColumns) FROM mizan_jobs WHERE idempotency_key = \(key)", logger: logger, Rows.job)
        guard let found = existing.first else {
            throw MizanError(.conflict, "A job with this idempotency key was just removed; try again.")
        }
        return JobInsertion(job: found, inserted: false)
    }

    public func lease(nodeID: NodeID, limit: Int, now: Date) async throws -> [LeasedJob] {
        // Not a prepared statement on purpose: a plan cached while the queue was small
        // (a sequential scan) would stay in use after it grew. Planned per call, it always
        // takes the index-ordered queue scan; the cost is spread over the jobs it leases.
        let leased = try await client.rows(
            """
            WITH node AS (
                SELECT models, endpoints, GREATEST(0, LEAST(\(limit), max_concurrency - leased)) AS free,
                    (status = 'active' AND health <> 'unhealthy') AS ok
                FROM mizan_nodes WHERE id = \(nodeID.uuid) FOR UPDATE
            ), candidates AS (
                -- Per model, an index-ordered scan of its queue: cost does not grow with queue length.
                SELECT c.id, c.priority FROM node, unnest(node.models) AS m(model),
                    LATERAL (
                        SELECT j.id, j.priority FROM mizan_jobs j
                        WHERE j.state = 'accepted' AND j.model = m.model AND j.deadline > \(now) AND j.endpoint = ANY(node.endpoints)
                        ORDER BY j.priority DESC, j.id
                        LIMIT \(limit)
                        FOR UPDATE SKIP LOCKED
                    ) AS c
                WHERE node.ok AND node.free > 0
            ), picked AS (
                SELECT id FROM candidates ORDER BY priority DESC, id LIMIT (SELECT free FROM node)
            ), upd AS (
                UPDATE mizan_jobs j SET state = 'leased', node_id = \(nodeID.uuid), leased_at = \(now), updated_at = \(now)
                FROM picked WHERE j.id = picked.id AND j.state IN (\(unescaped: JobStateMachine.sqlSources(of: .lease)))
                RETURNING \(unescaped: Rows.jobColumns("j"))
            ), bump AS (
                UPDATE mizan_nodes SET leased = leased + (SELECT count(*) FROM upd), last_seen = \(now)
                WHERE id = \(nodeID.uuid)
            )
            SELECT \(unescaped: Rows.jobColumns) FROM upd ORDER BY priority DESC, id
            """,
            logger: logger, Rows.job
        )
        if leased.isEmpty {
            let status = try await client.rows("SELECT status FROM mizan_nodes WHERE id = \(nodeID.uuid)", logger: logger) {
                try $0.decode(String.self)
            }
            guard let status = status.first else { throw MizanError(.nodeNotFound, "No node with id \(nodeID).") }
            if status == Node.Status.revoked.rawValue { throw MizanError(.invalidNodeToken, "The node was revoked.") }
        }
        return leased.map { LeasedJob(job: $0, lease: $0.lease!) }
    }

    public func complete(_ lease: Lease, with completion: JobCompletion, now: Date) async throws -> Job {
        let rows: [Job]
        switch completion {
        case .succeeded(let result, let usage):
            let event = StoreEvent.jobFinished(id: lease.jobID, state: .succeeded)
            rows = try await client.prepared(
                Key3.self,
                """
                WITH upd AS (
                    UPDATE mizan_jobs SET state = 'succeeded', result = \(result),
                        prompt_tokens = \(usage?.promptTokens), completion_tokens = \(usage?.completionTokens),
                        usage_source = \(usage?.source.rawValue), finished_at = \(now), updated_at = \(now)
                    WHERE id = \(lease.jobID.uuid) AND attempt = \(lease.attempt) AND node_id = \(lease.nodeID.uuid)
                        AND state IN (\(unescaped: JobStateMachine.sqlSources(of: .succeed)))
                    RETURNING \(unescaped: Rows.jobColumns), origin
                ), dec AS (
                    UPDATE mizan_nodes SET leased = leased - 1 WHERE id = \(lease.nodeID.uuid) AND EXISTS (SELECT 1 FROM upd)
                )
                SELECT \(unescaped: Rows.jobColumns("upd")) FROM upd
                    LEFT JOIN LATERAL (
                        SELECT pg_notify(\(Self.channel), \(payload([event])))
                        WHERE upd.origin IS DISTINCT FROM \(origin)::text
                    ) AS n ON true
                """,
                logger: logger, Rows.job
            )
        case .failed(let code, let message, let retryable):
            let failed = payload([.jobFinished(id: lease.jobID, state: .failed)])
            rows = try await client.prepared(
                Key4.self,
                """
                WITH cur AS (
                    SELECT id, model, (\(retryable) AND attempt < max_attempts AND deadline > \(now)) AS again
                    FROM mizan_jobs
                    WHERE id = \(lease.jobID.uuid) AND attempt = \(lease.attempt) AND node_id = \(lease.nodeID.uuid)
                        AND state IN (\(unescaped: JobStateMachine.sqlSources(of: .fail)))
                    FOR UPDATE
                ), upd AS (
                    UPDATE mizan_jobs j SET
                        state = CASE WHEN cur.again THEN 'accepted' ELSE 'failed' END,
                        attempt = j.attempt + CASE WHEN cur.again THEN 1 ELSE 0 END,
                        node_id = CASE WHEN cur.again THEN NULL ELSE j.node_id END,
                        finished_at = CASE WHEN cur.again THEN NULL ELSE \(now)::timestamptz END,
                        error_code = CASE WHEN cur.again THEN NULL ELSE \(code)::text END,
                        error_message = CASE WHEN cur.again THEN NULL ELSE \(message) END,
                        lease_history = CASE WHEN cur.again THEN COALESCE(j.lease_history, '') || j.attempt || ','
                            || COALESCE(extract(epoch from j.leased_at)::text, '') || ',' || COALESCE(j.node_id::text, '') || ','
                            || \(String(now.timeIntervalSince1970))::text || ',' || \(JobAttempt.storedReason(code))::text || ';'
                            ELSE j.lease_history END,
                        updated_at = \(now)
                    FROM cur WHERE j.id = cur.id
                    RETURNING \(unescaped: Rows.jobColumns("j")), j.origin
                ), dec AS (
                    UPDATE mizan_nodes SET leased = leased - 1 WHERE id = \(lease.nodeID.uuid) AND EXISTS (SELECT 1 FROM upd)
                )
                SELECT \(unescaped: Rows.jobColumns("upd")) FROM upd
                    LEFT JOIN LATERAL (
                        SELECT pg_notify(\(Self.channel), CASE WHEN upd.state = 'accepted'
                            THEN json_build_object(
                                'o', \(origin)::text, 'a', json_build_array(json_build_object('m', upd.model, 'n', 1))
                            )::text
                            ELSE \(failed) END)
                        WHERE upd.state = 'accepted' OR upd.origin IS DISTINCT FROM \(origin)::text
                    ) AS n ON true
                """,
                logger: logger, Rows.job
            )
        }
        if let job = rows.first {
            publishLocally([
                job.state == .accepted ? .jobsAvailable(model: job.model, count: 1) : .jobFinished(id: job.id, state: job.state)
            ])
            return job
        }
        guard let job = try await self.job(lease.jobID) else {
            throw MizanError(.jobNotFound, "No job with id \(lease.jobID).")
        }
        throw LeaseCheck.refusal(for: lease, job: job)
            ?? MizanError(.leaseConflict, "Job \(lease.jobID) changed while it was being completed.")
    }

    public func cancel(_ id: JobID, now: Date) async throws -> Job {
        try await finishLive(id, transition: .cancel, code: JobErrorCode.cancelled, message: "The client cancelled the request.", now: now)
    }

    public func timeOut(_ id: JobID, now: Date) async throws -> Job {
        try await finishLive(id, transition: .timeOut, code: JobErrorCode.deadlineExceeded, message: "The job's deadline passed.", now: now)
    }

    private func finishLive(_ id: JobID, transition: JobTransition, code: String, message: String, now: Date) async throws -> Job {
        guard let target = JobStateMachine.next(from: .accepted, on: transition) else {
            preconditionFailure("\(transition) does not finish a queued job")
        }
        let event = StoreEvent.jobFinished(id: id, state: target)
        let rows = try await client.prepared(
            Key5.self,
            """
            WITH cur AS (
                SELECT id, state AS prev_state, node_id AS prev_node FROM mizan_jobs
                WHERE id = \(id.uuid) AND state IN (\(unescaped: JobStateMachine.sqlSources(of: transition))) FOR UPDATE
            ), upd AS (
                UPDATE mizan_jobs j SET state = \(target.rawValue), error_code = \(code), error_message = \(message),
                    finished_at = \(now), updated_at = \(now)
                FROM cur WHERE j.id = cur.id
                RETURNING \(unescaped: Rows.jobColumns("j")), j.origin, cur.prev_state, cur.prev_node
            ), dec AS (
                UPDATE mizan_nodes n SET leased = n.leased - 1 FROM upd
                WHERE upd.prev_state = 'leased' AND n.id = upd.prev_node
            )
            SELECT \(unescaped: Rows.jobColumns("upd")) FROM upd
                LEFT JOIN LATERAL (
                    SELECT pg_notify(\(Self.channel), \(payload([event])))
                    WHERE upd.origin IS DISTINCT FROM \(origin)::text
                ) AS n ON true
            """,
            logger: logger, Rows.job
        )
        if let job = rows.first {
            publishLocally([event])
            return job
        }
        guard let job = try await self.job(id) else { throw MizanError(.jobNotFound, "No job with id \(id).") }
        return job
    }
}

// Marker types naming this file's prepared statements.
private enum Key1 {}
private enum Key3 {}
private enum Key4 {}
private enum Key5 {}
private enum Key9 {}
