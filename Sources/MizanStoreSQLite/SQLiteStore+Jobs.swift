import Foundation
import MizanCore
import MizanStore
import SQLiteNIO

extension SQLiteStore {
    public func insert(_ job: Job) async throws -> JobInsertion {
        precondition(job.state == .accepted, "only accepted jobs are inserted")
        let placeholders = Array(repeating: "?", count: 23).joined(separator: ", ")
        return try await write { transaction in
            let rows = try await transaction.query(
                "INSERT INTO mizan_jobs (\(Rows.jobColumns)) VALUES (\(placeholders)) ON CONFLICT (idempotency_key) DO NOTHING "
                    + "RETURNING id",
                Rows.binds(job)
            )
            if !rows.isEmpty {
                return (JobInsertion(job: job, inserted: true), [.jobsAvailable(model: job.model, count: 1)])
            }
            guard let key = job.idempotencyKey else { throw MizanError(.conflict, "A job with id \(job.id) exists.") }
            let existing = try await transaction.query("SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE idempotency_key = ?", [.text(key)])
            guard let found = try existing.first.map(Rows.job) else {
                throw MizanError(.conflict, "A job with this idempotency key was just removed; try again.")
            }
            return (JobInsertion(job: found, inserted: false), [])
        }
    }

    public func lease(nodeID: NodeID, limit: Int, now: Date) async throws -> [LeasedJob] {
        try await write { transaction in
            let nodes = try await transaction.query(
                "SELECT models, max_concurrency, leased, status, health FROM mizan_nodes WHERE id = ?", [Rows.id(nodeID)]
            )
            guard let node = nodes.first else { throw MizanError(.nodeNotFound, "No node with id \(nodeID).") }
            let status = node.column("status")?.string
            guard status != Node.Status.revoked.rawValue else { throw MizanError(.invalidNodeToken, "The node was revoked.") }
            try await transaction.run("UPDATE mizan_nodes SET last_seen = ? WHERE id = ?", [Rows.date(now), Rows.id(nodeID)])
            let models = (try? JSONDecoder().decode([String].self, from: Data((node.column("models")?.string ?? "[]").utf8))) ?? []
            let free = min(limit, Int(node.column("max_concurrency")?.integer ?? 0) - Int(node.column("leased")?.integer ?? 0))
            guard status == Node.Status.active.rawValue, node.column("health")?.string != Node.Health.unhealthy.rawValue, free > 0
            else { return ([], []) }
            // Each model's queue read in index order (a few entries), then merged: the cost does
            // not grow with the length of the queues.
            var candidates: [(priority: Int, id: String)] = []
            for model in Set(models) {
                let rows = try await transaction.query(
                    """
                    SELECT id, priority FROM mizan_jobs INDEXED BY mizan_jobs_queue
                    WHERE model = ? AND state = 'accepted' AND deadline > ? ORDER BY priority DESC, id LIMIT ?
                    """,
                    [.text(model), Rows.date(now), .integer(free)]
                )
                for row in rows {
                    if let id = row.column("id")?.string { candidates.append((Int(row.column("priority")?.integer ?? 0), id)) }
                }
            }
            let picked = candidates.sorted { $0.priority != $1.priority ? $0.priority > $1.priority : $0.id < $1.id }.prefix(free)
            guard !picked.isEmpty else { return ([], []) }
            let marks = Array(repeating: "?", count: picked.count).joined(separator: ", ")
            let leased = try await transaction.query(
                """
                UPDATE mizan_jobs SET state = 'leased', node_id = ?, leased_at = ?, updated_at = ?
                WHERE id IN (\(marks)) AND state IN (\(Rows.sources(.lease)))
                RETURNING \(Rows.jobColumns)
                """,
                [Rows.id(nodeID), Rows.date(now), Rows.date(now)] + picked.map { .text($0.id) }
            ).map(Rows.job)
            try await transaction.run("UPDATE mizan_nodes SET leased = leased + ? WHERE id = ?", [.integer(leased.count), Rows.id(nodeID)])
            let ordered = leased.sorted { $0.priority != $1.priority ? $0.priority > $1.priority : $0.id < $1.id }
            return (ordered.map { LeasedJob(job: $0, lease: $0.lease!) }, [])
        }
    }

    public func complete(_ lease: Lease, with completion: JobCompletion, now: Date) async throws -> Job {
        let result: Result<Job, MizanError> = try await write { transaction in
            let outcome = try await apply(lease, completion, now: now, in: transaction)
            return (outcome, (try? outcome.get()).map { [Self.event(after: $0)] } ?? [])
        }
        return try result.get()
    }

    public func complete(_ completions: [LeaseCompletion], now: Date) async throws -> [Result<Job, MizanError>] {
        guard !completions.isEmpty else { return [] }
        return try await write { transaction in
            var results: [Result<Job, MizanError>] = []
            results.reserveCapacity(completions.count)
            for item in completions {
                results.append(try await apply(item.lease, item.completion, now: now, in: transaction))
            }
            return (results, StoreEvent.describing(results.compactMap { try? $0.get() }))
        }
    }

