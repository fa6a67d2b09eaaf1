import Foundation
import MizanCore
import MizanStore

extension SQLiteStore {
    public func timeOutExpired(now: Date) async throws -> [Job] {
        let expired: [Job] = try await write { db in
            let expired = try db.query(
                """
                UPDATE mizan_jobs SET state = ?, error_code = ?, error_message = ?, finished_at = ?, updated_at = ?
                WHERE finished_at IS NULL AND deadline <= ? AND state IN (\(JobStateMachine.sqlSources(of: .timeOut)))
                RETURNING \(Rows.jobColumns)
                """,
                [
                    .text(JobState.timedOut.rawValue), .text(JobErrorCode.deadlineExceeded), .text("The job's deadline passed."),
                    Rows.date(now), Rows.date(now), Rows.date(now),
                ]
            ).map(Rows.job)
            return (expired, expired.map { .jobFinished(id: $0.id, state: $0.state) })
        }
        for job in expired { leasedJobs.forget(job.id) }
        return expired
    }

    public func recoverLeases(staleBefore: Date, now: Date) async throws -> [Job] {
        try await takeBackLeases(
            lost: """
                SELECT j.id FROM mizan_jobs j LEFT JOIN mizan_nodes n ON n.id = j.node_id
                WHERE j.state = 'leased' AND (n.id IS NULL OR n.status = 'revoked' OR coalesce(n.last_seen, -1e300) < ?1)
                """,
            bind: Rows.date(staleBefore), now: now)
    }

    public func recoverLeases(of nodeID: NodeID, now: Date) async throws -> [Job] {
        try await takeBackLeases(lost: "SELECT id FROM mizan_jobs WHERE state = 'leased' AND node_id = ?1", bind: Rows.id(nodeID), now: now)
    }

    /// Requeues the leased jobs that `lost` selects (its one parameter is `?1`, bound to `bind`)
    /// while attempts and time are left, and fails the rest as `node_lost`.
    private func takeBackLeases(lost: String, bind: SQLValue, now: Date) async throws -> [Job] {
        let changed: [Job] = try await write { db in
            // Requeued while attempts and time are left (`requeue`), else failed as node_lost (`fail`).
            let requeued = try db.query(
                """
                UPDATE mizan_jobs SET state = 'accepted', attempt = attempt + 1, node_id = NULL, updated_at = ?2,
                    lease_history = \(Rows.historyAppend(end: "?3", why: "?4"))
                WHERE id IN (\(lost)) AND state IN (\(JobStateMachine.sqlSources(of: .requeue)))
                    AND attempt < max_attempts AND deadline > ?2
                RETURNING \(Rows.jobColumns)
                """,
                [bind, Rows.date(now), .float(now.timeIntervalSince1970), .text(JobErrorCode.nodeLost)]
            ).map(Rows.job)
            let failed = try db.query(
                """
                UPDATE mizan_jobs SET state = 'failed', error_code = ?3, error_message = ?4, finished_at = ?2, updated_at = ?2
                WHERE id IN (\(lost)) AND state IN (\(JobStateMachine.sqlSources(of: .fail)))
                RETURNING \(Rows.jobColumns)
                """,
                [
                    bind, Rows.date(now), .text(JobErrorCode.nodeLost),
                    .text("The node running the job was lost and no attempt is left."),
                ]
            ).map(Rows.job)
            let changed = requeued + failed
            return (changed, StoreEvent.describing(changed))
        }
        for job in changed { leasedJobs.forget(job.id) }
        return changed
    }

    /// Deletes finished jobs older than `finishedBefore`, and usage records older than it by the
    /// usage retention, so that the file does not grow without bound.
    public func prune(finishedBefore: Date) async throws -> Int {
        let pruned: Int = try await write { db in
            let deleted = try db.query(
                """
                DELETE FROM mizan_jobs WHERE id IN (
                    SELECT id FROM mizan_jobs INDEXED BY mizan_jobs_finished
                    WHERE finished_at IS NOT NULL AND finished_at < ? AND state IN ('succeeded', 'failed', 'timed_out') LIMIT 10000
                ) RETURNING id
                """,
                [Rows.date(finishedBefore)]
            )
            try db.query(
                "DELETE FROM mizan_usage WHERE created_at < ?",
                [Rows.date(finishedBefore.addingTimeInterval(-self.usageRetention.timeInterval))]
            )
            return (deleted.count, [])
        }
        // Give the pages back to the checkpointed WAL, so that it stays small.
        // (On the writer, outside any transaction: a checkpoint cannot run inside one.)
        if pruned > 0 { _ = try? await writer.run { try $0.checkpoint() } }
        return pruned
    }
}
