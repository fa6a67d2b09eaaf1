import Foundation
import MizanCore
import MizanDispatch
import MizanStore
import MizanStoreSQLite
import NIOPosix
import Synchronization

// MARK: - SQLite baselines

/// A new folder for a benchmark's SQLite files.
func sqliteFolder() throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-bench-sqlite-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder.path
}

/// One statement round trip on an SQLite connection, as the store makes one: a work item on
/// the I/O thread pool.
func sqliteRoundTrips(path: String, samples: Int) async throws -> [Duration] {
    let connection = try Database.open(path: path)
    defer { connection.close() }
    var latencies: [Duration] = []
    latencies.reserveCapacity(samples)
    for _ in 0..<samples {
        let start = ContinuousClock.now
        _ = try await NIOThreadPool.singleton.runIfActive { try connection.query("SELECT 1") }
        latencies.append(ContinuousClock.now - start)
    }
    return latencies.sorted()
}

/// The reference: a plain SQLite queue table in WAL mode, `workers` tasks each leasing up to
/// `batchSize` rows (one transaction: select, mark, returning their bodies) and completing them (one transaction), on
/// one writer connection taken in turn (the store's connection pool), each transaction one work
/// item on the I/O thread pool —
/// the same shape of work, on the same connection layer, as the store's, nothing else.
func sqliteReferenceCycles(path: String, workers: Int, jobs: Int, body requestBody: Data = body) async throws -> Double {
    let connection = try Database.open(path: path)
    defer { connection.close() }
    try connection.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
    try connection.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, body BLOB NOT NULL, state TEXT NOT NULL, result BLOB)")
    try connection.execute("CREATE INDEX q_queued ON q (id) WHERE state = 'queued'")
    try connection.query(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?) INSERT INTO q (body, state) SELECT ?, 'queued' FROM n",
        [.integer(jobs), .blob(requestBody)]
    )
    let writer = ConnectionPool([connection])
    let resultBytes = result
    func transaction<T: Sendable>(_ work: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await writer.run { try $0.transaction(work) }
    }
    let start = ContinuousClock.now
    let done = try await withThrowingTaskGroup(of: Int.self) { group in
        for _ in 0..<workers {
            group.addTask {
                var count = 0
                while true {
                    let ids: [Int] = try await transaction { connection in
                        let rows = try connection.query(
                            "SELECT id FROM q WHERE state = 'queued' ORDER BY id LIMIT ?", [.integer(batchSize)])
                        let ids = rows.compactMap { $0.column("id")?.integer }
                        guard !ids.isEmpty else { return ids }
                        let marks = Array(repeating: "?", count: ids.count).joined(separator: ", ")
                        // The worker is handed each job's body, as a queue's worker must be.
                        let leased = try connection.query(
                            "UPDATE q SET state = 'leased' WHERE id IN (\(marks)) AND state = 'queued' RETURNING id, body",
                            ids.map { .integer($0) })
                        return leased.compactMap { $0.column("body")?.blob == nil ? nil : $0.column("id")?.integer }
                    }
                    if ids.isEmpty { return count }
                    count += try await transaction { connection in
                        let marks = Array(repeating: "?", count: ids.count).joined(separator: ", ")
                        return try connection.query(
                            "UPDATE q SET state = 'done', result = ? WHERE id IN (\(marks)) AND state = 'leased' RETURNING id",
                            [.blob(resultBytes)] + ids.map { .integer($0) }
                        ).count
                    }
                }
            }
        }
        return try await group.reduce(0, +)
    }
    let elapsed = ContinuousClock.now - start
    precondition(done == jobs, "every reference row completed once (\(done) of \(jobs))")
    return Double(jobs) / seconds(elapsed)
}

