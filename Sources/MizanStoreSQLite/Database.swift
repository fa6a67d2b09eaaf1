import Foundation
import MizanStore
import VaporCSQLite

/// A value bound to a statement or read from a row.
package enum SQLValue: Sendable, Equatable {
    case integer(Int)
    case float(Double)
    case text(String)
    case blob(Data)
    case null

    package var integer: Int? {
        switch self {
        case .integer(let value): value
        case .float(let value): Int(exactly: value.rounded(.towardZero))
        default: nil
        }
    }

    package var double: Double? {
        switch self {
        case .float(let value): value
        case .integer(let value): Double(value)
        default: nil
        }
    }

    package var string: String? {
        if case .text(let value) = self { return value }
        return nil
    }

    package var blob: Data? {
        if case .blob(let value) = self { return value }
        return nil
    }

    package var isNull: Bool { self == .null }

    /// A blob, or a text longer than an id or a name: what a statement should not keep a copy of.
    var isLarge: Bool {
        switch self {
        case .blob: true
        case .text(let value): value.utf8.count > 128
        default: false
        }
    }
}

/// One result row: its values by column name.
package struct SQLRow: Sendable {
    let columns: SQLColumns
    let values: [SQLValue]

    /// The value of a column, nil when the statement has no such column.
    package func column(_ name: String) -> SQLValue? {
        columns.index[name].map { values[$0] }
    }

    /// The value at a position of the statement's columns.
    package subscript(position position: Int) -> SQLValue { values[position] }

    /// The names of the statement's columns, in order (shared by the statement's rows).
    package var columnNames: [String] { columns.names }
}

/// A statement's column names, shared by its rows.
final class SQLColumns: Sendable {
    let names: [String]
    let index: [String: Int]

    init(_ names: [String]) {
        self.names = names
        var index: [String: Int] = [:]
        for (position, name) in names.enumerated() where index[name] == nil { index[name] = position }
        self.index = index
    }
}

/// A statement SQLite refused, or a file it could not use.
package struct SQLiteFailure: Error, CustomStringConvertible, Sendable {
    /// SQLite's (extended) result code.
    package let code: Int32
    /// SQLite's message.
    package let message: String

    package var description: String { "\(message) (SQLite code \(code))" }
}

