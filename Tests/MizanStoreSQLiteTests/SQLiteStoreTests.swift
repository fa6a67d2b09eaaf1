import Foundation
import MizanCore
import MizanStore
import MizanStoreSQLite
import MizanStoreTesting
import Testing

/// A new SQLite store in a fresh temporary folder, closed and deleted after `body`.
func withSQLiteStore<T: Sendable>(
    durability: SQLiteStore.Durability = .normal,
    _ body: (SQLiteStore, _ path: String) async throws -> T
) async throws -> T {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-sqlite-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let path = folder.appendingPathComponent("mizan.sqlite").path
    let store = try await SQLiteStore.open(path: path, durability: durability)
    do {
        let value = try await body(store, path)
        await store.close()
        return value
    } catch {
        await store.close()
        throw error
    }
}

@Suite("SQLite store conformance")
struct SQLiteConformanceTests {
    @Test(arguments: StoreConformance.checks)
    func conformance(_ check: StoreConformance.Check) async throws {
        try await withSQLiteStore { store, _ in try await check.run(on: store) }
    }

    @Test(arguments: AccessConformance.checks)
    func accessConformance(_ check: AccessConformance.Check) async throws {
        try await withSQLiteStore { store, _ in try await check.run(on: store) }
    }
}

@Suite("SQLite store: the file")
struct SQLiteFileTests {
    static func mode(_ path: String) throws -> Int {
        try (FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1
    }

    /// The file holds prompts and answers: under the usual umask (022) it and its WAL and
    /// shared-memory files are the owner's alone, and a file made readable by others is narrowed.
    @Test func theDatabaseFilesAreTheOwnersAlone() async throws {
        try await withSQLiteStore { store, path in
            _ = try await store.insert(Job(requestID: "r", model: "m1", body: Data("{}".utf8), deadline: Date().addingTimeInterval(600)))
            for file in [path, path + "-wal", path + "-shm", path + ".lock"] {
                let mode = try Self.mode(file)
                #expect(mode == 0o600, "\(file): \(String(mode, radix: 8))")
            }
            await store.close()
            chmod(path, 0o644)
            let again = try await SQLiteStore.open(path: path)
            #expect(try Self.mode(path) == 0o600, "an existing file others could read is narrowed")
            await again.close()
        }
    }

    @Test func keepsEverythingAcrossAReopenAndMigratesOnce() async throws {
        try await withSQLiteStore { store, path in
            let job = Job(requestID: "r", model: "m1", body: Data(#"{"model":"m1"}"#.utf8), deadline: Date().addingTimeInterval(600))
            _ = try await store.insert(job)
            let key = try await store.createAPIKey(APIKey(name: "k", prefix: "mzn_sk_abcde", createdAt: Date()), hash: Data([1, 2, 3]))
            await store.close()
            let again = try await SQLiteStore.open(path: path)
            #expect(try await again.job(job.id)?.body == job.body)
            #expect(try await again.apiKey(hash: Data([1, 2, 3])) == key)
            try await again.migrate()
            try await again.migrate()
            await again.close()
            // The folder's store is reopened by withSQLiteStore's close as a no-op.
            _ = try await SQLiteStore.open(path: path).close()
        }
    }

    @Test func migrationEightReplacesTheFinishedJobsIndexOnAFileWithJobs() async throws {
        try await withSQLiteStore { store, path in
            // A file as version 7 left it: its finished-jobs index, its migrations, finished jobs.
            let now = Date()
            var ids: [JobID] = []
            for _ in 0..<3 {
                ids.append(try await store.insert(Job(requestID: "r", model: "m1", body: Data("{}".utf8), deadline: now + 600)).job.id)
            }
            _ = try await store.createNode(Node(name: "n", createdAt: now), registrationTokenHash: Data([1]))
            let node = try await store.registerNode(
                registrationTokenHash: Data([1]), nodeTokenHash: Data([2]), report: NodeReport(models: ["m1"], maxConcurrency: 4),
                now: now)
            let leased = try await store.lease(nodeID: node.id, limit: 2, now: now)
            _ = try await store.complete(leased[0].lease, with: .succeeded(result: Data("{}".utf8), usage: nil), now: now)
            _ = try await store.complete(
                leased[1].lease, with: .failed(code: "bad_output", message: "x", retryable: false), now: now)
            let queued = try #require(Set(ids).subtracting(leased.map(\.job.id)).first)
            _ = try await store.timeOut(queued, now: now)
            await store.close()
            let file = try Database.open(path: path)
            try file.execute(
                """
                DROP INDEX mizan_jobs_unsuccessful;
                CREATE INDEX mizan_jobs_finished_state ON mizan_jobs (state, id) WHERE state IN ('succeeded', 'failed', 'timed_out');
                DELETE FROM mizan_schema_migrations WHERE version = 8
                """)
            file.close()

            let again = try await SQLiteStore.open(path: path)
            let indexes = try Database.open(path: path)
            let names = try indexes.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'mizan_jobs'")
                .compactMap { $0.column("name")?.string }
            let versions = try indexes.query("SELECT max(version) AS v FROM mizan_schema_migrations").first?.column("v")?.integer
            indexes.close()
            #expect(names.contains("mizan_jobs_unsuccessful") && !names.contains("mizan_jobs_finished_state"))
            #expect(versions == SQLiteStore.schemaVersion)
            #expect(try await again.jobs(matching: JobFilter(state: .succeeded), limit: 10).map(\.id) == [leased[0].job.id])
            #expect(try await again.jobs(matching: JobFilter(state: .failed), limit: 10).map(\.id) == [leased[1].job.id])
            #expect(try await again.jobs(matching: JobFilter(state: .timedOut), limit: 10).map(\.id) == [queued])
            await again.close()
        }
    }

    /// A file in a fresh folder as schema `version` left it (its migrations applied and
    /// recorded), open for `body` to fill; deleted after.
    func withFile(atVersion version: Int, _ body: (_ file: Database, _ path: String) async throws -> Void) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-sqlite-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("mizan.sqlite").path
        let file = try Database.open(path: path)
        try file.execute("CREATE TABLE mizan_schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        for migration in SQLiteSchema.migrations where migration.version <= version {
            for statement in migration.statements { try file.execute(statement) }
            try file.query("INSERT INTO mizan_schema_migrations (version, applied_at) VALUES (?, 0)", [.integer(migration.version)])
        }
        try await body(file, path)
    }

    @Test func migrationNineMovesEveryBodyIntoItsOwnTable() async throws {
        // A file as version 8 left it: bodies in the jobs' rows; a queued job (with an
        // idempotency key), a succeeded one and a failed one.
        try await withFile(atVersion: 8) { file, path in
            let now = Date()
            let queued = JobID()
            let succeeded = JobID()
            let failed = JobID()
            for (id, state, body, key) in [
                (queued, "accepted", "{\"q\":1}", "key-1"), (succeeded, "succeeded", "{\"s\":2}", nil),
                (failed, "failed", "{\"f\":3}", nil),
            ] {
                try file.query(
                    """
                    INSERT INTO mizan_jobs (id, request_id, model, body, stream, state, attempt, max_attempts, priority, deadline,
                        created_at, updated_at, finished_at, result, error_code, idempotency_key, api_key_id)
                    VALUES (?1, 'r', 'm1', ?2, 0, ?3, 1, 3, 0, ?4, ?5, ?5, CASE WHEN ?3 = 'accepted' THEN NULL ELSE ?5 END,
                        CASE WHEN ?3 = 'succeeded' THEN x'7b7d' END, CASE WHEN ?3 = 'failed' THEN 'bad_output' END, ?6, 'k')
                    """,
                    [
                        .text(id.description), .blob(Data(body.utf8)), .text(state),
                        .float(now.addingTimeInterval(600).timeIntervalSinceReferenceDate),
                        .float(now.addingTimeInterval(-7_200).timeIntervalSinceReferenceDate), key.map { .text($0) } ?? .null,
                    ])
            }
            file.close()

            let store = try await SQLiteStore.open(path: path)
            #expect(try await store.job(queued)?.body == Data(#"{"q":1}"#.utf8))
            #expect(try await store.job(succeeded)?.result == Data("{}".utf8))
            #expect(try await store.job(failed)?.errorCode == "bad_output")
            // The idempotency key still finds its job; the queued job leases with its body.
            let again = Job(requestID: "r2", model: "m1", body: Data("{}".utf8), deadline: now + 600, idempotencyKey: "key-1")
            #expect(try await store.insert(again).job.id == queued)
            _ = try await store.createNode(Node(name: "n", createdAt: now), registrationTokenHash: Data([1]))
            let node = try await store.registerNode(
                registrationTokenHash: Data([1]), nodeTokenHash: Data([2]), report: NodeReport(models: ["m1"], maxConcurrency: 4), now: now)
            let leased = try await store.lease(nodeID: node.id, limit: 4, now: now)
            #expect(leased.map(\.job.id) == [queued] && leased.first?.job.body == Data(#"{"q":1}"#.utf8))
            // Pruning the finished jobs takes their bodies with them.
            #expect(try await store.prune(finishedBefore: now.addingTimeInterval(-3_600)) == 2)
            await store.close()
            let check = try Database.open(path: path)
            defer { check.close() }
            let bodies = try check.query("SELECT b.body FROM mizan_job_bodies b JOIN mizan_jobs j ON j.seq = b.job").compactMap {
                $0.column("body")?.blob
            }
            let orphans = try check.query("SELECT count(*) AS n FROM mizan_job_bodies").first?.column("n")?.integer
            #expect(bodies == [Data(#"{"q":1}"#.utf8)] && orphans == 1)
        }
    }

    @Test func migrationTenIndexesOnlyTheRecordsThatCountAJobsTokens() async throws {
        // A file as version 9 left it, with a record of a job's tokens and two of no job.
        try await withFile(atVersion: 9) { file, path in
            let job = JobID()
            for tokensOfJob in [SQLValue.text(job.description), .null, .null] {
                try file.query(
                    """
                    INSERT INTO mizan_usage (request_id, model, status, latency_ms, created_at, prompt_tokens, completion_tokens, tokens_of_job)
                    VALUES ('r', 'm1', 200, 1, ?, 10, 5, ?)
                    """,
                    [.float(Date().timeIntervalSinceReferenceDate), tokensOfJob])
            }
            file.close()

            let store = try await SQLiteStore.open(path: path)
            let check = try Database.open(path: path)
            let index = try check.query("PRAGMA index_list(mizan_usage)").first { $0.column("name")?.string == "mizan_usage_tokens_of_job" }
            check.close()
            #expect(index?.column("unique")?.integer == 1 && index?.column("partial")?.integer == 1)
            func record(_ jobID: JobID?) -> UsageRecord {
                UsageRecord(
                    requestID: "r", apiKeyID: nil, model: "m1", servedBy: "node/a", status: 200, latencyMilliseconds: 1,
                    usage: TokenUsage(promptTokens: 10, completionTokens: 5), createdAt: Date(), jobID: jobID)
            }
            #expect(try await store.recordUsage(record(job)) == false, "the job's tokens were counted before the upgrade")
            #expect(try await store.recordUsage(record(nil)), "a record of no job counts its tokens")
            #expect(try await store.recordUsage(record(nil)))
            let other = JobID()
            #expect(try await store.recordUsage(record(other)))
            #expect(try await store.recordUsage(record(other)) == false, "another job's tokens count once too")
            await store.close()
        }
    }

    @Test func aSecondStoreOnTheSameFileIsRefused() async throws {
        _ = try await withSQLiteStore { _, path in
            await #expect {
                _ = try await SQLiteStore.open(path: path)
            } throws: { error in
                guard case SQLiteStoreError.locked = error else { return false }
                return "\(error)".contains("PostgreSQL")
            }
        }
    }

    @Test func aFileThatIsNotADatabaseIsRefusedClearly() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-sqlite-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("garbage.sqlite").path
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: path))
        await #expect {
            _ = try await SQLiteStore.open(path: path)
        } throws: { error in
            guard case SQLiteStoreError.cannotOpen = error else { return false }
            return true
        }
        // And a folder that does not exist.
        await #expect(throws: SQLiteStoreError.self) {
            _ = try await SQLiteStore.open(path: folder.appendingPathComponent("missing/dir/mizan.sqlite").path)
        }
    }

    @Test func pruningDeletesOldJobsAndUsage() async throws {
        try await withSQLiteStore { store, _ in
            let old = Date().addingTimeInterval(-10 * 86_400)
            let job = Job(requestID: "r", model: "m1", body: Data("{}".utf8), deadline: old.addingTimeInterval(60), now: old)
            _ = try await store.insert(job)
            _ = try await store.cancel(job.id, now: old)
            let record = UsageRecord(
                requestID: "r", apiKeyID: nil, model: "m1", servedBy: nil, status: 200, latencyMilliseconds: 1, usage: nil,
                createdAt: old.addingTimeInterval(-100 * 86_400)
            )
            try await store.recordUsage(record)
            #expect(try await store.usageSummary().count == 1)
            #expect(try await store.prune(finishedBefore: Date().addingTimeInterval(-86_400)) == 1)
            #expect(try await store.job(job.id) == nil)
            #expect(try await store.usageSummary().isEmpty, "usage older than its retention is gone")
        }
    }
}