/// The second reference: the same plain cycles on the store's own schema (its columns and
/// indexes, made by opening a store on the file): one transaction leasing up to `batchSize`
/// rows by the queue index and returning their bodies, one completing them — no node check, no
/// fencing, no rows read back, no group commit. What the store costs beyond its schema's SQLite
/// work is the distance to this figure; the distance from it to the plain table is the schema's.
func sqliteSchemaReferenceCycles(path: String, workers: Int, jobs: Int) async throws -> Double {
    await (try SQLiteStore.open(path: path)).close()
    let connection = try Database.open(path: path)
    defer { connection.close() }
    try connection.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
    let now = Date().timeIntervalSinceReferenceDate
    try connection.query(
        """
        WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
        INSERT INTO mizan_jobs (
            seq, id, request_id, model, stream, state, attempt, max_attempts, priority, deadline, created_at, updated_at
        )
        SELECT x, printf('%08x-0000-7000-8000-000000000000', x), 'r', 'reference', 0, 'accepted', 1, 3, 0, ?2, ?3, ?3 FROM n
        """,
        [.integer(jobs), .float(now + 86_400), .float(now)]
    )
    try connection.query(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1) INSERT INTO mizan_job_bodies (job, body) SELECT x, ?2 FROM n",
        [.integer(jobs), .blob(body)]
    )
    let writer = ConnectionPool([connection])
    let resultBytes = result
    func transaction<T: Sendable>(_ work: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await writer.run { try $0.transaction(work) }
    }
    let start = ContinuousClock.now
    let done = try await withThrowingTaskGroup(of: Int.self) { group in
        for worker in 0..<workers {
            group.addTask {
                let node = SQLValue.text(UUID(uuidString: String(format: "00000000-0000-4000-8000-%012x", worker))!.uuidString.lowercased())
                var count = 0
                while true {
                    let ids: [String] = try await transaction { connection in
                        let at = SQLValue.float(Date().timeIntervalSinceReferenceDate)
                        return try connection.query(
                            """
                            UPDATE mizan_jobs SET state = 'leased', node_id = ?1, leased_at = ?2, updated_at = ?2
                            WHERE id IN (
                                SELECT id FROM mizan_jobs INDEXED BY mizan_jobs_queue
                                WHERE model = 'reference' AND state = 'accepted' ORDER BY priority DESC, id LIMIT ?3
                            ) AND state = 'accepted'
                            RETURNING id, (SELECT body FROM mizan_job_bodies WHERE job = seq) AS body
                            """,
                            [node, at, .integer(batchSize)]
                        ).compactMap { $0.column("body")?.blob == nil ? nil : $0.column("id")?.string }
                    }
                    if ids.isEmpty { return count }
                    count += try await transaction { connection in
                        let at = SQLValue.float(Date().timeIntervalSinceReferenceDate)
                        let marks = (0..<ids.count).map { "?\($0 + 3)" }.joined(separator: ", ")
                        return try connection.query(
                            """
                            UPDATE mizan_jobs SET state = 'succeeded', result = ?1, finished_at = ?2, updated_at = ?2
                            WHERE id IN (\(marks)) AND state = 'leased'
                            RETURNING id
                            """,
                            [.blob(resultBytes), at] + ids.map { .text($0) }
                        ).count
                    }
                }
            }
        }
        return try await group.reduce(0, +)
    }
    let elapsed = ContinuousClock.now - start
    precondition(done == jobs, "every reference row completed once (\(done) of \(jobs))")
    return Double(jobs) / seconds(elapsed)
}

/// Queues `count` accepted jobs of a model no worker serves, in bulk, through a second
/// connection to the store's file.
func sqliteBacklog(path: String, count: Int) async throws {
    guard count > 0 else { return }
    let connection = try Database.open(path: path, busyTimeout: .seconds(10))
    defer { connection.close() }
    let now = Date().timeIntervalSinceReferenceDate
    try connection.query(
        """
        WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
        INSERT INTO mizan_jobs (
            id, request_id, model, stream, state, attempt, max_attempts, priority, deadline, created_at, updated_at
        )
        SELECT lower(printf('%s-%s-%s-%s-%s', hex(randomblob(4)), hex(randomblob(2)), hex(randomblob(2)), hex(randomblob(2)),
            hex(randomblob(6)))), 'backlog', 'backlog-model', 0, 'accepted', 1, 3, 0, ?2, ?3, ?3
        FROM n
        """,
        [.integer(count), .float(now + 86_400), .float(now)]
    )
    try connection.query(
        """
        INSERT INTO mizan_job_bodies (job, body)
        SELECT seq, ?1 FROM mizan_jobs WHERE request_id = 'backlog' AND seq NOT IN (SELECT job FROM mizan_job_bodies)
        """,
        [.blob(body)]
    )
    try connection.execute("ANALYZE")
}

// MARK: - SQLite figures

/// The store's lease+complete with 4 workers beside the plain table's, in alternating pairs
/// (five; three with `--quick`), each run after a `sync()` so that the disk writes one leaves
/// behind are not flushed in the next one's time; sorted by their ratio. The machines these run
/// on move by a third between runs: the median pair is the figure, not one run of each. In the
/// order they ran.
func sqliteFourWorkerPairs(_ dispatcher: Dispatcher, _ store: SQLiteStore, folder: String) async throws -> [(
    store: Double, reference: Double
)] {
    let jobs = options.quick ? 4_000 : 40_000
    var pairs: [(store: Double, reference: Double)] = []
    for round in 1...(options.quick ? 3 : 5) {
        sync()
        let reference = try await sqliteReferenceCycles(path: folder + "/pair-reference-\(round).sqlite", workers: 4, jobs: jobs)
        sync()
        let rate = try await cycles(dispatcher, store, workers: 4, jobs: jobs)
        pairs.append((rate, reference))
    }
    return pairs
}

