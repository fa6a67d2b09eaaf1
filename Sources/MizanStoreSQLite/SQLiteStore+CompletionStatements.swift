import Foundation
import MizanCore
import MizanStore

/// The statements of a batch of completions and their binds, built before the write.
extension SQLiteStore {
    /// The completion of `count` succeeded jobs in one statement: an update joined to the
    /// reported values (`?1` the time, then per job its id, attempt, node, result and usage),
    /// returning the rows (``Rows/jobColumns``); or, when `lean` (jobs kept from their lease),
    /// joined by row number instead of id and returning nothing.
    static func succeededStatement(count: Int, lean: Bool) -> String {
        statementTexts.value("succeeded \(count) \(lean)") {
            let rows = (0..<count).map { job in
                "(" + marks(7, from: 2 + job * 7) + ")"
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
    static func failure(of lease: Lease, code: String, message: String, retryable: Bool, now: Date) -> (String, [SQLValue]) {
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
    struct Fence {
        let job: String
        let node: String
    }

    /// The fences of `completions`, each node's text made once.
    static func fences(of completions: [LeaseCompletion]) -> [Fence] {
        var nodes: [NodeID: String] = [:]
        return completions.map { item in
            let node = nodes[item.lease.nodeID] ?? item.lease.nodeID.description
            nodes[item.lease.nodeID] = node
            return Fence(job: item.lease.jobID.description, node: node)
        }
    }

    /// One update of succeeded completions: its statement, binds, and the completions' indices.
    struct SucceededUpdate: Sendable {
        let sql: String
        let binds: [SQLValue]
        let indices: [Int]
        /// Its completions' jobs were kept from their lease: it finds them by row number and
        /// returns nothing.
        let lean: Bool
    }

    /// The updates of a batch's succeeded completions (but those `refused` already), one
    /// statement per 500 (an update joined to the reported values): those whose job was kept
    /// from its lease by row number and returning nothing, the others by id and returning their
    /// rows (``Rows/jobColumns``).
    static func succeededUpdates(
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
                let width = Self.width(chunk.count)
                let nothing: [SQLValue] = [lean ? .integer(-1) : .text(""), .integer(0), .text(""), .null, .null, .null, .null]
                for _ in chunk.count..<width { binds += nothing }
                updates.append(SucceededUpdate(sql: succeededStatement(count: width, lean: lean), binds: binds, indices: chunk, lean: lean))
            }
        }
        return updates
    }
}