@Suite("SQLite store: key counters")
struct SQLiteKeyCounterTests {
    @Test func countersReachTheFileWithUsageRecordsAndOnCloseButHoldsDoNot() async throws {
        try await withSQLiteStore { store, path in
            let policy = KeyPolicy(limits: .init(requestsPerMinute: 10, concurrentRequests: 5), budget: .init(tokens: 1000, period: .total))
            let key = try await store.createAPIKey(
                APIKey(name: "k", prefix: "mzn_sk_cnt", createdAt: Date(), policy: policy), hash: Data([7]))
            func admit() async throws -> String? {
                let admission = try await store.admit(
                    key, holdID: UUID().uuidString, holdUntil: Date().addingTimeInterval(300), now: Date())
                if case .admitted(let hold, _) = admission { return hold }
                return nil
            }
            let first = try #require(try await admit())
            _ = try #require(try await admit(), "a second request, still in flight when the store closes")
            let admittedAt = Date()
            let record = UsageRecord(
                requestID: "r1", apiKeyID: key.id, model: "m1", servedBy: "node/a", status: 200, latencyMilliseconds: 1,
                usage: TokenUsage(promptTokens: 100, completionTokens: 23), createdAt: Date())
            try await store.recordUsage(record, ending: KeyAdmissionEnd(key: key, holdID: first))
            // The tokens are in the file once the record is: read it as another connection would.
            let written = try await store.storedKeyCounters(key.id)
            #expect(written.periodTokens == 123, "the record's transaction wrote the counters: \(written)")
            #expect(written.holds.isEmpty, "holds are never written")
            await store.close()

            let again = try await SQLiteStore.open(path: path)
            let counters = try await again.keyCounters(key.id)
            #expect(counters.periodTokens == 123)
            #expect(counters.holds.isEmpty, "the holds of a process that ended are gone")
            // Where the bucket stood as the two were admitted (on a slow machine it refills meanwhile).
            let requests = KeyLimiter.status(counters, policy: policy, now: admittedAt.timeIntervalSinceReferenceDate).requests
            #expect(requests?.remaining == 8, "both admissions were written on close: \(String(describing: requests))")
            await again.close()
            _ = try await SQLiteStore.open(path: path).close()
        }
    }
}

