// Measures the dispatch engine on both stores, each figure beside a baseline measured in the
// same run:
// - pickup (submit → leased by an agent already waiting in a lease call), against the bare
//   hand-off of a value to a waiting task (memory) or one `SELECT 1` round trip (PostgreSQL);
// - lease+complete cycles per second with 1, 4 and 16 workers, against a minimal queue of the
//   same shape (a locked array in memory; a plain `FOR UPDATE SKIP LOCKED` table in PostgreSQL);
// - cost growth on PostgreSQL: pickup and cycles with 0, 1,000 and 100,000 other jobs queued,
//   against the same figure with none queued.
//
//     swift run -c release MizanStoreBenchmark [--quick] [--json FILE] [--only memory,postgres,growth,sqlite,sqlite-growth,sqlite-cycles,admission,memory-admission]
//
// Prints a table; `--json` also writes one JSON object per figure (for `Scripts/bench`).
// PostgreSQL figures use a throwaway local server (fsync off, as a test server), or
// MIZAN_TEST_POSTGRES_URL when set.
import Foundation
import Logging
import MizanCore
import MizanDispatch
import MizanPostgresTesting
import MizanStore
import MizanStorePostgres
import PostgresNIO
import Synchronization

// MARK: - Options and output

struct Options {
    var quick = false
    var json: String?
    var only: Set<String> = ["memory", "postgres", "growth", "sqlite", "sqlite-growth", "admission", "memory-admission"]

    init(_ arguments: [String]) {
        var iterator = arguments.makeIterator()
        while let flag = iterator.next() {
            switch flag {
            case "--quick": quick = true
            case "--json": json = iterator.next()
            case "--only": only = Set((iterator.next() ?? "").split(separator: ",").map(String.init))
            case "--help", "-h":
                print(
                    "usage: MizanStoreBenchmark [--quick] [--json FILE] [--only memory,postgres,growth,sqlite,sqlite-growth,sqlite-cycles,admission,memory-admission]"
                )
                exit(0)
            default:
                FileHandle.standardError.write(Data("MizanStoreBenchmark: unknown flag \(flag)\n".utf8))
                exit(2)
            }
        }
    }
}

/// One measured figure, in the shape `Scripts/bench` reads.
struct Figure: Codable {
    var group: String
    var figure: String
    var unit: String
    var value: Double
    var baseline: Double
    var baselineName: String
    /// What the target bounds: `value`, `ratio` (value / baseline) or `overhead` (value − baseline).
    var targetOn: String?
    /// `<` or `>=`.
    var targetOp: String?
    var targetLimit: Double?
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .warning
    return handler
}

let body = Data(#"{"model":"bench","messages":[{"role":"user","content":"ping"}]}"#.utf8)
/// A request of a size chat requests often have (a system prompt and some history): 8 KiB.
let largeBody = Data(#"{"model":"bench","messages":[{"role":"user","content":"\#(String(repeating: "a", count: 8_150))"}]}"#.utf8)
let result = Data(#"{"id":"c","object":"chat.completion","choices":[]}"#.utf8)
/// Jobs per lease call (and per batched completion) in the throughput figures.
let batchSize = 32

func percentile(_ sorted: [Duration], _ p: Double) -> Double {
    milliseconds(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))])
}

func milliseconds(_ d: Duration) -> Double {
    let (s, atto) = d.components
    return (Double(s) + Double(atto) / 1e18) * 1000
}

func seconds(_ d: Duration) -> Double { milliseconds(d) / 1000 }

func enroll(_ dispatcher: Dispatcher, models: [String], capacity: Int) async throws -> Node {
    let enrollment = try await dispatcher.createNode(name: "bench")
    return try await dispatcher.register(
        registrationToken: enrollment.registrationToken,
        report: NodeReport(models: models, maxConcurrency: capacity)
    ).node
}

// MARK: - Mizan figures

/// Submit → leased by an agent already waiting in a long-poll lease call.
func pickup(_ dispatcher: Dispatcher, _ store: any DispatchStore, samples: Int) async throws -> [Duration] {
    let model = "pickup-\(UUID().uuidString.prefix(6))"
    let node = try await enroll(dispatcher, models: [model], capacity: 1)
    var latencies: [Duration] = []
    latencies.reserveCapacity(samples)
    for _ in 0..<samples {
        let leased = Task { try await dispatcher.lease(for: node, limit: 1, wait: .seconds(5)) }
        while dispatcher.waitingLeasers == 0 { await Task.yield() }
        let job = Job(requestID: "r", model: model, body: body, deadline: Date().addingTimeInterval(60))
        let start = ContinuousClock.now
        _ = try await store.insert(job)
        let got = try await leased.value
        latencies.append(ContinuousClock.now - start)
        precondition(got.count == 1, "the waiting agent leased the job")
        _ = try await dispatcher.complete(got[0].lease, result: result, usage: nil)
    }
    return latencies.sorted()
}

