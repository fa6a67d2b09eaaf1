// Measures the dispatch engine on both stores: pickup latency (submit → leased by an agent
// already waiting in a lease call) and lease+complete cycles per second.
//
//     swift run -c release MizanStoreBenchmark [--quick]
//
// The PostgreSQL figures use a throwaway local server (fsync off, as a test server), or
// MIZAN_TEST_POSTGRES_URL when set.
import Foundation
import Logging
import MizanCore
import MizanDispatch
import MizanPostgresTesting
import MizanStore
import MizanStorePostgres
import PostgresNIO

let quick = CommandLine.arguments.contains("--quick")
/// Jobs per lease call (and per batched completion) in the throughput figures.
let batchSize = 32
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .warning
    return handler
}

struct Row: Sendable {
    var store: String
    var figure: String
    var value: String
    var target: String
}

var rows: [Row] = []

func percentile(_ sorted: [Duration], _ p: Double) -> Duration {
    sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func milliseconds(_ d: Duration) -> String {
    let (s, atto) = d.components
    return String(format: "%.3f ms", (Double(s) + Double(atto) / 1e18) * 1000)
}

func enroll(_ dispatcher: Dispatcher, models: [String], capacity: Int) async throws -> Node {
    let enrollment = try await dispatcher.createNode(name: "bench")
    return try await dispatcher.register(
        registrationToken: enrollment.registrationToken,
        report: NodeReport(models: models, maxConcurrency: capacity)
    ).node
}

let body = Data(#"{"model":"bench","messages":[{"role":"user","content":"ping"}]}"#.utf8)
let result = Data(#"{"id":"c","object":"chat.completion","choices":[]}"#.utf8)

/// Submit → leased by an agent already waiting in a long-poll lease call.
func pickup(_ dispatcher: Dispatcher, samples: Int) async throws -> [Duration] {
    let model = "pickup-\(UUID().uuidString.prefix(6))"
    let node = try await enroll(dispatcher, models: [model], capacity: 1)
    var latencies: [Duration] = []
    latencies.reserveCapacity(samples)
    for _ in 0..<samples {
        let leased = Task { try await dispatcher.lease(for: node, limit: 1, wait: .seconds(5)) }
        while dispatcher.waitingLeasers == 0 { await Task.yield() }
        let job = Job(requestID: "r", model: model, body: body, deadline: Date().addingTimeInterval(60))
        let start = ContinuousClock.now
        _ = try await dispatcher.store.insert(job)
        let got = try await leased.value
        latencies.append(ContinuousClock.now - start)
        precondition(got.count == 1, "the waiting agent leased the job")
        _ = try await dispatcher.complete(nodeID: node.id, jobID: got[0].lease.jobID, attempt: got[0].lease.attempt, result: result, usage: nil)
    }
    return latencies.sorted()
}

/// Lease+complete cycles per second with `workers` agents draining `jobs` queued jobs.
func cycles(_ dispatcher: Dispatcher, workers: Int, jobs: Int, batched: Bool) async throws -> Double {
    let model = "cycles-\(UUID().uuidString.prefix(6))"
    try await withThrowingTaskGroup(of: Void.self) { group in
        for w in 0..<4 {
            group.addTask {
                for _ in stride(from: w, to: jobs, by: 4) {
                    _ = try await dispatcher.store.insert(Job(requestID: "r", model: model, body: body, deadline: Date().addingTimeInterval(3600)))
                }
            }
        }
        try await group.waitForAll()
    }
    var nodes: [Node] = []
    for _ in 0..<workers { nodes.append(try await enroll(dispatcher, models: [model], capacity: 64)) }
    let start = ContinuousClock.now
    let done = try await withThrowingTaskGroup(of: Int.self) { group in
        for node in nodes {
            group.addTask {
                var count = 0
                var leaseTime = Duration.zero
                var completeTime = Duration.zero
                defer {
                    if ProcessInfo.processInfo.environment["MIZAN_BENCH_DETAIL"] != nil {
                        print("worker: \(count) cycles, lease \(leaseTime), complete \(completeTime)")
                    }
                }
                while true {
                    let t0 = ContinuousClock.now
                    let leased = try await dispatcher.lease(for: node, limit: batchSize, wait: .zero)
                    leaseTime += ContinuousClock.now - t0
                    if leased.isEmpty { return count }
                    let t1 = ContinuousClock.now
                    if batched {
                        let results = try await dispatcher.complete(
                            leased.map { LeaseCompletion(lease: $0.lease, completion: .succeeded(result: result, usage: nil)) }
                        )
                        count += results.filter { (try? $0.get()) != nil }.count
                    } else {
                        for job in leased {
                            _ = try await dispatcher.complete(nodeID: node.id, jobID: job.lease.jobID, attempt: job.lease.attempt, result: result, usage: nil)
                            count += 1
                        }
                    }
                    completeTime += ContinuousClock.now - t1
                }
            }
        }
        return try await group.reduce(0, +)
    }
    let elapsed = ContinuousClock.now - start
    precondition(done == jobs, "every job completed once (\(done) of \(jobs))")
    let (s, atto) = elapsed.components
    return Double(jobs) / (Double(s) + Double(atto) / 1e18)
}

func measure(_ name: String, _ dispatcher: Dispatcher, pickupTarget: String, cycleJobs: Int, cycleTarget: [Int: String]) async throws -> [Row] {
    var rows: [Row] = []
    let latencies = try await pickup(dispatcher, samples: quick ? 200 : 2000)
    rows.append(Row(store: name, figure: "pickup p50", value: milliseconds(percentile(latencies, 0.5)), target: pickupTarget))
    rows.append(Row(store: name, figure: "pickup p99", value: milliseconds(percentile(latencies, 0.99)), target: "-"))
    for batched in [false, true] {
        for workers in [1, 4] {
            let rate = try await cycles(dispatcher, workers: workers, jobs: quick ? cycleJobs / 10 : cycleJobs, batched: batched)
            rows.append(
                Row(
                    store: name,
                    figure: "lease+complete, \(workers) worker(s)\(batched ? ", batched" : "")",
                    value: String(format: "%.0f /s", rate),
                    target: cycleTarget[workers] ?? "-"
                )
            )
        }
    }
    return rows
}

rows += try await measure("memory", Dispatcher(store: .memory()), pickupTarget: "< 1 ms", cycleJobs: 100_000, cycleTarget: [:])
rows += try await PostgresTestDatabase.withDatabase { client, _ in
    let store = PostgresStore(client: client)
    return try await withRunningStore(store) {
        try await measure("postgres", Dispatcher(store: store), pickupTarget: "< 3 ms", cycleJobs: 20_000, cycleTarget: [4: ">= 8000 /s"])
    }
}

print("")
print("store     figure                                      value          target")
for row in rows {
    print(
        row.store.padding(toLength: 10, withPad: " ", startingAt: 0)
            + row.figure.padding(toLength: 44, withPad: " ", startingAt: 0)
            + row.value.padding(toLength: 15, withPad: " ", startingAt: 0)
            + row.target
    )
}

if CommandLine.arguments.contains("--probe") {
    try await PostgresTestDatabase.withDatabase { client, _ in
        for query in ["SELECT 1", "SELECT pg_notify('x', 'y')"] {
            let start = ContinuousClock.now
            for _ in 0..<2000 { _ = try await client.query(PostgresQuery(unsafeSQL: query)).collect { _ in 0 } }
            print(query, (ContinuousClock.now - start) / 2000)
        }
    }
}
