import Foundation
import MizanCore
import MizanStore

/// The job queue of an SQLite file: jobs inserted, leased to nodes, completed, failed,
/// cancelled and timed out, each transition a conditional statement guarded by
/// `JobStateMachine`; its sweeps (expired deadlines, lost leases) and its queries.
///
/// A lease selects its jobs, then marks them leased by their row numbers (an update returning
/// every column would write each row into a temporary table first), and keeps them
/// (``LeasedJobs``) until their completion, which then updates them by row number and reads
/// nothing back. What a node may lease is the node registry's to say (``SQLiteNodeRegistry``).
package final class SQLiteJobQueue: Sendable {
    private let connections: SQLiteConnections
    private let nodes: SQLiteNodeRegistry
    /// The jobs leased and not yet completed, as their lease returned them.
    private let leasedJobs = LeasedJobs()

    /// - Parameters:
    ///   - connections: The file's connections.
    ///   - nodes: The file's nodes, which a lease asks what a node may take.
    package init(connections: SQLiteConnections, nodes: SQLiteNodeRegistry) {
        self.connections = connections
        self.nodes = nodes
    }

    /// Inserts an accepted job, unless its idempotency key is taken (then the job that holds it),
    /// with its fair tag (see `JobStore`); refused when its key has `maxQueued` jobs queued.
    package func insert(_ job: Job, maxQueued: Int? = nil) async throws -> JobInsertion {
        precondition(job.state == .accepted, "only accepted jobs are inserted")
        let binds = Rows.insertBinds(job)
        let body = Rows.blob(job.body)
        let tag: Double? = try await connections.write(short: true) { db in
            if let maxQueued {
                // On the one writer, so exact: no other insert runs between the count and the insert.
                let queued = try db.query(
                    "SELECT count(*) FROM mizan_jobs INDEXED BY mizan_jobs_key_queue WHERE api_key_id IS ? AND state = 'accepted'",
                    [Rows.text(job.apiKeyID)])
                if let count = queued.first?[position: 0].integer, count >= maxQueued {
                    let taken =
                        job.idempotencyKey == nil
                        ? [] : try db.query("SELECT 1 FROM mizan_jobs WHERE idempotency_key = ?", [Rows.text(job.idempotencyKey)])
                    // A retry of a queued request attaches to its job; a new request is refused.
                    if taken.isEmpty { throw JobErrorCode.queueFull(maxQueued) }
                    return (nil, [])
                }
            }
            let rows = try db.query(Self.insertStatement, binds)
            // The body in its own table, under the job's row number, written once.
            guard let row = rows.first else { return (nil, []) }
            try db.query("INSERT INTO mizan_job_bodies (job, body) VALUES (?, ?)", [row[position: 0], body])
            return (row[position: 1].double ?? 0, [.jobsAvailable(model: job.model, count: 1)])
        }
        if let tag {
            var stored = job
            stored.scheduling.fairTag = tag
            return JobInsertion(job: stored, inserted: true)
        }
        guard let key = job.idempotencyKey else { throw MizanError(.conflict, "A job with id \(job.id) exists.") }
        let existing = try await connections.read("SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE idempotency_key = ?", [.text(key)])
        guard let found = try existing.first.map(Rows.job) else {
            throw MizanError(.conflict, "A job with this idempotency key was just removed; try again.")
        }
        return JobInsertion(job: found, inserted: false)
    }

    /// A new job's row (its body apart), unless its idempotency key is taken; returns its row
    /// number and its fair tag: its key's latest tag queued in its model's class plus
    /// `1 / weight`, else the lowest tag queued there, else 0. Binds are numbered by
    /// ``Rows/insertNames``, which the tag's expression reads too.
    private static let insertStatement: String = {
        let names = Rows.insertNames
        func bind(_ name: String) -> String { "?\(names.firstIndex(of: name)! + 1)" }
        let (key, model, priority, weight) = (bind("api_key_id"), bind("model"), bind("priority"), bind("weight"))
        let tag = """
            coalesce(
                (SELECT max(fair_tag) FROM mizan_jobs INDEXED BY mizan_jobs_key_queue
                    WHERE api_key_id IS \(key) AND model = \(model) AND priority = \(priority) AND state = 'accepted') + 1.0 / \(weight),
                (SELECT min(fair_tag) FROM mizan_jobs INDEXED BY mizan_jobs_queue
                    WHERE model = \(model) AND priority = \(priority) AND state = 'accepted'),
                0)
            """
        let values = names.map { $0 == "fair_tag" ? tag : bind($0) }
        return """
            INSERT INTO mizan_jobs (\(names.joined(separator: ", "))) VALUES (\(values.joined(separator: ", ")))
            ON CONFLICT (idempotency_key) DO NOTHING RETURNING seq, fair_tag
            """
    }()

    /// Leases up to `limit` of the jobs a node may take, best first (see `JobStore`).
    package func lease(nodeID: NodeID, limit: Int, now: Date, headroom: LeaseHeadroom? = nil) async throws -> [LeasedJob] {
        // The lease counts as a sign of life, written at most once a second: a write of the
        // node's row at every lease put its page in every commit. Without it, the lease changes
        // the file by one statement and needs no transaction of its own.
        let seen = nodes.leaseWritesLastSeen(nodeID, now: now)
        let registry = nodes
        // The rows are read into jobs after the write, so that the writer is not held for it.
        let rows: [SQLRow] = try await connections.write(single: !seen, short: true) { db in
            guard let capacity = try registry.capacity(of: nodeID, limit: limit, now: now, writeLastSeen: seen, on: db) else {
                return ([], [])
            }
            let (models, endpoints, free) = (capacity.models, capacity.endpoints, capacity.free)
            // The jobs are selected first, then marked leased by their row numbers: an update
            // returning every column writes each row it returns into a temporary table first.
            var selected = try db.query(
                Self.leaseSelection(models: models.count, endpoints: endpoints),
                [Rows.id(nodeID), Rows.date(now), .integer(free), .null] + models.map { .text($0) }
            )
            if let headroom { selected = Self.keepingHeadroom(selected, headroom, slotsFree: capacity.slotsFree) }
            guard !selected.isEmpty else { return ([], []) }
            let seqs = selected.map { $0[position: Rows.jobNames.count] }
            let (update, width) = Self.leaseUpdate(count: seqs.count)
            // The list padded with its last row number (a row listed twice is marked once).
            let padding = Array(repeating: seqs[seqs.count - 1], count: width - seqs.count)
            try db.query(update, [Rows.id(nodeID), Rows.date(now)] + seqs + padding)
            if db.changes != selected.count {
                // Never expected (the rows were selected in this transaction, on the one
                // writer): only the rows the update marked are leased.
                let marked = try db.query(
                    "SELECT seq FROM mizan_jobs WHERE seq IN (\(SQLShapes.marks(seqs.count, from: 3))) AND state = 'leased' AND node_id = ?1 AND leased_at = ?2",
                    [Rows.id(nodeID), Rows.date(now)] + seqs
                )
                let leased = Set(marked.compactMap { $0[position: 0].integer })
                selected = selected.filter { $0[position: Rows.jobNames.count].integer.map(leased.contains) ?? false }
            }
            return (selected, [])
        }
        let jobs = try Rows.jobs(rows)
        var leased: [(LeasedJob, seq: Int)] = []
        leased.reserveCapacity(jobs.count)
        for (row, selected) in zip(rows, jobs) {
            // What the update set, as a read of the row would give it.
            var job = selected
            job.state = .leased
            job.nodeID = nodeID
            job.leasedAt = now
            job.updatedAt = now
            let lease = Lease(jobID: job.id, attempt: job.attempt, nodeID: nodeID)
            leased.append((LeasedJob(job: job, lease: lease), seq: row[position: Rows.jobNames.count].integer ?? 0))
        }
        leased.sort { Self.leasedFirst($0.0.job, $1.0.job) }
        leasedJobs.keep(leased)
        return leased.map(\.0)
    }

    /// The lease order: highest class, then lowest fair tag, then oldest.
    /// The selected jobs a lease takes when it keeps headroom: in lease order, any job while the
    /// node's open slots last, then only jobs of the headroom's rank or above.
    static func keepingHeadroom(_ selected: [SQLRow], _ headroom: LeaseHeadroom, slotsFree: Int) -> [SQLRow] {
        let open = headroom.open(of: slotsFree)
        guard selected.count > open else { return selected }
        let rank = { (row: SQLRow) in Int(row[position: Rows.priorityPosition].integer ?? 0) }
        let tag = { (row: SQLRow) in row[position: Rows.fairTagPosition].double ?? 0 }
        let id = { (row: SQLRow) in row[position: Rows.idPosition].string ?? "" }
        let ordered = selected.sorted { one, other in
            if rank(one) != rank(other) { return rank(one) > rank(other) }
            if tag(one) != tag(other) { return tag(one) < tag(other) }
            return id(one) < id(other)
        }
        return ordered.enumerated().filter { $0.offset < open || rank($0.element) >= headroom.minimumRank }.map { $0.element }
    }

    static func leasedFirst(_ one: Job, _ other: Job) -> Bool {
        if one.priority != other.priority { return one.priority > other.priority }
        if one.scheduling.fairTag != other.scheduling.fairTag { return one.scheduling.fairTag < other.scheduling.fairTag }
        return one.id < other.id
    }

    /// The selection of a node's next jobs: each of its `models` queues (binds `?5`…) read in
    /// index order (at most `?3` entries), then the best `?3` of them, so that the cost does not
    /// grow with the queues; every column of each (``Rows/jobColumns``), then its row number.
    /// `LIMIT ?3 + 0`, not `LIMIT ?3`: a bare bound limit ties the plan to its value, and SQLite
    /// would prepare the statement again whenever a lease of 1 is followed by another. The jobs
    /// are read by the rowids the queue's index holds, not looked up again by id through the
    /// id's own index.
    static func leaseSelection(models: Int, endpoints: [Endpoint]) -> String {
        // A node that serves every endpoint takes any job of its models; another only those of its endpoints.
        let served = endpoints == Endpoint.all ? "" : endpoints.map(\.rawValue).joined(separator: "', '")
        return SQLShapes.texts.value("lease \(models) \(served)") {
            let endpointFilter = served.isEmpty ? "" : " AND endpoint IN ('\(served)')"
            let queues = (0..<models).map { index in
                """
                SELECT * FROM (SELECT rowid AS job, priority, fair_tag, id FROM mizan_jobs INDEXED BY mizan_jobs_queue
                    WHERE model = ?\(index + 5) AND state = 'accepted' AND deadline > ?2\(endpointFilter)
                        AND (preferred_node IS NULL OR preferred_node = ?1 OR preferred_until <= ?2)
                    ORDER BY priority DESC, fair_tag, id LIMIT ?3 + 0)
                """
            }.joined(separator: " UNION ALL ")
            return """
                SELECT \(Rows.jobColumns), seq FROM mizan_jobs
                WHERE rowid IN (SELECT job FROM (\(queues)) ORDER BY priority DESC, fair_tag, id LIMIT ?3 + 0)
                    AND state IN (\(JobStateMachine.sqlSources(of: .lease)))
                """
        }
    }

    /// The lease of `count` selected jobs (`?1` the node, `?2` the time, then their row numbers),
    /// guarded by the transition table, and how many row numbers it binds: the next power of
    /// two, so that leases of any size share a few prepared statements.
    static func leaseUpdate(count: Int) -> (sql: String, width: Int) {
        let width = SQLShapes.width(count)
        let sql = SQLShapes.texts.value("leased \(width)") {
            """
            UPDATE mizan_jobs SET state = 'leased', node_id = ?1, leased_at = ?2, updated_at = ?2
            WHERE seq IN (\(SQLShapes.marks(width, from: 3))) AND state IN (\(JobStateMachine.sqlSources(of: .lease)))
            """
        }
        return (sql, width)
    }

    /// Cancels a live job (see `JobStore`).
    package func cancel(_ id: JobID, now: Date) async throws -> Job {
        try await finishLive(id, transition: .cancel, code: JobErrorCode.cancelled, message: "The client cancelled the request.", now: now)
    }

    /// Withdraws a queued job for a spill (see `JobStore`): only while it is `accepted`.
    package func withdraw(_ id: JobID, now: Date) async throws -> Job {
        let rows = try await connections.writeOne(
            """
            UPDATE mizan_jobs SET state = 'failed', error_code = ?, error_message = ?, finished_at = ?, updated_at = ?
            WHERE id = ? AND state = 'accepted'
            RETURNING \(Rows.jobColumns)
            """,
            [
                .text(JobErrorCode.spilled), .text("No node took the job in time; a provider route served it."), Rows.date(now),
                Rows.date(now), Rows.id(id),
            ],
            events: { $0.isEmpty ? [] : [.jobFinished(id: id, state: .failed)] }
        )
        if let row = rows.first { return try Rows.job(row) }
        guard let job = try await job(id) else { throw MizanError(.jobNotFound, "No job with id \(id).") }
        return job
    }

    /// Raises the queued jobs waiting in their class since `waitingSince` by one class (see
    /// `JobStore`): each takes the lowest tag queued in its new class.
    package func promote(waitingSince: Date, now: Date) async throws -> Int {
        let rows = try await connections.writeOne(
            """
            UPDATE mizan_jobs AS j SET priority = j.priority + 1, class_since = ?1, updated_at = ?1,
                fair_tag = coalesce(
                    (SELECT min(q.fair_tag) FROM mizan_jobs AS q INDEXED BY mizan_jobs_queue
                        WHERE q.model = j.model AND q.priority = j.priority + 1 AND q.state = 'accepted'),
                    0)
            WHERE j.rowid IN (SELECT rowid FROM mizan_jobs INDEXED BY mizan_jobs_promotable
                WHERE state = 'accepted' AND priority < 1 AND class_since <= ?2 LIMIT 10000)
            RETURNING seq
            """,
            [Rows.date(now), Rows.date(waitingSince)],
            events: { _ in [] }
        )
        return rows.count
    }

    /// Times out a live job (see `JobStore`).
    package func timeOut(_ id: JobID, now: Date) async throws -> Job {
        try await finishLive(id, transition: .timeOut, code: JobErrorCode.deadlineExceeded, message: "The job's deadline passed.", now: now)
    }

    private func finishLive(_ id: JobID, transition: JobTransition, code: String, message: String, now: Date) async throws -> Job {
        leasedJobs.forget(id)
        guard let target = JobStateMachine.next(from: .accepted, on: transition) else {
            preconditionFailure("\(transition) does not finish a queued job")
        }
        let rows = try await connections.writeOne(
            """
            UPDATE mizan_jobs SET state = ?, error_code = ?, error_message = ?, finished_at = ?, updated_at = ?
            WHERE id = ? AND state IN (\(JobStateMachine.sqlSources(of: transition)))
            RETURNING \(Rows.jobColumns)
            """,
            [.text(target.rawValue), .text(code), .text(message), Rows.date(now), Rows.date(now), Rows.id(id)],
            events: { $0.isEmpty ? [] : [.jobFinished(id: id, state: target)] }
        )
        if let row = rows.first { return try Rows.job(row) }
        guard let job = try await job(id) else { throw MizanError(.jobNotFound, "No job with id \(id).") }
        return job
    }

    // MARK: Completions

    /// Applies one completion under its lease (a batch of one).
    package func complete(_ lease: Lease, with completion: JobCompletion, now: Date) async throws -> Job {
        // A batch of one: a success of a job kept from its lease is applied without its row read back.
        guard let result = try await complete([LeaseCompletion(lease: lease, completion: completion)], now: now).first else {
            preconditionFailure("one result per completion")
        }
        return try result.get()
    }

    /// Applies a batch of completions in one write; each applies or is refused alone.
    package func complete(_ completions: [LeaseCompletion], now: Date) async throws -> [Result<Job, MizanError>] {
        guard !completions.isEmpty else { return [] }
        // Everything but the statements is done off the writer: the ids as text, the statements
        // and their binds before the write, the rows read into jobs after it.
        let fences = CompletionBatch.fences(of: completions)
        // Each success of a kept job holds it until the write is done (see `LeasedJobs`): a
        // second success of the same lease meanwhile is refused without a statement.
        var taken: [CompletionBatch.Kept?] = Array(repeating: nil, count: completions.count)
        var refused: [Int: CompletionBatch.Applied] = [:]
        var held: [Lease] = []
        for (index, item) in completions.enumerated() {
            guard case .succeeded = item.completion else { continue }
            switch leasedJobs.take(item.lease) {
            case .kept(let job, let seq):
                taken[index] = CompletionBatch.Kept(job: job, seq: seq)
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
        let updates = CompletionBatch.succeededUpdates(completions, fences, kept: kept, refused: early, now: now)
        let failures: [(index: Int, statement: (String, [SQLValue]))] = completions.indices.compactMap { index in
            guard case .failed(let code, let message, let retryable) = completions[index].completion else { return nil }
            return (
                index, CompletionBatch.failure(of: completions[index].lease, code: code, message: message, retryable: retryable, now: now)
            )
        }
        // One statement changes the file at most (a refused completion only reads): no savepoint.
        let written: CompletionBatch.Written = try await connections.write(single: updates.count + failures.count <= 1, short: true) { db in
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
            var outcomes: [Int: CompletionBatch.Applied] = [:]
            for (index, (sql, binds)) in failures {
                outcomes[index] =
                    try db.query(sql, binds).first.map { .row($0) } ?? CompletionBatch.refusal(of: completions[index].lease, in: db)
            }
            // Each success applied (as many rows as completions: the ids were distinct and
            // every fence held): they are matched to their rows after the write. Else each
            // success's outcome is settled here, with why the others were refused.
            guard !all else { return (CompletionBatch.Written(applied: applied, outcomes: outcomes), []) }
            for (position, update) in updates.enumerated() {
                if update.lean {
                    for index in update.indices {
                        guard let job = kept[index] else { continue }
                        outcomes[index] =
                            changed[position] == update.indices.count
                            ? .kept(job.job) : try CompletionBatch.settled(completions[index].lease, seq: job.seq, in: db)
                    }
                    continue
                }
                var rows = CompletionBatch.rowsByID(applied[position])
                for index in update.indices {
                    // Taken once: the same lease twice in a batch is refused the second time.
                    if let row = rows[fences[index].job],
                        CompletionBatch.Applied.row(row).fits(completions[index].lease, node: fences[index].node)
                    {
                        rows[fences[index].job] = nil
                        outcomes[index] = .row(row)
                    } else {
                        outcomes[index] = try CompletionBatch.refusal(of: completions[index].lease, in: db)
                    }
                }
            }
            return (CompletionBatch.Written(applied: applied, outcomes: outcomes), [])
        }
        // Matched after the write only when the writer did not settle them.
        let settled = written.outcomes.count + early.count == completions.count
        let done = settled ? [:] : CompletionBatch.applied(updates, written.applied, fences: fences, kept: kept)
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
        connections.events.publish(StoreEvent.describing(results.compactMap { try? $0.get() }))
        return results
    }

    // MARK: Sweeps

    /// Times out the live jobs whose deadline has passed.
    package func timeOutExpired(now: Date) async throws -> [Job] {
        let expired: [Job] = try await connections.write { db in
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

    /// Takes back the leases of nodes lost, revoked or unseen since `staleBefore`.
    package func recoverLeases(staleBefore: Date, now: Date) async throws -> [Job] {
        try await takeBackLeases(
            lost: """
                SELECT j.id FROM mizan_jobs j LEFT JOIN mizan_nodes n ON n.id = j.node_id
                WHERE j.state = 'leased' AND (n.id IS NULL OR n.status = 'revoked' OR coalesce(n.last_seen, -1e300) < ?1)
                """,
            bind: Rows.date(staleBefore), now: now)
    }

    /// Takes back the leases of one node.
    package func recoverLeases(of nodeID: NodeID, now: Date) async throws -> [Job] {
        try await takeBackLeases(lost: "SELECT id FROM mizan_jobs WHERE state = 'leased' AND node_id = ?1", bind: Rows.id(nodeID), now: now)
    }

    /// Requeues the leased jobs that `lost` selects (its one parameter is `?1`, bound to `bind`)
    /// while attempts and time are left, and fails the rest as `node_lost`.
    private func takeBackLeases(lost: String, bind: SQLValue, now: Date) async throws -> [Job] {
        let changed: [Job] = try await connections.write { db in
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

    /// Deletes up to 10,000 finished jobs that finished before `before` (their bodies with them),
    /// on the writer inside a transaction (the store's prune, with the old usage records).
    /// - Returns: How many were deleted.
    static func deleteFinished(before: Date, on db: Database) throws -> Int {
        let deleted = try db.query(
            """
            DELETE FROM mizan_jobs WHERE id IN (
                SELECT id FROM mizan_jobs INDEXED BY mizan_jobs_finished
                WHERE finished_at IS NOT NULL AND finished_at < ? AND state IN ('succeeded', 'failed', 'timed_out') LIMIT 10000
            ) RETURNING id
            """,
            [Rows.date(before)]
        )
        return deleted.count
    }

    // MARK: Queries

    /// The job with `id`.
    package func job(_ id: JobID) async throws -> Job? {
        try await connections.read("SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE id = ?", [Rows.id(id)]).first.map(Rows.job)
    }

    /// The jobs with these ids (those that exist).
    package func jobs(_ ids: [JobID]) async throws -> [Job] {
        guard !ids.isEmpty else { return [] }
        var found: [Job] = []
        for chunk in stride(from: 0, to: ids.count, by: 500) {
            let slice = ids[chunk..<min(ids.count, chunk + 500)]
            let marks = Array(repeating: "?", count: slice.count).joined(separator: ", ")
            found += try await connections.read("SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE id IN (\(marks))", slice.map(Rows.id)).map(
                Rows.job)
        }
        return found
    }

    /// The newest jobs that match `filter`, at most `limit`.
    package func jobs(matching filter: JobFilter, limit: Int) async throws -> [Job] {
        var conditions: [String] = []
        var bindings: [SQLValue] = []
        var indexed = ""
        if let state = filter.state {
            // The state is written into the text (one of five statements) so that the planner
            // can use the partial index of that state: a queued job is found through its model's
            // queue, a leased one through its node, a failed or timed-out one through their index
            // (SQLite proves that a query may use a partial index only from the index's own
            // condition); succeeded jobs, most of the table, are read in id order.
            let (index, condition): (String?, String) =
                switch state {
                case .accepted: ("mizan_jobs_queue", "state = 'accepted'")
                case .leased: ("mizan_jobs_leased_node", "state = 'leased'")
                case .succeeded: (nil, "state = 'succeeded'")
                case .failed, .timedOut:
                    ("mizan_jobs_unsuccessful", "(state = 'failed' OR state = 'timed_out') AND state = '\(state.rawValue)'")
                }
            indexed = index.map { " INDEXED BY \($0)" } ?? ""
            conditions.append(condition)
        }
        if let model = filter.model {
            conditions.append("model = ?")
            bindings.append(.text(model))
        }
        if let before = filter.before {
            conditions.append("id < ?")
            bindings.append(Rows.id(before))
        }
        let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        bindings.append(.integer(max(0, limit)))
        return try await connections.read(
            "SELECT \(Rows.jobColumns) FROM mizan_jobs\(indexed)\(whereClause) ORDER BY id DESC LIMIT ?", bindings
        ).map(Rows.job)
    }

    /// How many jobs are queued, by model.
    package func queueDepth() async throws -> [String: Int] {
        var depth: [String: Int] = [:]
        for row in try await connections.read("SELECT model, count(*) AS n FROM mizan_jobs WHERE state = 'accepted' GROUP BY model") {
            if let model = row.column("model")?.string, let count = row.column("n")?.integer, count > 0 { depth[model] = Int(count) }
        }
        return depth
    }

    /// The jobs leased to a node, oldest first.
    package func leasedJobs(nodeID: NodeID) async throws -> [Job] {
        try await connections.read(
            "SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE state = 'leased' AND node_id = ? ORDER BY id", [Rows.id(nodeID)]
        ).map(Rows.job)
    }
}