/// Inserts `count` jobs of `model` from four tasks.
func fill(_ store: any DispatchStore, model: String, count: Int, body requestBody: Data = body) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for w in 0..<4 {
            group.addTask {
                for _ in stride(from: w, to: count, by: 4) {
                    _ = try await store.insert(
                        Job(requestID: "r", model: model, body: requestBody, deadline: Date().addingTimeInterval(3600)))
                }
            }
        }
        try await group.waitForAll()
    }
}

/// Lease+complete cycles per second: `workers` agents drain `jobs` queued jobs, leasing up
/// to `batchSize` at a time and completing them in one batch.
func cycles(_ dispatcher: Dispatcher, _ store: any DispatchStore, workers: Int, jobs: Int, body requestBody: Data = body) async throws
    -> Double
{
    let model = "cycles-\(UUID().uuidString.prefix(6))"
    try await fill(store, model: model, count: jobs, body: requestBody)
    var nodes: [Node] = []
    for _ in 0..<workers { nodes.append(try await enroll(dispatcher, models: [model], capacity: 64)) }
    let start = ContinuousClock.now
    let done = try await withThrowingTaskGroup(of: Int.self) { group in
        for node in nodes {
            group.addTask {
                var count = 0
                while true {
                    let leased = try await dispatcher.lease(for: node, limit: batchSize, wait: .zero)
                    if leased.isEmpty { return count }
                    let results = try await dispatcher.complete(
                        leased.map { LeaseCompletion(lease: $0.lease, completion: .succeeded(result: result, usage: nil)) }
                    )
                    count += results.filter { (try? $0.get()) != nil }.count
                }
            }
        }
        return try await group.reduce(0, +)
    }
    let elapsed = ContinuousClock.now - start
    precondition(done == jobs, "every job completed once (\(done) of \(jobs))")
    return Double(jobs) / seconds(elapsed)
}

// MARK: - Baselines

/// The bare hand-off: a value given to a task already waiting for it.
final class Slot: Sendable {
    let continuation = Mutex<CheckedContinuation<ContinuousClock.Instant, Never>?>(nil)
}

func handOff(samples: Int) async -> [Duration] {
    let slot = Slot()
    var latencies: [Duration] = []
    latencies.reserveCapacity(samples)
    for _ in 0..<samples {
        let waiter = Task {
            await withCheckedContinuation { continuation in slot.continuation.withLock { $0 = continuation } }
        }
        while slot.continuation.withLock({ $0 == nil }) { await Task.yield() }
        let start = ContinuousClock.now
        slot.continuation.withLock { continuation in
            continuation?.resume(returning: start)
            continuation = nil
        }
        _ = await waiter.value
        latencies.append(ContinuousClock.now - start)
    }
    return latencies.sorted()
}

/// A minimal in-memory queue of the same shape: lease up to `batchSize`, complete them in one call.
final class ArrayQueue: Sendable {
    struct Entry: Sendable {
        var id: UUID
        var body: Data
        var result: Data?
    }
    private let state = Mutex<(queued: [Entry], leased: [UUID: Entry], done: Int)>(([], [:], 0))

    func insert(_ entry: Entry) async { state.withLock { $0.queued.append(entry) } }

    func lease(limit: Int) async -> [Entry] {
        state.withLock { state in
            let taken = Array(state.queued.suffix(limit))
            state.queued.removeLast(taken.count)
            for entry in taken { state.leased[entry.id] = entry }
            return taken
        }
    }

    func complete(_ ids: [UUID], result: Data) async -> Int {
        state.withLock { state in
            var count = 0
            for id in ids where state.leased.removeValue(forKey: id) != nil {
                count += 1
                state.done += 1
            }
            return count
        }
    }
}

