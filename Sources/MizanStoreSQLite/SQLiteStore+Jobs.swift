import Foundation
import MizanCore
import MizanStore

extension SQLiteStore {
    public func insert(_ job: Job) async throws -> JobInsertion {
        precondition(job.state == .accepted, "only accepted jobs are inserted")
        let binds = Rows.insertBinds(job)
        let body = Rows.blob(job.body)
        let inserted: Bool = try await write(short: true) { db in
            let rows = try db.query(Self.insertStatement, binds)
            // The body in its own table, under the job's row number, written once.
            guard let seq = rows.first?[position: 0] else { return (false, []) }
            try db.query("INSERT INTO mizan_job_bodies (job, body) VALUES (?, ?)", [seq, body])
            return (true, [.jobsAvailable(model: job.model, count: 1)])
        }
        if inserted { return JobInsertion(job: job, inserted: true) }
        guard let key = job.idempotencyKey else { throw MizanError(.conflict, "A job with id \(job.id) exists.") }
        let existing = try await read("SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE idempotency_key = ?", [.text(key)])
        guard let found = try existing.first.map(Rows.job) else {
            throw MizanError(.conflict, "A job with this idempotency key was just removed; try again.")
        }
        return JobInsertion(job: found, inserted: false)
    }

    /// A new job's row (its body apart), unless its idempotency key is taken; returns its row number.
    static let insertStatement = """
        INSERT INTO mizan_jobs (\(Rows.insertNames.joined(separator: ", "))) VALUES (\(Rows.insertNames.map { _ in "?" }.joined(separator: ", ")))
        ON CONFLICT (idempotency_key) DO NOTHING RETURNING seq
        """

    public func lease(nodeID: NodeID, limit: Int, now: Date) async throws -> [LeasedJob] {
        // The lease counts as a sign of life, written at most once a second: a write of the
        // node's row at every lease put its page in every commit. Without it, the lease changes
        // the file by one statement and needs no transaction of its own.
        let seen = nodesSeen.due(nodeID, now: now)
        // The rows are read into jobs after the write, so that the writer is not held for it.
        let rows: [SQLRow] = try await write(single: !seen, short: true) { db in
            let nodes = try db.query(
                """
                SELECT models, endpoints, max_concurrency, status, health,
                    (SELECT count(*) FROM mizan_jobs WHERE state = 'leased' AND node_id = ?1) AS held
                FROM mizan_nodes WHERE id = ?1
                """,
                [Rows.id(nodeID)]
            )
            guard let node = nodes.first else { throw MizanError(.nodeNotFound, "No node with id \(nodeID).") }
            guard node.column("status")?.string != Node.Status.revoked.rawValue else {
                throw MizanError(.invalidNodeToken, "The node was revoked.")
            }
            if seen { try db.query("UPDATE mizan_nodes SET last_seen = ? WHERE id = ?", [Rows.date(now), Rows.id(nodeID)]) }
            let modelsText = node.column("models")?.string ?? "[]"
            let models = Self.nodeModels.value(modelsText) {
                Array(Set((try? JSONDecoder().decode([String].self, from: Data(modelsText.utf8))) ?? []))
            }
            let endpointsText = node.column("endpoints")?.string
            let endpoints = Self.nodeEndpoints.value(endpointsText ?? "") { Rows.endpoints(endpointsText) }
            let free = min(limit, Int(node.column("max_concurrency")?.integer ?? 0) - Int(node.column("held")?.integer ?? 0))
            guard node.column("status")?.string == Node.Status.active.rawValue,
                node.column("health")?.string != Node.Health.unhealthy.rawValue,
                free > 0, !models.isEmpty, !endpoints.isEmpty
            else { return ([], []) }
            // The jobs are selected first, then marked leased by their row numbers: an update
            // returning every column writes each row it returns into a temporary table first.
            var selected = try db.query(
                Self.leaseSelection(models: models.count, endpoints: endpoints),
                [Rows.id(nodeID), Rows.date(now), .integer(free), .null] + models.map { .text($0) }
            )
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
                    "SELECT seq FROM mizan_jobs WHERE seq IN (\(Self.marks(seqs.count, from: 3))) AND state = 'leased' AND node_id = ?1 AND leased_at = ?2",
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
        leased.sort { $0.0.job.priority != $1.0.job.priority ? $0.0.job.priority > $1.0.job.priority : $0.0.job.id < $1.0.job.id }
        leasedJobs.keep(leased)
        return leased.map(\.0)
    }

    /// The statement texts of each shape (a lease's models and endpoints, a batch's size).
    static let statementTexts = ShapeCache<String>()
    /// The nodes' models, by the JSON text they are stored as (deduplicated).
    static let nodeModels = ShapeCache<[String]>()
    /// The nodes' endpoints, by the JSON text they are stored as.
    static let nodeEndpoints = ShapeCache<[Endpoint]>()

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
        return statementTexts.value("lease \(models) \(served)") {
            let endpointFilter = served.isEmpty ? "" : " AND endpoint IN ('\(served)')"
            let queues = (0..<models).map { index in
                """
                SELECT * FROM (SELECT rowid AS job, priority, id FROM mizan_jobs INDEXED BY mizan_jobs_queue
                    WHERE model = ?\(index + 5) AND state = 'accepted' AND deadline > ?2\(endpointFilter) ORDER BY priority DESC, id LIMIT ?3 + 0)
                """
            }.joined(separator: " UNION ALL ")
            return """
                SELECT \(Rows.jobColumns), seq FROM mizan_jobs
                WHERE rowid IN (SELECT job FROM (\(queues)) ORDER BY priority DESC, id LIMIT ?3 + 0)
                    AND state IN (\(JobStateMachine.sqlSources(of: .lease)))
                """
        }
    }

    /// The lease of `count` selected jobs (`?1` the node, `?2` the time, then their row numbers),
    /// guarded by the transition table, and how many row numbers it binds: the next power of
    /// two, so that leases of any size share a few prepared statements.
    static func leaseUpdate(count: Int) -> (sql: String, width: Int) {
        let width = width(count)
        let sql = statementTexts.value("leased \(width)") {
            """
            UPDATE mizan_jobs SET state = 'leased', node_id = ?1, leased_at = ?2, updated_at = ?2
            WHERE seq IN (\(marks(width, from: 3))) AND state IN (\(JobStateMachine.sqlSources(of: .lease)))
            """
        }
        return (sql, width)
    }

    public func cancel(_ id: JobID, now: Date) async throws -> Job {
        try await finishLive(id, transition: .cancel, code: JobErrorCode.cancelled, message: "The client cancelled the request.", now: now)
    }

    public func timeOut(_ id: JobID, now: Date) async throws -> Job {
        try await finishLive(id, transition: .timeOut, code: JobErrorCode.deadlineExceeded, message: "The job's deadline passed.", now: now)
    }

    private func finishLive(_ id: JobID, transition: JobTransition, code: String, message: String, now: Date) async throws -> Job {
        leasedJobs.forget(id)
        guard let target = JobStateMachine.next(from: .accepted, on: transition) else {
            preconditionFailure("\(transition) does not finish a queued job")
        }
        let rows = try await writeOne(
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
}