/// One connection to an SQLite file, with its prepared statements kept for reuse.
///
/// A connection is not thread-safe: its owner (a ``ConnectionPool``) hands it to
/// one task at a time. Opened in SQLite's multi-thread mode (no per-call mutex), on the SQLite
/// that `sqlite-nio` bundles, so that nothing needs to be installed on the machine. Statements
/// run synchronously on the calling thread; the store runs a whole transaction in one work item
/// on a thread pool, so that a transaction of several statements costs one hop, not one each.
package final class Database: @unchecked Sendable {
    private var handle: OpaquePointer?
    /// Where this connection's statements are counted (its store's counter).
    private let counter: StatementCounter?
    private var statements: [String: Statement] = [:]
    /// Set by the WAL hook on the thread of the commit, which is the connection's.
    private final class WALCount {
        var frames = 0
    }
    private let walCount = WALCount()
    /// How many prepared statements are kept (a lease's text varies with a node's models, a
    /// batch's with its size): past it, the cache starts again.
    private static let cacheLimit = 96

    private final class Statement {
        let raw: OpaquePointer
        let columns: SQLColumns
        let columnCount: Int32

        init(raw: OpaquePointer) {
            self.raw = raw
            columnCount = sqlite_nio_sqlite3_column_count(raw)
            columns = SQLColumns((0..<columnCount).map { String(cString: sqlite_nio_sqlite3_column_name(raw, $0)) })
        }
    }

    private init(handle: OpaquePointer, counter: StatementCounter?) {
        self.handle = handle
        self.counter = counter
    }

    /// Opens (creating it when missing) the file at `path`.
    /// - Parameters:
    ///   - path: The database file.
    ///   - busyTimeout: How long a statement waits for a lock another connection holds.
    /// - Throws: ``SQLiteFailure`` when the file cannot be opened.
    package static func open(path: String, busyTimeout: Duration = .seconds(5), counter: StatementCounter? = nil) throws -> Database {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        let code = sqlite_nio_sqlite3_open_v2(path, &handle, flags, nil)
        guard code == SQLITE_OK, let handle else {
            let message = handle.flatMap { sqlite_nio_sqlite3_errmsg($0).map { String(cString: $0) } } ?? "cannot open the file"
            sqlite_nio_sqlite3_close(handle)
            throw SQLiteFailure(code: code, message: message)
        }
        let milliseconds = Int32(clamping: Int((busyTimeout / .milliseconds(1)).rounded()))
        sqlite_nio_sqlite3_busy_timeout(handle, milliseconds)
        return Database(handle: handle, counter: counter)
    }

    /// Finalizes the statements and closes the connection (once).
    package func close() {
        guard let handle else { return }
        for statement in statements.values { sqlite_nio_sqlite3_finalize(statement.raw) }
        statements = [:]
        sqlite_nio_sqlite3_close(handle)
        self.handle = nil
    }

    deinit { close() }

    /// Runs one statement with its binds and returns its rows.
    @discardableResult
    package func query(_ sql: String, _ binds: [SQLValue] = []) throws -> [SQLRow] {
        counter?.add()
        let statement = try prepared(sql)
        defer {
            sqlite_nio_sqlite3_reset(statement.raw)
            // Not `sqlite3_clear_bindings`: it marks a statement whose plan looked at a bound
            // value (a `LIMIT ?`, a partial index) as expired, and the next run prepares it
            // again — most of a lease's time. Only the copies of bodies are dropped, so that a
            // cached statement does not hold a prompt; those binds never steer a plan.
            for (offset, value) in binds.enumerated() where value.isLarge {
                sqlite_nio_sqlite3_bind_null(statement.raw, Int32(offset + 1))
            }
        }
        for (offset, value) in binds.enumerated() { try bind(value, at: Int32(offset + 1), in: statement.raw) }
        var rows: [SQLRow] = []
        while true {
            let code = sqlite_nio_sqlite3_step(statement.raw)
            if code == SQLITE_DONE { return rows }
            guard code == SQLITE_ROW else { throw failure(code) }
            var values: [SQLValue] = []
            values.reserveCapacity(Int(statement.columnCount))
            for column in 0..<statement.columnCount { values.append(value(of: statement.raw, at: column)) }
            rows.append(SQLRow(columns: statement.columns, values: values))
        }
    }

    /// Runs statements without binds (one or several, separated by semicolons), uncached.
    package func execute(_ sql: String) throws {
        counter?.add()
        let code = sqlite_nio_sqlite3_exec(handle, sql, nil, nil, nil)
        guard code == SQLITE_OK else { throw failure(code) }
    }

    /// The frames in the WAL after this connection's last commit, once ``watchWAL()`` has been
    /// called (0 after ``checkpoint()``).
    package var walFrames: Int { walCount.frames }

    /// Counts the WAL's frames at each commit instead of SQLite's automatic checkpoint, which
    /// this turns off: the owner checkpoints (``checkpoint()``) where it chooses.
    package func watchWAL() {
        sqlite_nio_sqlite3_wal_hook(
            handle,
            { context, _, _, frames in
                if let context { Unmanaged<WALCount>.fromOpaque(context).takeUnretainedValue().frames = Int(frames) }
                return SQLITE_OK
            },
            Unmanaged.passUnretained(walCount).toOpaque()
        )
    }

    /// Copies the WAL's frames into the file as far as no reader needs them (`PASSIVE`: waits
    /// for nobody). The WAL starts again at the next commit once every frame is copied.
    package func checkpoint() throws {
        walCount.frames = 0
        try execute("PRAGMA wal_checkpoint(PASSIVE)")
    }

    /// How many rows the last `INSERT`, `UPDATE` or `DELETE` of this connection changed.
    package var changes: Int { handle.map { Int(sqlite_nio_sqlite3_changes64($0)) } ?? 0 }

    /// Whether a transaction is open (SQLite ends one itself on some failures: a full disk, an I/O error).
    package var inTransaction: Bool { handle.map { sqlite_nio_sqlite3_get_autocommit($0) == 0 } ?? false }

    /// Runs `body` in one `BEGIN IMMEDIATE` … `COMMIT` transaction, rolled back when it throws.
    package func transaction<T>(_ body: (Database) throws -> T) throws -> T {
        try query("BEGIN IMMEDIATE")
        do {
            let value = try body(self)
            try query("COMMIT")
            return value
        } catch {
            if sqlite_nio_sqlite3_get_autocommit(handle) == 0 { try? execute("ROLLBACK") }
            throw error
        }
    }

    // MARK: Statements

    private func prepared(_ sql: String) throws -> Statement {
        if let statement = statements[sql] { return statement }
        guard let handle else { throw SQLiteFailure(code: SQLITE_MISUSE, message: "the connection is closed") }
        if statements.count >= Self.cacheLimit {
            for statement in statements.values { sqlite_nio_sqlite3_finalize(statement.raw) }
            statements = [:]
        }
        var raw: OpaquePointer?
        let code = sqlite_nio_sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &raw, nil)
        guard code == SQLITE_OK, let raw else { throw failure(code) }
        let statement = Statement(raw: raw)
        statements[sql] = statement
        return statement
    }

    private func bind(_ value: SQLValue, at index: Int32, in statement: OpaquePointer) throws {
        let code: Int32
        switch value {
        case .integer(let value): code = sqlite_nio_sqlite3_bind_int64(statement, index, Int64(value))
        case .float(let value): code = sqlite_nio_sqlite3_bind_double(statement, index, value)
        case .text(let value):
            code = value.withCString { text in
                sqlite_nio_sqlite3_bind_text64(statement, index, text, UInt64(value.utf8.count), Self.transient, UInt8(SQLITE_UTF8))
            }
        case .blob(let value):
            if value.isEmpty {
                code = sqlite_nio_sqlite3_bind_zeroblob(statement, index, 0)
            } else {
                code = value.withUnsafeBytes { bytes in
                    sqlite_nio_sqlite3_bind_blob64(statement, index, bytes.baseAddress, UInt64(bytes.count), Self.transient)
                }
            }
        case .null: code = sqlite_nio_sqlite3_bind_null(statement, index)
        }
        guard code == SQLITE_OK else { throw failure(code) }
    }

    private func value(of statement: OpaquePointer, at column: Int32) -> SQLValue {
        switch sqlite_nio_sqlite3_column_type(statement, column) {
        case SQLITE_INTEGER: return .integer(Int(sqlite_nio_sqlite3_column_int64(statement, column)))
        case SQLITE_FLOAT: return .float(sqlite_nio_sqlite3_column_double(statement, column))
        case SQLITE_TEXT:
            guard let text = sqlite_nio_sqlite3_column_text(statement, column) else { return .text("") }
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
            guard count > 0, let bytes = sqlite_nio_sqlite3_column_blob(statement, column) else { return .blob(Data()) }
            return .blob(Data(bytes: bytes, count: count))
        default: return .null
        }
    }

    private func failure(_ code: Int32) -> SQLiteFailure {
        let message = handle.flatMap { sqlite_nio_sqlite3_errmsg($0).map { String(cString: $0) } } ?? "the connection is closed"
        return SQLiteFailure(code: code, message: message)
    }

    /// SQLite copies the bytes of a bind before the call returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}