@Suite("SQLite store: completions of kept jobs")
struct SQLiteKeptJobTests {
    /// A registered node of model m1 and `count` jobs it leased (kept by the store).
    func leasedJobs(_ store: SQLiteStore, count: Int, now: Date) async throws -> (Node, [LeasedJob]) {
        for _ in 0..<count {
            _ = try await store.insert(Job(requestID: "r", model: "m1", body: Data(#"{"model":"m1"}"#.utf8), deadline: now + 600, now: now))
        }
        _ = try await store.createNode(Node(name: "n", createdAt: now), registrationTokenHash: Data([1]))
        let node = try await store.registerNode(
            registrationTokenHash: Data([1]), nodeTokenHash: Data([2]), report: NodeReport(models: ["m1"], maxConcurrency: 10), now: now)
        let leased = try await store.lease(nodeID: node.id, limit: count, now: now)
        try #require(leased.count == count)
        return (node, leased)
    }

    @Test func aBatchWhoseRowChangedUnderItTellsWhichCompletionsApplied() async throws {
        try await withSQLiteStore { store, path in
            let now = Date()
            let (_, leased) = try await leasedJobs(store, count: 3, now: now)
            // The second job's row changes behind the store's back (its attempt moves on): the
            // batch's update, by row number, changes two rows of three.
            let file = try Database.open(path: path)
            try file.query("UPDATE mizan_jobs SET attempt = attempt + 1 WHERE id = ?", [.text(leased[1].job.id.description)])
            file.close()
            let result = JobCompletion.succeeded(result: Data(#"{"object":"chat.completion"}"#.utf8), usage: nil)
            let results = try await store.complete(
                leased.map { LeaseCompletion(lease: $0.lease, completion: result) }, now: now + 1)
            for index in [0, 2] {
                let completed = try results[index].get()
                #expect(completed.state == .succeeded && completed.finishedAt == now + 1)
                #expect(try await store.job(completed.id) == completed, "the job returned is the stored one")
            }
            guard case .failure(let refusal) = results[1] else {
                Issue.record("the completion of the changed row must be refused: \(results[1])")
                return
            }
            #expect(refusal.code == .leaseConflict)
            #expect(try await store.job(leased[1].job.id)?.state == .leased, "the refused completion changed nothing")
        }
    }

    @Test func concurrentSuccessesOfOneLeaseApplyOnce() async throws {
        try await withSQLiteStore { store, _ in
            let now = Date()
            let (_, leased) = try await leasedJobs(store, count: 1, now: now)
            let lease = leased[0].lease
            let outcomes = await withTaskGroup(of: Result<Job, MizanError>.self) { group in
                for attempt in 0..<8 {
                    group.addTask {
                        let result = JobCompletion.succeeded(result: Data(#"{"n":\#(attempt)}"#.utf8), usage: nil)
                        do {
                            return .success(try await store.complete(lease, with: result, now: now + Double(attempt + 1)))
                        } catch let error as MizanError {
                            return .failure(error)
                        } catch {
                            return .failure(MizanError(.storeUnavailable, "\(error)"))
                        }
                    }
                }
                var outcomes: [Result<Job, MizanError>] = []
                for await outcome in group { outcomes.append(outcome) }
                return outcomes
            }
            let applied = outcomes.compactMap { try? $0.get() }
            #expect(applied.count == 1, "one success of eight applies: \(outcomes)")
            for case .failure(let refusal) in outcomes { #expect(refusal.code == .leaseConflict) }
            let stored = try await store.job(lease.jobID)
            #expect(stored == applied.first, "the one that applied is what the file holds")
        }
    }
}