func arrayQueueCycles(workers: Int, jobs: Int) async -> Double {
    let queue = ArrayQueue()
    for _ in 0..<jobs { await queue.insert(.init(id: UUID(), body: body)) }
    let start = ContinuousClock.now
    let done = await withTaskGroup(of: Int.self) { group in
        for _ in 0..<workers {
            group.addTask {
                var count = 0
                while true {
                    let leased = await queue.lease(limit: batchSize)
                    if leased.isEmpty { return count }
                    count += await queue.complete(leased.map(\.id), result: result)
                }
            }
        }
        return await group.reduce(0, +)
    }
    precondition(done == jobs)
    return Double(jobs) / seconds(ContinuousClock.now - start)
}

/// One `SELECT 1` round trip.
func roundTrips(_ client: PostgresClient, samples: Int) async throws -> [Duration] {
    var latencies: [Duration] = []
    for _ in 0..<samples {
        let start = ContinuousClock.now
        _ = try await client.query("SELECT 1").collect()
        latencies.append(ContinuousClock.now - start)
    }
    return latencies.sorted()
}

/// A plain PostgreSQL job queue of the same shape: a table, `FOR UPDATE SKIP LOCKED` to lease
/// up to `batchSize`, one `UPDATE … WHERE id = ANY` to complete them.
func referenceQueueCycles(_ client: PostgresClient, workers: Int, jobs: Int) async throws -> Double {
    let table = "bench_queue_\(UUID().uuidString.prefix(8).lowercased())"
    try await client.query(
        PostgresQuery(unsafeSQL: "CREATE TABLE \(table) (id bigserial PRIMARY KEY, body bytea NOT NULL, state text NOT NULL, result bytea)")
    )
    try await client.query(PostgresQuery(unsafeSQL: "CREATE INDEX ON \(table) (id) WHERE state = 'queued'"))
    var fillBinds = PostgresBindings()
    try fillBinds.append(body)
    try await client.query(
        PostgresQuery(
            unsafeSQL: "INSERT INTO \(table) (body, state) SELECT $1, 'queued' FROM generate_series(1, \(jobs))", binds: fillBinds)
    )
    let start = ContinuousClock.now
    let done = try await withThrowingTaskGroup(of: Int.self) { group in
        for _ in 0..<workers {
            group.addTask {
                var count = 0
                while true {
                    let ids = try await client.query(
                        PostgresQuery(
                            unsafeSQL: """
                                UPDATE \(table) SET state = 'leased' WHERE id IN (
                                    SELECT id FROM \(table) WHERE state = 'queued' ORDER BY id LIMIT \(batchSize) FOR UPDATE SKIP LOCKED
                                ) RETURNING id, body
                                """)
                    ).collect().map { try $0.decode((Int64, Data).self).0 }
                    if ids.isEmpty { return count }
                    var binds = PostgresBindings()
                    try binds.append(result)
                    binds.append(ids)
                    let updated = try await client.query(
                        PostgresQuery(
                            unsafeSQL:
                                "UPDATE \(table) SET state = 'done', result = $1 WHERE id = ANY($2) AND state = 'leased' RETURNING id",
                            binds: binds)
                    ).collect()
                    count += updated.count
                }
            }
        }
        return try await group.reduce(0, +)
    }
    precondition(done == jobs)
    let rate = Double(jobs) / seconds(ContinuousClock.now - start)
    try await client.query(PostgresQuery(unsafeSQL: "DROP TABLE \(table)"))
    return rate
}

/// Queues `count` accepted jobs of a model no worker serves, in bulk.
func backlog(_ client: PostgresClient, count: Int) async throws {
    guard count > 0 else { return }
    var binds = PostgresBindings()
    try binds.append(body)
    try await client.query(
        PostgresQuery(
            unsafeSQL: """
                INSERT INTO mizan_jobs (
                    id, request_id, model, body, stream, state, attempt, max_attempts, priority, deadline, created_at, updated_at
                )
                SELECT gen_random_uuid(), 'backlog', 'backlog-model', $1, false, 'accepted', 1, 3, 0, now() + interval '1 day', now(), now()
                FROM generate_series(1, \(count))
                """, binds: binds)
    )
    try await client.query("ANALYZE mizan_jobs")
}

