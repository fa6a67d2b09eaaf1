import Foundation
import MizanStoreSQLite
import Testing

/// A fresh SQLite file in a temporary folder, open (locked, its schema migrated) for `body`;
/// closed and deleted after.
func withSQLiteFile<T: Sendable>(_ body: (SQLiteFile, _ path: String) async throws -> T) async throws -> T {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-sqlite-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let path = folder.appendingPathComponent("mizan.sqlite").path
    let file = try await SQLiteFile.open(path: path)
    do {
        let value = try await body(file, path)
        await file.close()
        return value
    } catch {
        await file.close()
        throw error
    }
}

@Suite("SQLite file and schema", .timeLimit(.minutes(1)))
struct SQLiteSchemaTests {
    /// The versions the file records as applied.
    func appliedVersions(_ path: String) throws -> [Int] {
        let check = try Database.open(path: path)
        defer { check.close() }
        return try check.query("SELECT version FROM mizan_schema_migrations ORDER BY version").compactMap { $0.column("version")?.integer }
    }

    @Test func aNewFileGetsEveryMigrationOnceAndInWALMode() async throws {
        try await withSQLiteFile { file, path in
            #expect(try appliedVersions(path) == SQLiteSchema.migrations.map(\.version))
            #expect(SQLiteSchema.version == SQLiteSchema.migrations.map(\.version).max())
            let mode = try await Self.read(file, "PRAGMA journal_mode").first?.column("journal_mode")?.string
            #expect(mode == "wal")
            let before = file.connections.statements.value
            try await SQLiteSchema.migrate(file.connections, path: path)
            #expect(try appliedVersions(path) == SQLiteSchema.migrations.map(\.version), "a second migration applies nothing")
            // The migrations table, what it holds, and the transaction's BEGIN and COMMIT.
            #expect(file.connections.statements.value - before == 4)
        }
    }

    @Test func aFileWithANewerSchemaIsRefusedAndLeftUnlocked() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-sqlite-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("mizan.sqlite").path
        try await SQLiteFile.open(path: path).close()
        let file = try Database.open(path: path)
        try file.query("INSERT INTO mizan_schema_migrations (version, applied_at) VALUES (?, 0)", [.integer(SQLiteSchema.version + 1)])
        file.close()
        await #expect {
            _ = try await SQLiteFile.open(path: path)
        } throws: { error in
            guard case SQLiteStoreError.cannotOpen(_, let reason) = error else { return false }
            return reason.contains("newer")
        }
        // The refusal released the lock: removing the newer version, the file opens again.
        let fix = try Database.open(path: path)
        try fix.query("DELETE FROM mizan_schema_migrations WHERE version > ?", [.integer(SQLiteSchema.version)])
        fix.close()
        try await SQLiteFile.open(path: path).close()
    }

    @Test func aSecondOpeningOfAnOpenFileIsRefused() async throws {
        _ = try await withSQLiteFile { _, path in
            await #expect {
                _ = try await SQLiteFile.open(path: path)
            } throws: { error in
                guard case SQLiteStoreError.locked = error else { return false }
                return true
            }
        }
    }

    /// Runs a read on one of the file's readers.
    static func read(_ file: SQLiteFile, _ sql: String) async throws -> [SQLRow] {
        try await file.connections.read(sql)
    }
}