func sqliteFigures() async throws {
    let folder = try sqliteFolder()
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let path = folder + "/store.sqlite"
    let store = try await SQLiteStore.open(path: path)
    let dispatcher = Dispatcher(store: store)
    let trips = try await sqliteRoundTrips(path: folder + "/probe.sqlite", samples: samples)
    if options.only.contains("sqlite") {
        // Where a pickup's time goes: one insert, and one lease of a node with nothing queued.
        var inserts: [Duration] = []
        var leases: [Duration] = []
        let idle = try await enroll(dispatcher, models: ["sqlite-idle"], capacity: 1)
        for _ in 0..<samples {
            let job = Job(requestID: "r", model: "sqlite-unserved", body: body, deadline: Date().addingTimeInterval(60))
            var start = ContinuousClock.now
            _ = try await store.insert(job)
            inserts.append(ContinuousClock.now - start)
            start = ContinuousClock.now
            _ = try await store.lease(nodeID: idle.id, limit: 1, now: Date())
            leases.append(ContinuousClock.now - start)
        }
        add("store", "sqlite insert p50", "ms", percentile(inserts.sorted(), 0.5), baseline: percentile(trips, 0.5), "SELECT 1 round trip")
        add(
            "store", "sqlite empty lease p50", "ms", percentile(leases.sorted(), 0.5), baseline: percentile(trips, 0.5),
            "SELECT 1 round trip")
        let latencies = try await pickup(dispatcher, store, samples: samples)
        add(
            "store", "sqlite pickup p50", "ms", percentile(latencies, 0.5), baseline: percentile(trips, 0.5), "SELECT 1 round trip",
            target: ("value", "<", 1))
        add("store", "sqlite pickup p99", "ms", percentile(latencies, 0.99), baseline: percentile(trips, 0.99), "SELECT 1 round trip")
        for workers in [1, 16] {
            let jobs = options.quick ? 4_000 : 40_000
            sync()
            let reference = try await sqliteReferenceCycles(path: folder + "/reference-\(workers).sqlite", workers: workers, jobs: jobs)
            sync()
            let rate = try await cycles(dispatcher, store, workers: workers, jobs: jobs)
            add("store", "sqlite lease+complete, \(workers) worker(s)", "/s", rate, baseline: reference, "plain SQLite queue table")
        }
        let pairs = try await sqliteFourWorkerPairs(dispatcher, store, folder: folder).sorted {
            $0.store / $0.reference < $1.store / $1.reference
        }
        let median = pairs[pairs.count / 2]
        add(
            "store", "sqlite lease+complete, 4 workers", "/s", median.store, baseline: median.reference, "plain SQLite queue table",
            target: ("value", ">=", 5000))
        add(
            "store", "sqlite lease+complete, 4 workers, against the plain table (median of \(pairs.count) pairs)", "/s", median.store,
            baseline: median.reference, "plain SQLite queue table", target: ("ratio", ">=", 0.5))
        sync()
        let jobs = options.quick ? 4_000 : 40_000
        let schema = try await sqliteSchemaReferenceCycles(path: folder + "/schema-4.sqlite", workers: 4, jobs: jobs)
        add(
            "store", "sqlite lease+complete, 4 workers, against its schema", "/s", median.store, baseline: schema,
            "plain statements on the store's schema")
        add("store", "sqlite plain statements on the store's schema", "/s", schema, baseline: median.reference, "plain SQLite queue table")
        // The same with requests of 8 KiB, on both sides: a row written whole at every
        // transition writes its request again (overflow pages and all); the store writes a
        // body once, in a table of its own.
        let large = options.quick ? 2_000 : 10_000
        sync()
        let largeReference = try await sqliteReferenceCycles(
            path: folder + "/reference-large.sqlite", workers: 4, jobs: large, body: largeBody)
        sync()
        let largeRate = try await cycles(dispatcher, store, workers: 4, jobs: large, body: largeBody)
        add(
            "store", "sqlite lease+complete, 4 workers, 8 KiB requests", "/s", largeRate, baseline: largeReference,
            "plain SQLite queue table, 8 KiB requests")
    }
    if options.only.contains("sqlite-cycles") {
        // Only the 4-worker pairs, each beside its plain table: the figure to profile (`perf record`).
        for (round, pair) in try await sqliteFourWorkerPairs(dispatcher, store, folder: folder).enumerated() {
            add(
                "store", "sqlite lease+complete, 4 workers, pair \(round + 1)", "/s", pair.store, baseline: pair.reference,
                "plain SQLite queue table")
        }
    }
    if options.only.contains("sqlite-growth") {
        try await growthFigures("sqlite", dispatcher, store) { try await sqliteBacklog(path: path, count: $0) }
    }
    await store.close()
}
