import Foundation
import MizanCore
import MizanStore

/// A batch of completions on SQLite: the statements and their binds, built before the write
/// (the successes in one update per 500, the failures one each), and how each completion's
/// outcome is told from what the writer returned. The job queue (``SQLiteJobQueue``) runs them.
package enum CompletionBatch {
    /// The completion of `count` succeeded jobs in one statement: an update joined to the
    /// reported values (`?1` the time, then per job its id, attempt, node, result and usage),
    /// returning the rows (``Rows/jobColumns``); or, when `lean` (jobs kept from their lease),
    /// joined by row number instead of id and returning nothing.
    package static func succeededStatement(count: Int, lean: Bool) -> String {
        SQLShapes.texts.value("succeeded \(count) \(lean)") {
            let rows = (0..<count).map { job in
                "(" + SQLShapes.marks(7, from: 2 + job * 7) + ")"
            }
            return """
                UPDATE mizan_jobs SET state = 'succeeded', result = v.column4, prompt_tokens = v.column5, completion_tokens = v.column6,
                    usage_source = v.column7, finished_at = ?1, updated_at = ?1
                FROM (VALUES \(rows.joined(separator: ", "))) AS v
                WHERE mizan_jobs.\(lean ? "seq" : "id") = v.column1 AND mizan_jobs.attempt = v.column2 AND mizan_jobs.node_id = v.column3
                    AND mizan_jobs.state IN (\(JobStateMachine.sqlSources(of: .succeed)))
                \(lean ? "" : "RETURNING \(Rows.jobColumns)")
                """
        }
    }

    /// The one conditional update that applies a failure under its lease, guarded by the
    /// transition table: `fail`, or requeued (`requeue`) while attempts and time are left.
    package static func failure(of lease: Lease, code: String, message: String, retryable: Bool, now: Date) -> (String, [SQLValue]) {
        let fence: [SQLValue] = [Rows.id(lease.jobID), .integer(lease.attempt), Rows.id(lease.nodeID)]
        let again = "?1 AND attempt < max_attempts AND deadline > ?2"
        return (
            """
            UPDATE mizan_jobs SET
                state = CASE WHEN \(again) THEN 'accepted' ELSE 'failed' END,
                node_id = CASE WHEN \(again) THEN NULL ELSE node_id END,
                finished_at = CASE WHEN \(again) THEN NULL ELSE ?2 END,
                error_code = CASE WHEN \(again) THEN NULL ELSE ?3 END,
                error_message = CASE WHEN \(again) THEN NULL ELSE ?4 END,
                attempt = attempt + CASE WHEN \(again) THEN 1 ELSE 0 END,
                lease_history = CASE WHEN \(again) THEN \(Rows.historyAppend(end: "?8", why: "?9")) ELSE lease_history END,
                updated_at = ?2
            WHERE id = ?5 AND attempt = ?6 AND node_id = ?7 AND state IN (\(JobStateMachine.sqlSources(of: .fail)))
                AND state IN (\(JobStateMachine.sqlSources(of: .requeue)))
            RETURNING \(Rows.jobColumns)
            """,
            [.integer(retryable ? 1 : 0), Rows.date(now), .text(code), .text(message)] + fence
                + [.float(now.timeIntervalSince1970), .text(JobAttempt.storedReason(code))]
        )
    }

    /// A lease's job and node ids as the text they are stored as.
    package struct Fence: Sendable {
        package let job: String
        package let node: String
    }

    /// The fences of `completions`, each node's text made once.
    package static func fences(of completions: [LeaseCompletion]) -> [Fence] {
        var nodes: [NodeID: String] = [:]
        return completions.map { item in
            let node = nodes[item.lease.nodeID] ?? item.lease.nodeID.description
            nodes[item.lease.nodeID] = node
            return Fence(job: item.lease.jobID.description, node: node)
        }
    }

    /// One update of succeeded completions: its statement, binds, and the completions' indices.
    package struct SucceededUpdate: Sendable {
        package let sql: String
        package let binds: [SQLValue]
        package let indices: [Int]
        /// Its completions' jobs were kept from their lease: it finds them by row number and
        /// returns nothing.
        package let lean: Bool
    }

    /// The updates of a batch's succeeded completions (but those `refused` already), one
    /// statement per 500 (an update joined to the reported values): those whose job was kept
    /// from its lease by row number and returning nothing, the others by id and returning their
    /// rows (``Rows/jobColumns``).
    package static func succeededUpdates(
        _ completions: [LeaseCompletion], _ fences: [Fence], kept: [Kept?], refused: [Int: Applied], now: Date
    ) -> [SucceededUpdate] {
        var updates: [SucceededUpdate] = []
        for lean in [true, false] {
            let chosen = completions.indices.filter { index in
                guard case .succeeded = completions[index].completion, refused[index] == nil else { return false }
                return (kept[index] != nil) == lean
            }
            for start in stride(from: 0, to: chosen.count, by: 500) {
                let chunk = Array(chosen[start..<min(chosen.count, start + 500)])
                var binds: [SQLValue] = [Rows.date(now)]
                binds.reserveCapacity(1 + chunk.count * 7)
                for index in chunk {
                    guard case .succeeded(let result, let usage) = completions[index].completion else { continue }
                    binds += [
                        kept[index].map { .integer($0.seq) } ?? .text(fences[index].job), .integer(completions[index].lease.attempt),
                        .text(fences[index].node), Rows.blob(result), Rows.integer(usage?.promptTokens),
                        Rows.integer(usage?.completionTokens), Rows.text(usage?.source.rawValue),
                    ]
                }
                // Padded to the next power of two with rows that match no job, so that batches of
                // any size share a few prepared statements.
                let width = SQLShapes.width(chunk.count)
                let nothing: [SQLValue] = [lean ? .integer(-1) : .text(""), .integer(0), .text(""), .null, .null, .null, .null]
                for _ in chunk.count..<width { binds += nothing }
                updates.append(SucceededUpdate(sql: succeededStatement(count: width, lean: lean), binds: binds, indices: chunk, lean: lean))
            }
        }
        return updates
    }

    // MARK: Outcomes

    /// A job kept from its lease (``LeasedJobs``), with its row number.
    package struct Kept: Sendable {
        /// The job as its lease selected it.
        package let job: Job
        /// Its row number.
        package let seq: Int

        package init(job: Job, seq: Int) {
            self.job = job
            self.seq = seq
        }
    }

    /// What a batch of completions wrote: the rows of each update of successes (none for a lean
    /// one), and the outcomes the writer settled, by completion index (each failure's; each
    /// success's too when one of them was not applied).
    package struct Written: Sendable {
        let applied: [[SQLRow]]
        let outcomes: [Int: Applied]
    }

    /// How a completion of a batch went on the writer.
    package enum Applied: Sendable {
        /// Applied; the job's row.
        case row(SQLRow)
        /// Applied to the job kept from its lease (its update returned nothing).
        case kept(Job)
        /// Refused.
        case refused(MizanError)

        /// Whether this outcome is the completion of `lease` (`node`: its node's text).
        func fits(_ lease: Lease, node: String) -> Bool {
            switch self {
            case .row(let row): row[position: 6].integer == lease.attempt && row[position: 9].string == node
            case .kept(let job): job.lease == lease
            case .refused: false
            }
        }
    }

    /// The outcome of a kept job's success after a lean update that changed fewer rows than it
    /// had completions, read inside the transaction: applied when the row is succeeded under the
    /// lease (no other completion of it can have been, see ``LeasedJobs``), else refused.
    package static func settled(_ lease: Lease, seq: Int, in db: Database) throws -> Applied {
        let row = try db.query("SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE seq = ?", [.integer(seq)]).first
        let job = try row.map(Rows.job)
        if let row, let job, job.state == .succeeded, job.attempt == lease.attempt, job.nodeID == lease.nodeID { return .row(row) }
        return refused(lease, job)
    }

    /// Why a completion under `lease` was refused, read inside the transaction.
    package static func refusal(of lease: Lease, in db: Database) throws -> Applied {
        let current = try db.query("SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE id = ?", [Rows.id(lease.jobID)])
        return refused(lease, try current.first.map(Rows.job))
    }

    /// A completion under `lease` refused, `job` as it stands (nil: there is none).
    private static func refused(_ lease: Lease, _ job: Job?) -> Applied {
        guard let job else { return .refused(MizanError(.jobNotFound, "No job with id \(lease.jobID).")) }
        return .refused(
            LeaseCheck.refusal(for: lease, job: job)
                ?? MizanError(.leaseConflict, "Job \(lease.jobID) changed while it was being completed.")
        )
    }

    /// The rows an update returned, by job id (the first of each id).
    package static func rowsByID(_ rows: [SQLRow]) -> [String: SQLRow] {
        var byID: [String: SQLRow] = [:]
        for row in rows {
            guard let id = row[position: 0].string, byID[id] == nil else { continue }
            byID[id] = row
        }
        return byID
    }

    /// What the updates applied when every one of them applied all its completions, by
    /// completion index: the kept job (a lean update returns nothing) or the row.
    package static func applied(_ updates: [SucceededUpdate], _ rows: [[SQLRow]], fences: [Fence], kept: [Kept?]) -> [Int: Applied] {
        var done: [Int: Applied] = [:]
        for (update, updated) in zip(updates, rows) {
            if update.lean {
                for index in update.indices { done[index] = kept[index].map { .kept($0.job) } }
            } else {
                let byID = rowsByID(updated)
                for index in update.indices { done[index] = byID[fences[index].job].map { .row($0) } }
            }
        }
        return done
    }
}
