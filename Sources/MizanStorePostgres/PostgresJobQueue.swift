import Foundation
import Logging
import MizanCore
import MizanStore
import NIOCore
import PostgresNIO

/// The job queue: inserting jobs, leasing them to nodes with `FOR UPDATE SKIP LOCKED`, every
/// later transition (completion, failure and requeue, cancel, time-out, lease recovery), the
/// retention sweep, and reading jobs.
///
/// Every transition is one conditional statement that also keeps the leasing node's `leased`
/// count in step and, when another instance must hear of it, sends the notification in the
/// same statement. Events of a change are delivered to this instance's handlers at once.
struct PostgresJobQueue: Sendable {
    private let context: PostgresStoreContext
    private var client: StoreClient { context.client }
    private var events: PostgresEventChannel { context.events }
    private var logger: Logger { context.logger }

    /// Creates the queue over the store's shared context.
    init(context: PostgresStoreContext) {
        self.context = context
    }

    /// Inserts an accepted job with its fair tag (see `JobStore`), or answers the job already
    /// stored under its idempotency key; refused when its key has `maxQueued` jobs queued (a
    /// count read in the same statement: two instances inserting at once for one key may each
    /// pass it once).
    func insert(_ job: Job, maxQueued: Int? = nil) async throws -> JobInsertion {
        precondition(job.state == .accepted, "only accepted jobs are inserted")
        let event = StoreEvent.jobsAvailable(model: job.model, count: 1)
        // A job with no key (an embedder's) shares one tag sequence with the others without.
        let key = job.apiKeyID ?? ""
        let cap = maxQueued ?? Int.max
        let rows = try await client.prepared(
            InsertJob.self,
            """
            WITH ins AS (
                INSERT INTO mizan_jobs (\(unescaped: Rows.jobColumns), origin)
                SELECT
                    \(job.id.uuid), \(job.requestID), \(job.model), \(job.body), \(job.stream), 'accepted',
                    \(job.attempt), \(job.maxAttempts), \(job.priority), NULL, \(job.deadline), \(job.createdAt),
                    NULL, NULL, \(job.updatedAt), NULL, NULL, NULL, NULL, NULL, NULL, \(job.idempotencyKey), \(job.apiKeyID),
                    \(job.endpoint.rawValue), NULL, \(job.scheduling.weight),
                    COALESCE(
                        (SELECT max(q.fair_tag) FROM mizan_jobs q
                            WHERE q.state = 'accepted' AND coalesce(q.api_key_id, '') = \(key) AND q.model = \(job.model)
                                AND q.priority = \(job.priority)) + 1.0 / \(job.scheduling.weight),
                        (SELECT min(q.fair_tag) FROM mizan_jobs q
                            WHERE q.state = 'accepted' AND q.model = \(job.model) AND q.priority = \(job.priority)),
                        0),
                    \(job.scheduling.classSince ?? job.createdAt), \(job.scheduling.preferredNode?.uuid), \(job.scheduling.preferredUntil),
                    \(job.scheduling.affinity.rawValue), \(events.origin)
                -- The key's queue is counted only when it is capped (the count is read when first needed).
                WHERE \(maxQueued == nil) OR (SELECT count(*) FROM mizan_jobs q WHERE q.state = 'accepted' AND coalesce(q.api_key_id, '') = \(key)) < \(cap)
                ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                RETURNING \(unescaped: Rows.jobColumns)
            )
            SELECT \(unescaped: Rows.jobColumns("ins")) FROM ins,
                LATERAL (SELECT pg_notify(\(PostgresEventChannel.name), \(events.payload([event]))) WHERE ins.id IS NOT NULL) AS n
            """,
            logger: logger, Rows.job
        )
        if let inserted = rows.first {
            events.publishLocally([event])
            return JobInsertion(job: inserted, inserted: true)
        }
        guard let idempotencyKey = job.idempotencyKey else {
            if let maxQueued { throw JobErrorCode.queueFull(maxQueued) }
            throw MizanError(.internalError, "The job was not inserted.")
        }
        let existing = try await client.prepared(
            JobByIdempotencyKey.self, "SELECT \(unescaped: Rows.jobColumns) FROM mizan_jobs WHERE idempotency_key = \(idempotencyKey)",
            logger: logger, Rows.job)
        guard let found = existing.first else {
            if let maxQueued { throw JobErrorCode.queueFull(maxQueued) }
            throw MizanError(.conflict, "A job with this idempotency key was just removed; try again.")
        }
        return JobInsertion(job: found, inserted: false)
    }

