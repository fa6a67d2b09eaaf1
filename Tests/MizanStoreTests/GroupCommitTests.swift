import Foundation
import MizanStoreSQLite
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
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-group-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("t.sqlite").path
        let connection = try Database.open(path: path)
        try connection.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER PRIMARY KEY)")
        let reader = try Database.open(path: path)
        defer { reader.close() }
        let pool = ConnectionPool([connection])
        try await body(GroupCommit(writer: pool), pool, reader)
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

    /// Waits (at most 10 s) until `condition` holds.
    func until(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
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
}