/// Pickup and 4-worker lease+complete with 0, 1,000 and 100,000 other jobs queued (`backlog`
/// queues that many more), each against the figure with nothing queued.
func growthFigures(
    _ name: String, _ dispatcher: Dispatcher, _ store: any DispatchStore, backlog: (Int) async throws -> Void
) async throws {
    let jobs = options.quick ? 4_000 : 20_000
    var zeroPickup = 0.0
    var zeroCycles = 0.0
    var queued = 0
    for depth in [0, 1_000, 100_000] {
        try await backlog(depth - queued)
        queued = depth
        let latencies = try await pickup(dispatcher, store, samples: samples / 2)
        let rate = try await cycles(dispatcher, store, workers: 4, jobs: jobs)
        let p50 = percentile(latencies, 0.5)
        if depth == 0 {
            zeroPickup = p50
            zeroCycles = rate
        }
        add("growth", "\(name) pickup p50, \(depth) queued", "ms", p50, baseline: zeroPickup, "0 queued", target: ("ratio", "<", 2))
        add(
            "growth", "\(name) lease+complete 4 workers, \(depth) queued", "/s", rate, baseline: zeroCycles, "0 queued",
            target: ("ratio", ">=", 0.5))
    }
}

// MARK: - Runs

let collected = Mutex<[Figure]>([])
let samples = options.quick ? 200 : 2000

func add(
    _ group: String, _ figure: String, _ unit: String, _ value: Double, baseline: Double, _ baselineName: String,
    target: (on: String, op: String, limit: Double)? = nil
) {
    let entry = Figure(
        group: group, figure: figure, unit: unit, value: value, baseline: baseline, baselineName: baselineName,
        targetOn: target?.on, targetOp: target?.op, targetLimit: target?.limit)
    collected.withLock { $0.append(entry) }
}

if options.only.contains("memory") {
    let store = InMemoryStore()
    let dispatcher = Dispatcher(store: store)
    let bare = await handOff(samples: samples)
    let latencies = try await pickup(dispatcher, store, samples: samples)
    add(
        "store", "memory pickup p50", "ms", percentile(latencies, 0.5), baseline: percentile(bare, 0.5), "task hand-off",
        target: ("value", "<", 1))
    add("store", "memory pickup p99", "ms", percentile(latencies, 0.99), baseline: percentile(bare, 0.99), "task hand-off")
    for workers in [1, 4, 16] {
        let jobs = options.quick ? 10_000 : 100_000
        let reference = await arrayQueueCycles(workers: workers, jobs: jobs)
        let rate = try await cycles(dispatcher, store, workers: workers, jobs: jobs)
        add("store", "memory lease+complete, \(workers) worker(s)", "/s", rate, baseline: reference, "locked array queue")
    }
}

if options.only.contains("memory-admission") {
    try await admissionFigures("memory", InMemoryStore(), statements: nil)
}

if options.only.contains("postgres") || options.only.contains("growth") || options.only.contains("admission") {
    try await PostgresTestDatabase.withDatabase { client, _ in
        let store = PostgresStore(client: client)
        try await withRunningStore(store) {
            let dispatcher = Dispatcher(store: store)
            if options.only.contains("postgres") {
                let trips = try await roundTrips(client, samples: samples)
                let latencies = try await pickup(dispatcher, store, samples: samples)
                add(
                    "store", "postgres pickup p50", "ms", percentile(latencies, 0.5), baseline: percentile(trips, 0.5),
                    "SELECT 1 round trip", target: ("value", "<", 3))
                add(
                    "store", "postgres pickup p99", "ms", percentile(latencies, 0.99), baseline: percentile(trips, 0.99),
                    "SELECT 1 round trip")
                for workers in [1, 4, 16] {
                    let jobs = options.quick ? 4_000 : 40_000
                    let reference = try await referenceQueueCycles(client, workers: workers, jobs: jobs)
                    let rate = try await cycles(dispatcher, store, workers: workers, jobs: jobs)
                    add(
                        "store", "postgres lease+complete, \(workers) worker(s)", "/s", rate, baseline: reference,
                        "SKIP LOCKED reference queue",
                        target: workers == 4 ? ("value", ">=", 8000) : nil)
                }
            }
            if options.only.contains("growth") {
                try await growthFigures("postgres", dispatcher, store) { try await backlog(client, count: $0) }
            }
            if options.only.contains("admission") {
                try await admissionFigures("postgres", store, statements: store.statements)
            }
        }
    }
}

if options.only.contains("sqlite") || options.only.contains("sqlite-growth") || options.only.contains("sqlite-cycles") {
    try await sqliteFigures()
}

let figures = collected.withLock { $0 }
print("")
print("figure                                                value    baseline    ratio  baseline is")
for f in figures {
    print(
        f.figure.padding(toLength: 50, withPad: " ", startingAt: 0)
            + String(format: "%10.3f  %10.3f  %7.2f  ", f.value, f.baseline, f.value / f.baseline)
            + f.baselineName
    )
}

if let path = options.json {
    let encoder = JSONEncoder()
    let lines = try figures.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
}