    /// Leases up to `limit` queued jobs to a node, within its free capacity, highest priority first.
    func lease(nodeID: NodeID, limit: Int, now: Date, headroom: LeaseHeadroom? = nil) async throws -> [LeasedJob] {
        // Without headroom every free slot is open to any job (and no rank is below Int.min).
        let kept = headroom?.slots ?? 0
        let rank = headroom?.minimumRank ?? Int.min
        // Not a prepared statement on purpose: a plan cached while the queue was small
        // (a sequential scan) would stay in use after it grew. Planned per call, it always
        // takes the index-ordered queue scan; the cost is spread over the jobs it leases.
        let leased = try await client.rows(
            """
            WITH node AS (
                SELECT models, endpoints, GREATEST(0, LEAST(\(limit), max_concurrency - leased)) AS free,
                    GREATEST(0, max_concurrency - leased - \(kept)) AS open,
                    (status = 'active' AND health <> 'unhealthy') AS ok
                FROM mizan_nodes WHERE id = \(nodeID.uuid) FOR UPDATE
            ), candidates AS (
                -- Per model, an index-ordered scan of its queue: cost does not grow with queue length.
                SELECT c.id, c.priority, c.fair_tag FROM node, unnest(node.models) AS m(model),
                    LATERAL (
                        SELECT j.id, j.priority, j.fair_tag FROM mizan_jobs j
                        WHERE j.state = 'accepted' AND j.model = m.model AND j.deadline > \(now) AND j.endpoint = ANY(node.endpoints)
                            AND (j.preferred_node IS NULL OR j.preferred_node = \(nodeID.uuid) OR j.preferred_until <= \(now))
                        ORDER BY j.priority DESC, j.fair_tag, j.id
                        LIMIT \(limit)
                        FOR UPDATE SKIP LOCKED
                    ) AS c
                WHERE node.ok AND node.free > 0
            ), ranked AS (
                SELECT id, priority, row_number() OVER (ORDER BY priority DESC, fair_tag, id) AS place FROM candidates
                ORDER BY priority DESC, fair_tag, id LIMIT (SELECT free FROM node)
            ), picked AS (
                -- Past the node's open slots, only jobs of the headroom's rank (live traffic).
                SELECT id FROM ranked WHERE place <= (SELECT open FROM node) OR priority >= \(rank)
            ), upd AS (
                UPDATE mizan_jobs j SET state = 'leased', node_id = \(nodeID.uuid), leased_at = \(now), updated_at = \(now)
                FROM picked WHERE j.id = picked.id AND j.state IN (\(unescaped: JobStateMachine.sqlSources(of: .lease)))
                RETURNING \(unescaped: Rows.jobColumns("j"))
            ), bump AS (
                UPDATE mizan_nodes SET leased = leased + (SELECT count(*) FROM upd), last_seen = \(now)
                WHERE id = \(nodeID.uuid)
            )
            SELECT \(unescaped: Rows.jobColumns) FROM upd ORDER BY priority DESC, fair_tag, id
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

    /// Ends a lease: the job succeeds, fails, or (a retryable failure with attempts left) is requeued.
    func complete(_ lease: Lease, with completion: JobCompletion, now: Date) async throws -> Job {
        let rows: [Job]
        switch completion {
        case .succeeded(let result, let usage):
            let event = StoreEvent.jobFinished(id: lease.jobID, state: .succeeded)
            rows = try await client.prepared(
                CompleteSucceeded.self,
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
                        SELECT pg_notify(\(PostgresEventChannel.name), \(events.payload([event])))
                        WHERE upd.origin IS DISTINCT FROM \(events.origin)::text
                    ) AS n ON true
                """,
                logger: logger, Rows.job
            )
        case .failed(let code, let message, let retryable):
            let failed = events.payload([.jobFinished(id: lease.jobID, state: .failed)])
            rows = try await client.prepared(
                CompleteFailed.self,
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
                        SELECT pg_notify(\(PostgresEventChannel.name), CASE WHEN upd.state = 'accepted'
                            THEN json_build_object(
                                'o', \(events.origin)::text, 'a', json_build_array(json_build_object('m', upd.model, 'n', 1))
                            )::text
                            ELSE \(failed) END)
                        WHERE upd.state = 'accepted' OR upd.origin IS DISTINCT FROM \(events.origin)::text
                    ) AS n ON true
                """,
                logger: logger, Rows.job
            )
        }
        if let job = rows.first {
            events.publishLocally([
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

    /// Cancels a queued or leased job (a finished job is answered as it is).
    func cancel(_ id: JobID, now: Date) async throws -> Job {
        try await finishLive(id, transition: .cancel, code: JobErrorCode.cancelled, message: "The client cancelled the request.", now: now)
    }

    /// Times out a queued or leased job (a finished job is answered as it is).
    func timeOut(_ id: JobID, now: Date) async throws -> Job {
        try await finishLive(id, transition: .timeOut, code: JobErrorCode.deadlineExceeded, message: "The job's deadline passed.", now: now)
    }

    private func finishLive(_ id: JobID, transition: JobTransition, code: String, message: String, now: Date) async throws -> Job {
        guard let target = JobStateMachine.next(from: .accepted, on: transition) else {
            preconditionFailure("\(transition) does not finish a queued job")
        }
        let event = StoreEvent.jobFinished(id: id, state: target)
        let rows = try await client.prepared(
            FinishLive.self,
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
                    SELECT pg_notify(\(PostgresEventChannel.name), \(events.payload([event])))
                    WHERE upd.origin IS DISTINCT FROM \(events.origin)::text
                ) AS n ON true
            """,
            logger: logger, Rows.job
        )
        return try await finished(rows, id: id, event: event)
    }

    /// Withdraws a queued job for a spill (see `JobStore`): only while it is `accepted`, so a
    /// job leased meanwhile (its row locked or changed) is never also withdrawn.
    func withdraw(_ id: JobID, now: Date) async throws -> Job {
        let event = StoreEvent.jobFinished(id: id, state: .failed)
        let rows = try await client.prepared(
            WithdrawJob.self,
            """
            WITH upd AS (
                UPDATE mizan_jobs SET state = 'failed', error_code = \(JobErrorCode.spilled),
                    error_message = 'No node took the job in time; a provider route served it.', finished_at = \(now), updated_at = \(now)
                WHERE id = \(id.uuid) AND state = 'accepted'
                RETURNING \(unescaped: Rows.jobColumns), origin
            )
            SELECT \(unescaped: Rows.jobColumns("upd")) FROM upd
                LEFT JOIN LATERAL (
                    SELECT pg_notify(\(PostgresEventChannel.name), \(events.payload([event])))
                    WHERE upd.origin IS DISTINCT FROM \(events.origin)::text
                ) AS n ON true
            """,
            logger: logger, Rows.job
        )
        return try await finished(rows, id: id, event: event)
    }

    /// The job a conditional finish returned, its event published here; or, when it changed
    /// nothing (the job had moved on), the job as it is.
    private func finished(_ rows: [Job], id: JobID, event: StoreEvent) async throws -> Job {
        if let job = rows.first {
            events.publishLocally([event])
            return job
        }
        guard let job = try await self.job(id) else { throw MizanError(.jobNotFound, "No job with id \(id).") }
        return job
    }

    /// Raises the queued jobs waiting in their class since `waitingSince` by one class (see
    /// `JobStore`): each takes the lowest tag queued in its new class. Rows another instance
    /// holds locked (a lease) are skipped: they are leaving the queue.
    func promote(waitingSince: Date, now: Date) async throws -> Int {
        let rows = try await client.prepared(
            PromoteJobs.self,
            """
            WITH due AS (
                SELECT id FROM mizan_jobs
                WHERE state = 'accepted' AND priority < 1 AND class_since <= \(waitingSince)
                ORDER BY class_since LIMIT 10000
                FOR UPDATE SKIP LOCKED
            )
            UPDATE mizan_jobs j SET priority = j.priority + 1, class_since = \(now), updated_at = \(now),
                fair_tag = COALESCE(
                    (SELECT min(q.fair_tag) FROM mizan_jobs q
                        WHERE q.state = 'accepted' AND q.model = j.model AND q.priority = j.priority + 1),
                    0)
            FROM due WHERE j.id = due.id AND j.state = 'accepted'
            RETURNING j.id
            """,
            logger: logger, { try $0.decode(UUID.self) }
        )
        return rows.count
    }

    /// Applies every success of the batch in one statement (one round trip, one commit);
    /// failures, which may requeue, go one by one.
    func complete(_ completions: [LeaseCompletion], now: Date) async throws -> [Result<Job, MizanError>] {
        var results = [Result<Job, MizanError>?](repeating: nil, count: completions.count)
        var successes: [(index: Int, lease: Lease, result: Data, usage: TokenUsage?)] = []
        for (index, item) in completions.enumerated() {
            if case .succeeded(let result, let usage) = item.completion {
                successes.append((index, item.lease, result, usage))
            }
        }
        if !successes.isEmpty {
            let applied = try await client.prepared(
                BatchSuccess.self,
                """
                WITH input AS (
                    SELECT * FROM unnest(
                        \(successes.map(\.lease.jobID.uuid))::uuid[], \(successes.map(\.lease.attempt))::bigint[],
                        \(successes.map(\.lease.nodeID.uuid))::uuid[], \(successes.map { ByteBuffer(bytes: $0.result) })::bytea[],
                        \(successes.map { $0.usage?.promptTokens ?? -1 })::bigint[],
                        \(successes.map { $0.usage?.completionTokens ?? -1 })::bigint[],
                        \(successes.map { $0.usage?.source.rawValue ?? "" })::text[]
                    ) AS t(id, attempt, node_id, result, prompt, completion, source)
                ), upd AS (
                    UPDATE mizan_jobs j SET state = 'succeeded', result = i.result,
                        prompt_tokens = NULLIF(i.prompt, -1), completion_tokens = NULLIF(i.completion, -1),
                        usage_source = NULLIF(i.source, ''), finished_at = \(now), updated_at = \(now)
                    FROM input i
                    WHERE j.id = i.id AND j.attempt = i.attempt AND j.node_id = i.node_id
                        AND j.state IN (\(unescaped: JobStateMachine.sqlSources(of: .succeed)))
                    RETURNING \(unescaped: Rows.jobColumns("j")), j.origin
                ), dec AS (
                    UPDATE mizan_nodes n SET leased = n.leased - c.count
                    FROM (SELECT node_id, count(*) AS count FROM upd GROUP BY node_id) c
                    WHERE n.id = c.node_id
                )
                SELECT \(unescaped: Rows.jobColumns), origin FROM upd
                """,
                logger: logger
            ) { row in (try Rows.job(row), try row.makeRandomAccess()[Rows.jobColumnCount].decode(String?.self)) }
            var byID = Dictionary(applied.map { ($0.0.id, $0) }, uniquingKeysWith: { a, _ in a })
            var finished: [StoreEvent] = []
            var remote: [StoreEvent] = []
            for success in successes {
                if let (job, origin) = byID.removeValue(forKey: success.lease.jobID) {
                    results[success.index] = .success(job)
                    let event = StoreEvent.jobFinished(id: job.id, state: job.state)
                    finished.append(event)
                    if origin != events.origin { remote.append(event) }
                }
            }
            events.publishLocally(finished)
            try await events.notify(remote)
        }
        for (index, item) in completions.enumerated() where results[index] == nil {
            do {
                results[index] = .success(try await complete(item.lease, with: item.completion, now: now))
            } catch let error as MizanError {
                results[index] = .failure(error)
            }
        }
        return results.map { $0! }
    }

    /// Times out every live job whose deadline has passed, in batches.
    func timeOutExpired(now: Date) async throws -> [Job] {
        var all: [Job] = []
        while true {
            let batch = try await client.prepared(
                TimeOutExpired.self,
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
        let changes = all.map { StoreEvent.jobFinished(id: $0.id, state: $0.state) }
        events.publishLocally(changes)
        try await events.notify(changes)
        return all
    }

    /// Requeues (or fails, with no attempt left) the jobs leased to nodes revoked or not seen since `staleBefore`.
    func recoverLeases(staleBefore: Date, now: Date) async throws -> [Job] {
        let changed = try await client.prepared(
            RecoverStaleLeases.self,
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
        let changes = StoreEvent.describing(changed)
        events.publishLocally(changes)
        try await events.notify(changes)
        return changed
    }

    /// Requeues (or fails, with no attempt left) the jobs leased to one node, found gone.
    func recoverLeases(of nodeID: NodeID, now: Date) async throws -> [Job] {
        let changed = try await client.prepared(
            RecoverNodeLeases.self,
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
        let changes = StoreEvent.describing(changed)
        events.publishLocally(changes)
        try await events.notify(changes)
        return changed
    }

    /// Deletes jobs that finished before `finishedBefore`, in batches.
    /// - Returns: How many were deleted.
    func prune(finishedBefore: Date) async throws -> Int {
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

    // MARK: Reading jobs

    /// The job with `id`, if any.
    func job(_ id: JobID) async throws -> Job? {
        try await client.prepared(
            JobByID.self, "SELECT \(unescaped: Rows.jobColumns) FROM mizan_jobs WHERE id = \(id.uuid)", logger: logger, Rows.job
        ).first
    }

    /// The jobs among `ids` that exist.
    func jobs(_ ids: [JobID]) async throws -> [Job] {
        guard !ids.isEmpty else { return [] }
        return try await client.prepared(
            JobsByID.self, "SELECT \(unescaped: Rows.jobColumns) FROM mizan_jobs WHERE id = ANY(\(ids.map(\.uuid)))", logger: logger,
            Rows.job)
    }

    /// The newest jobs matching `filter`, newest first.
    func jobs(matching filter: JobFilter, limit: Int) async throws -> [Job] {
        let limit = max(0, limit)
        let state = filter.state?.rawValue
        let model = filter.model
        let before = filter.before?.uuid
        if state == nil, model == nil, before == nil {
            return try await client.prepared(
                JobsNewest.self, "SELECT \(unescaped: Rows.jobColumns) FROM mizan_jobs ORDER BY id DESC LIMIT \(limit)", logger: logger,
                Rows.job
            )
        }
        return try await client.prepared(
            JobsFiltered.self,
            """
            SELECT \(unescaped: Rows.jobColumns) FROM mizan_jobs
            WHERE (\(state)::text IS NULL OR state = \(state)) AND (\(model)::text IS NULL OR model = \(model))
              AND (\(before)::uuid IS NULL OR id < \(before))
            ORDER BY id DESC LIMIT \(limit)
            """,
            logger: logger, Rows.job)
    }

    /// The jobs leased to a node, by id.
    func leasedJobs(nodeID: NodeID) async throws -> [Job] {
        try await client.prepared(
            LeasedJobsOfNode.self,
            "SELECT \(unescaped: Rows.jobColumns) FROM mizan_jobs WHERE state = 'leased' AND node_id = \(nodeID.uuid) ORDER BY id",
            logger: logger, Rows.job
        )
    }

    /// Queued jobs per model.
    func queueDepth() async throws -> [String: Int] {
        let rows = try await client.rows(
            "SELECT model, count(*) FROM mizan_jobs WHERE state = 'accepted' GROUP BY model",
            logger: logger
        ) { try $0.decode((String, Int).self) }
        return Dictionary(rows, uniquingKeysWith: +)
    }
}

// Marker types naming this file's prepared statements.
private enum InsertJob {}
private enum WithdrawJob {}
private enum PromoteJobs {}
private enum JobByIdempotencyKey {}
private enum CompleteSucceeded {}
private enum CompleteFailed {}
private enum FinishLive {}
private enum BatchSuccess {}
private enum TimeOutExpired {}
private enum RecoverStaleLeases {}
private enum RecoverNodeLeases {}
private enum JobByID {}
private enum JobsByID {}
private enum JobsFiltered {}
private enum JobsNewest {}
private enum LeasedJobsOfNode {}
