import Foundation
import MizanStoreSQLite
import NIOPosix
import Synchronization
import Testing

@Suite("SQLite group commit")
struct GroupCommitTests {
    final class Count: Sendable {
        let value = Atomic<Int>(0)
    }

    struct Refused: Error, Equatable {
        let value: Int
    }

    /// A writer connection on a fresh file with one table, `t(x)`, closed and deleted after `body`.
    func withWriter(_ body: (GroupCommit, Database) async throws -> Void) async throws {
        try await withWriter { writes, _, reader in try await body(writes, reader) }
    }

    /// The same, with the writer's connection pool.
    func withWriter(_ body: (GroupCommit, ConnectionPool, Database) async throws -> Void) async throws {
        try await withWriter(options: Options()) { writes, pool, reader, _ in try await body(writes, pool, reader) }
    }

    /// How the writer is set up: as `GroupCommit`'s initializer takes them, and the thread pool of its connection.
    struct Options {
        var runsShortWritesHere = false
        var checkpointFrames: Int?
        var threadPool = NIOThreadPool.singleton
    }

    /// The same, set up as `options` say; `body` also gets the file's path.
    func withWriter(options: Options, _ body: (GroupCommit, ConnectionPool, Database, String) async throws -> Void) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-group-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("t.sqlite").path
        let connection = try Database.open(path: path)
        try connection.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER PRIMARY KEY, body BLOB)")
        if options.checkpointFrames != nil { connection.watchWAL() }
        let reader = try Database.open(path: path)
        defer { reader.close() }
        let pool = ConnectionPool([connection], threadPool: options.threadPool)
        let writes = GroupCommit(writer: pool, runsShortWritesHere: options.runsShortWritesHere, checkpointFrames: options.checkpointFrames)
        try await body(writes, pool, reader, path)
    }

    /// A write that holds the writer (after inserting `value`, when given) until `release` is
    /// signalled; returned once it runs. Its task returns 0.
    func holdWriter(_ writes: GroupCommit, inserting value: Int? = nil) async throws -> (Task<Int, any Error>, DispatchSemaphore) {
        let started = Count()
        let release = DispatchSemaphore(value: 0)
        let first = Task {
            try await writes.write { db in
                if let value { try db.query("INSERT INTO t (x) VALUES (?)", [.integer(value)]) }
                started.value.store(1, ordering: .sequentiallyConsistent)
                _ = release.wait(timeout: .now() + 10)
                return 0
            }
        }
        try await until { started.value.load(ordering: .sequentiallyConsistent) == 1 }
        return (first, release)
    }

    /// Waits (at most 30 s: the whole suite shares two cores) until `condition` holds.
    func until(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw Refused(value: -1) }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    @Test("writes queued behind a running one commit together; one that throws rolls back alone")
    func batchWithAFailure() async throws {
        try await withWriter { writes, reader in
            let (first, release) = try await holdWriter(writes, inserting: 0)
            let others = (1...10).map { value in
                Task {
                    try await writes.write { db in
                        try db.query("INSERT INTO t (x) VALUES (?)", [.integer(value)])
                        if value.isMultiple(of: 3) { throw Refused(value: value) }
                        return value
                    }
                }
            }
            try await until { writes.queued == 10 }
            release.signal()
            #expect(try await first.value == 0)
            for (offset, task) in others.enumerated() {
                let value = offset + 1
                if value.isMultiple(of: 3) {
                    await #expect(throws: Refused(value: value)) { try await task.value }
                } else {
                    #expect(try await task.value == value)
                }
            }
            #expect(writes.batches == 2, "the ten queued writes shared one commit")
            let rows = try reader.query("SELECT x FROM t ORDER BY x").compactMap { $0.column("x")?.integer }
            #expect(rows == [0, 1, 2, 4, 5, 7, 8, 10])
        }
    }

    @Test("a lone single-statement write that fails throws SQLite's error and changes nothing")
    func loneFailure() async throws {
        try await withWriter { writes, reader in
            _ = try await writes.write(single: true) { try $0.query("INSERT INTO t (x) VALUES (1)") }
            await #expect(throws: SQLiteFailure.self) {
                try await writes.write(single: true) { try $0.query("INSERT INTO t (x) VALUES (1)") }
            }
            await #expect(throws: Refused.self) {
                try await writes.write { db in
                    try db.query("INSERT INTO t (x) VALUES (2)")
                    throw Refused(value: 2)
                }
            }
            let rows = try reader.query("SELECT x FROM t").compactMap { $0.column("x")?.integer }
            #expect(rows == [1])
        }
    }

    @Test("many concurrent writes all commit, each once")
    func concurrentWrites() async throws {
        try await withWriter { writes, reader in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for value in 0..<500 {
                    group.addTask {
                        _ = try await writes.write(single: true) { try $0.query("INSERT INTO t (x) VALUES (?)", [.integer(value)]) }
                    }
                }
                try await group.waitForAll()
            }
            let count = try reader.query("SELECT count(*) AS n FROM t").first?.column("n")?.integer
            #expect(count == 500)
            #expect(writes.queued == 0)
        }
    }

    @Test("a long queue of writes lets other work on the writer's connection in between its batches")
    func otherWorkGetsTheWriter() async throws {
        try await withWriter { writes, pool, reader in
            let (first, release) = try await holdWriter(writes)
            // Queued behind the blocked write: more than one turn of batches (32 of 64 writes).
            let total = 64 * 40
            let committed = Count()
            for value in 0..<total {
                writes.writeSoon(linger: .seconds(10)) { db in
                    try db.query("INSERT INTO t (x) VALUES (?)", [.integer(value)])
                } done: { error in
                    if error == nil { committed.value.add(1, ordering: .sequentiallyConsistent) }
                }
            }
            let other = Task { try await pool.run { _ in committed.value.load(ordering: .sequentiallyConsistent) } }
            try await until { pool.waiting == 1 }
            release.signal()
            #expect(try await first.value == 0)
            let seen = try await other.value
            #expect(seen > 0 && seen < total, "the connection was let go after a turn (\(seen) of \(total) writes committed)")
            try await until { committed.value.load(ordering: .sequentiallyConsistent) == total }
            #expect(await writes.idle(timeout: .seconds(1)))
            let count = try reader.query("SELECT count(*) AS n FROM t").first?.column("n")?.integer
            #expect(count == total)
        }
    }

    @Test("writes to a closed writer fail with its error, and the writer is idle after")
    func closedWriter() async throws {
        try await withWriter { writes, pool, _ in
            await pool.close()
            await #expect(throws: SQLiteFailure.self) {
                try await writes.write(single: true) { try $0.query("INSERT INTO t (x) VALUES (1)") }
            }
            let failed = Mutex<(any Error)?>(nil)
            let told = Atomic<Bool>(false)
            writes.writeSoon(linger: .milliseconds(1)) { db in
                try db.query("INSERT INTO t (x) VALUES (2)")
            } done: { error in
                failed.withLock { $0 = error }
                told.store(true, ordering: .sequentiallyConsistent)
            }
            try await until { told.load(ordering: .sequentiallyConsistent) }
            #expect(failed.withLock { $0 } is SQLiteFailure)
            #expect(await writes.idle(timeout: .seconds(1)))
            #expect(writes.queued == 0)
        }
    }

    @Test("a cancelled task's write fails without running; one queued before runs to its end")
    func cancelledWrites() async throws {
        try await withWriter { writes, reader in
            let cancelled = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await writes.write(single: true) { try $0.query("INSERT INTO t (x) VALUES (1)") }
            }
            await #expect(throws: CancellationError.self) { try await cancelled.value }
            let started = Atomic<Bool>(false)
            let release = DispatchSemaphore(value: 0)
            let running = Task {
                try await writes.write { db in
                    started.store(true, ordering: .sequentiallyConsistent)
                    _ = release.wait(timeout: .now() + 10)
                    try db.query("INSERT INTO t (x) VALUES (2)")
                    return 2
                }
            }
            try await until { started.load(ordering: .sequentiallyConsistent) }
            running.cancel()
            release.signal()
            #expect(try await running.value == 2, "a write that started commits and its task gets its value")
            let rows = try reader.query("SELECT x FROM t").compactMap { $0.column("x")?.integer }
            #expect(rows == [2])
        }
    }

    @Test("single-statement writes in a batch (without savepoints): one that fails is undone alone")
    func singleWritesInABatch() async throws {
        try await withWriter { writes, reader in
            let (first, release) = try await holdWriter(writes, inserting: 0)
            // Every third inserts 0 again (a primary key conflict), after a row of its own in
            // the same statement, which is undone with it.
            let others = (1...9).map { value in
                Task {
                    try await writes.write(single: true) { db in
                        let sql = value.isMultiple(of: 3) ? "INSERT INTO t (x) VALUES (?), (0)" : "INSERT INTO t (x) VALUES (?)"
                        return try db.query(sql, [.integer(value)]).count
                    }
                }
            }
            try await until { writes.queued == 9 }
            release.signal()
            #expect(try await first.value == 0)
            for (offset, task) in others.enumerated() {
                if (offset + 1).isMultiple(of: 3) {
                    await #expect(throws: SQLiteFailure.self) { try await task.value }
                } else {
                    #expect(try await task.value == 0)
                }
            }
            #expect(writes.batches == 2, "the nine queued writes shared one commit")
            let rows = try reader.query("SELECT x FROM t ORDER BY x").compactMap { $0.column("x")?.integer }
            #expect(rows == [0, 1, 2, 4, 5, 7, 8])
        }
    }

    @Test("a short write that finds the writer idle runs on its caller's thread; others, and all when it may not, on the writer's")
    func shortWritesRunHere() async throws {
        // A thread pool never started: a write that needs the writer's thread fails.
        let stopped = NIOThreadPool(numberOfThreads: 1)
        for runsHere in [true, false] {
            try await withWriter(options: Options(runsShortWritesHere: runsHere, threadPool: stopped)) { writes, _, reader, _ in
                let short = try? await writes.write(single: true, short: true) { try $0.query("INSERT INTO t (x) VALUES (1)") }
                #expect((short != nil) == runsHere)
                await #expect(throws: (any Error).self, "a write that is not short goes to the writer's thread") {
                    try await writes.write { try $0.query("INSERT INTO t (x) VALUES (2)") }
                }
                let rows = try reader.query("SELECT x FROM t").compactMap { $0.column("x")?.integer }
                #expect(rows == (runsHere ? [1] : []))
            }
        }
    }

    @Test("writes queued while a short write runs on its caller's thread get a turn as it ends; its failure is its own")
    func writesQueuedBehindAShortOne() async throws {
        try await withWriter(options: Options(runsShortWritesHere: true)) { writes, _, reader, _ in
            let committed = Count()
            // Queued inside the short write, with a linger no test waits for: only the turn that
            // the short write starts as it ends commits it in time.
            let value = try await writes.write(short: true) { db in
                try db.query("INSERT INTO t (x) VALUES (1)")
                writes.writeSoon(linger: .seconds(60)) { db in
                    try db.query("INSERT INTO t (x) VALUES (2)")
                } done: { error in
                    if error == nil { committed.value.add(1, ordering: .sequentiallyConsistent) }
                }
                return 1
            }
            #expect(value == 1)
            try await until { committed.value.load(ordering: .sequentiallyConsistent) == 1 }
            #expect(await writes.idle(timeout: .seconds(1)))
            #expect(writes.batches == 2)
            await #expect(throws: Refused(value: 3)) {
                try await writes.write(short: true) { db in
                    try db.query("INSERT INTO t (x) VALUES (3)")
                    throw Refused(value: 3)
                }
            }
            let rows = try reader.query("SELECT x FROM t ORDER BY x").compactMap { $0.column("x")?.integer }
            #expect(rows == [1, 2])
        }
    }

    @Test("a short write that finds the writer idle but its connection lent out waits for a turn and commits")
    func shortWriteBehindOtherWork() async throws {
        try await withWriter(options: Options(runsShortWritesHere: true)) { writes, pool, reader, _ in
            let started = Atomic<Bool>(false)
            let release = DispatchSemaphore(value: 0)
            // Other work on the writer's connection (as a sweep's checkpoint), outside the group commit.
            let other = Task {
                try await pool.run { _ in
                    started.store(true, ordering: .sequentiallyConsistent)
                    _ = release.wait(timeout: .now() + 10)
                }
            }
            try await until { started.load(ordering: .sequentiallyConsistent) }
            let short = Task { try await writes.write(single: true, short: true) { try $0.query("INSERT INTO t (x) VALUES (1)") } }
            try await until { writes.queued == 1 }
            release.signal()
            try await other.value
            // Bounded: a write nobody started a turn for would wait for ever.
            try await until { ((try? reader.query("SELECT x FROM t")) ?? []).count == 1 }
            _ = try await short.value
            #expect(await writes.idle(timeout: .seconds(1)))
            let rows = try reader.query("SELECT x FROM t").compactMap { $0.column("x")?.integer }
            #expect(rows == [1])
        }
    }

    @Test("the WAL is checkpointed into the file past its limit, after short writes and after turns")
    func checkpoints() async throws {
        try await withWriter(options: Options(runsShortWritesHere: true, checkpointFrames: 16)) { writes, _, _, path in
            let size = { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }
            let start = size()
            let body = SQLValue.blob(Data(repeating: 7, count: 8_192))
            // Each write adds at least two pages (its body's overflow) to the WAL: far past 16 frames.
            for value in 0..<40 {
                _ = try await writes.write(single: true, short: true) {
                    try $0.query("INSERT INTO t (x, body) VALUES (?, ?)", [.integer(value), body])
                }
            }
            #expect(await writes.idle(timeout: .seconds(5)))
            let afterShort = size()
            #expect(afterShort >= start + 40 * 8_192 / 2, "the file grew from \(start) to \(afterShort) bytes")
            for value in 40..<80 {
                _ = try await writes.write(single: true) { try $0.query("INSERT INTO t (x, body) VALUES (?, ?)", [.integer(value), body]) }
            }
            #expect(await writes.idle(timeout: .seconds(5)))
            #expect(size() >= afterShort + 40 * 8_192 / 2, "the file grew from \(afterShort) to \(size()) bytes")
        }
    }
}