    /// The event that tells waiters about a job after a completion.
    static func event(after job: Job) -> StoreEvent {
        job.state == .accepted ? .jobsAvailable(model: job.model, count: 1) : .jobFinished(id: job.id, state: job.state)
    }

    /// Applies one completion under its lease: one conditional update guarded by the
    /// transition table, or the reason it was refused.
    private func apply(_ lease: Lease, _ completion: JobCompletion, now: Date, in transaction: Transaction) async throws -> Result<
        Job, MizanError
    > {
        let fence: [SQLiteData] = [Rows.id(lease.jobID), .integer(lease.attempt), Rows.id(lease.nodeID)]
        let rows: [SQLiteRow]
        switch completion {
        case .succeeded(let result, let usage):
            rows = try await transaction.query(
                """
                UPDATE mizan_jobs SET state = 'succeeded', result = ?, prompt_tokens = ?, completion_tokens = ?, usage_source = ?,
                    finished_at = ?, updated_at = ?
                WHERE id = ? AND attempt = ? AND node_id = ? AND state IN (\(Rows.sources(.succeed)))
                RETURNING \(Rows.jobColumns)
                """,
                [
                    Rows.blob(result), Rows.integer(usage?.promptTokens), Rows.integer(usage?.completionTokens),
                    Rows.text(usage?.source.rawValue), Rows.date(now), Rows.date(now),
                ] + fence
            )
        case .failed(let code, let message, let retryable):
            // Requeued while attempts and time are left (the `requeue` transition), else failed.
            rows = try await transaction.query(
                """
                UPDATE mizan_jobs SET
                    state = CASE WHEN ?1 AND attempt < max_attempts AND deadline > ?2 THEN 'accepted' ELSE 'failed' END,
                    node_id = CASE WHEN ?1 AND attempt < max_attempts AND deadline > ?2 THEN NULL ELSE node_id END,
                    finished_at = CASE WHEN ?1 AND attempt < max_attempts AND deadline > ?2 THEN NULL ELSE ?2 END,
                    error_code = CASE WHEN ?1 AND attempt < max_attempts AND deadline > ?2 THEN NULL ELSE ?3 END,
                    error_message = CASE WHEN ?1 AND attempt < max_attempts AND deadline > ?2 THEN NULL ELSE ?4 END,
                    attempt = attempt + CASE WHEN ?1 AND attempt < max_attempts AND deadline > ?2 THEN 1 ELSE 0 END,
                    updated_at = ?2
                WHERE id = ?5 AND attempt = ?6 AND node_id = ?7 AND state IN (\(Rows.sources(.fail)))
                    AND state IN (\(Rows.sources(.requeue)))
                RETURNING \(Rows.jobColumns)
                """,
                [.integer(retryable ? 1 : 0), Rows.date(now), .text(code), .text(message)] + fence
            )
        }
        if let row = rows.first {
            try await transaction.run("UPDATE mizan_nodes SET leased = max(0, leased - 1) WHERE id = ?", [Rows.id(lease.nodeID)])
            return .success(try Rows.job(row))
        }
        let current = try await transaction.query("SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE id = ?", [Rows.id(lease.jobID)])
        guard let job = try current.first.map(Rows.job) else {
            return .failure(MizanError(.jobNotFound, "No job with id \(lease.jobID)."))
        }
        return .failure(
            LeaseCheck.refusal(for: lease, job: job)
                ?? MizanError(.leaseConflict, "Job \(lease.jobID) changed while it was being completed.")
        )
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
        return try await write { transaction in
            let before = try await transaction.query("SELECT state, node_id FROM mizan_jobs WHERE id = ?", [Rows.id(id)])
            guard let previous = before.first else { throw MizanError(.jobNotFound, "No job with id \(id).") }
            let rows = try await transaction.query(
                """
                UPDATE mizan_jobs SET state = ?, error_code = ?, error_message = ?, finished_at = ?, updated_at = ?
                WHERE id = ? AND state IN (\(Rows.sources(transition)))
                RETURNING \(Rows.jobColumns)
                """,
                [.text(target.rawValue), .text(code), .text(message), Rows.date(now), Rows.date(now), Rows.id(id)]
            )
            if let row = rows.first {
                if previous.column("state")?.string == JobState.leased.rawValue, let node = previous.column("node_id"), !node.isNull {
                    try await transaction.run("UPDATE mizan_nodes SET leased = max(0, leased - 1) WHERE id = ?", [node])
                }
                return (try Rows.job(row), [.jobFinished(id: id, state: target)])
            }
            let current = try await transaction.query("SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE id = ?", [Rows.id(id)])
            guard let job = try current.first.map(Rows.job) else { throw MizanError(.jobNotFound, "No job with id \(id).") }
            return (job, [])
        }
    }
}
