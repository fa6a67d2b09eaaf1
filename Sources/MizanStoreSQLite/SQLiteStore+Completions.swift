import Foundation
import MizanCore
import MizanStore

extension SQLiteStore {
    public func complete(_ lease: Lease, with completion: JobCompletion, now: Date) async throws -> Job {
        // A batch of one: a success of a job kept from its lease is applied without its row read back.
        guard let result = try await complete([LeaseCompletion(lease: lease, completion: completion)], now: now).first else {
            preconditionFailure("one result per completion")
        }
        return try result.get()
    }

    public func complete(_ completions: [LeaseCompletion], now: Date) async throws -> [Result<Job, MizanError>] {
        guard !completions.isEmpty else { return [] }
        // Everything but the statements is done off the writer: the ids as text, the statements
        // and their binds before the write, the rows read into jobs after it.
        let fences = Self.fences(of: completions)
        // Each success of a kept job holds it until the write is done (see `LeasedJobs`): a
        // second success of the same lease meanwhile is refused without a statement.
        var taken: [Kept?] = Array(repeating: nil, count: completions.count)
        var refused: [Int: Applied] = [:]
        var held: [Lease] = []
        for (index, item) in completions.enumerated() {
            guard case .succeeded = item.completion else { continue }
            switch leasedJobs.take(item.lease) {
            case .kept(let job, let seq):
                taken[index] = Kept(job: job, seq: seq)
                held.append(item.lease)
            case .completing:
                refused[index] = .refused(
                    MizanError(.leaseConflict, "Job \(item.lease.jobID) is already being completed under this lease."))
            case .none: break
            }
        }
        defer { leasedJobs.release(held) }
        let kept = taken
        let early = refused
        let updates = Self.succeededUpdates(completions, fences, kept: kept, refused: early, now: now)
        let failures: [(index: Int, statement: (String, [SQLValue]))] = completions.indices.compactMap { index in
            guard case .failed(let code, let message, let retryable) = completions[index].completion else { return nil }
            return (index, Self.failure(of: completions[index].lease, code: code, message: message, retryable: retryable, now: now))
        }
        // One statement changes the file at most (a refused completion only reads): no savepoint.
        let written: Written = try await write(single: updates.count + failures.count <= 1, short: true) { db in
            var applied: [[SQLRow]] = []
            var changed: [Int] = []
            applied.reserveCapacity(updates.count)
            var all = true
            for update in updates {
                let rows = try db.query(update.sql, update.binds)
                // A lean update returns nothing: the rows it changed are counted.
                let count = update.lean ? db.changes : rows.count
                all = all && count == update.indices.count
                applied.append(rows)
                changed.append(count)
            }
            var outcomes: [Int: Applied] = [:]
            for (index, (sql, binds)) in failures {
                outcomes[index] = try db.query(sql, binds).first.map { .row($0) } ?? Self.refusal(of: completions[index].lease, in: db)
            }
            // Each success applied (as many rows as completions: the ids were distinct and
            // every fence held): they are matched to their rows after the write. Else each
            // success's outcome is settled here, with why the others were refused.
            guard !all else { return (Written(applied: applied, outcomes: outcomes), []) }
            for (position, update) in updates.enumerated() {
                if update.lean {
                    for index in update.indices {
                        guard let job = kept[index] else { continue }
                        outcomes[index] =
                            changed[position] == update.indices.count
                            ? .kept(job.job) : try Self.settled(completions[index].lease, seq: job.seq, in: db)
                    }
                    continue
                }
                var rows = Self.rowsByID(applied[position])
                for index in update.indices {
                    // Taken once: the same lease twice in a batch is refused the second time.
                    if let row = rows[fences[index].job], Applied.row(row).fits(completions[index].lease, node: fences[index].node) {
                        rows[fences[index].job] = nil
                        outcomes[index] = .row(row)
                    } else {
                        outcomes[index] = try Self.refusal(of: completions[index].lease, in: db)
                    }
                }
            }
            return (Written(applied: applied, outcomes: outcomes), [])
        }
        // Matched after the write only when the writer did not settle them.
        let settled = written.outcomes.count + early.count == completions.count
        let done = settled ? [:] : Self.applied(updates, written.applied, fences: fences, kept: kept)
        let results: [Result<Job, MizanError>] = try completions.indices.map { index in
            // Every success is applied or refused: only a row without its id has no outcome.
            guard let outcome = early[index] ?? written.outcomes[index] ?? done[index] else { throw Rows.corrupt("id") }
            switch outcome {
            case .row(let row): return .success(try Rows.job(row))
            case .kept(var job):
                guard case .succeeded(let result, let usage) = completions[index].completion else {
                    preconditionFailure("only successes are kept")
                }
                // What the completion's statement set, as a read of the row would give it.
                job.state = .succeeded
                job.result = result
                job.usage = usage
                job.finishedAt = now
                job.updatedAt = now
                return .success(job)
            case .refused(let refusal): return .failure(refusal)
            }
        }
        hub.publish(StoreEvent.describing(results.compactMap { try? $0.get() }))
        return results
    }

    /// A job kept from its lease (``LeasedJobs``), with its row number.
    struct Kept: Sendable {
        let job: Job
        let seq: Int
    }

    /// What a batch of completions wrote: the rows of each update of successes (none for a lean
    /// one), and the outcomes the writer settled, by completion index (each failure's; each
    /// success's too when one of them was not applied).
    struct Written: Sendable {
        let applied: [[SQLRow]]
        let outcomes: [Int: Applied]
    }

    /// How a completion of a batch went on the writer.
    enum Applied: Sendable {
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
    private static func settled(_ lease: Lease, seq: Int, in db: Database) throws -> Applied {
        let row = try db.query("SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE seq = ?", [.integer(seq)]).first
        let job = try row.map(Rows.job)
        if let row, let job, job.state == .succeeded, job.attempt == lease.attempt, job.nodeID == lease.nodeID { return .row(row) }
        return refused(lease, job)
    }

    /// Why a completion under `lease` was refused, read inside the transaction.
    private static func refusal(of lease: Lease, in db: Database) throws -> Applied {
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
    private static func rowsByID(_ rows: [SQLRow]) -> [String: SQLRow] {
        var byID: [String: SQLRow] = [:]
        for row in rows {
            guard let id = row[position: 0].string, byID[id] == nil else { continue }
            byID[id] = row
        }
        return byID
    }

    /// What the updates applied when every one of them applied all its completions, by
    /// completion index: the kept job (a lean update returns nothing) or the row.
    private static func applied(_ updates: [SucceededUpdate], _ rows: [[SQLRow]], fences: [Fence], kept: [Kept?]) -> [Int: Applied] {
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
