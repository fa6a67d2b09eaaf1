import Foundation
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why an SQLite store could not be opened; the message says what to do.
public enum SQLiteStoreError: Error, CustomStringConvertible, Sendable {
    /// Another process (a second gateway) holds the file.
    case locked(path: String)
    /// The file cannot be opened or written (a missing folder, permissions, not a database).
    case cannotOpen(path: String, reason: String)

    public var description: String {
        switch self {
        case .locked(let path):
            "The SQLite database \(path) is in use by another gateway (it holds \(path).lock). One gateway serves one SQLite file; "
                + "for several gateway instances, share a PostgreSQL database (--database-url postgres://…)."
        case .cannotOpen(let path, let reason):
            "Cannot use the SQLite database \(path): \(reason)."
        }
    }
}

/// The database's files are its owner's alone: they hold prompts and answers in plain text.
enum PrivateFiles {
    /// Creates the database file with mode 0600 when it is missing (SQLite gives `-wal` and
    /// `-shm` the mode of the database file), and takes the group's and others' access away
    /// from the files that exist.
    /// - Returns: The files whose mode was narrowed.
    static func restrict(database path: String) throws -> [String] {
        #if canImport(Glibc)
            let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        #else
            let fd = Darwin.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        #endif
        guard fd >= 0 else {
            throw SQLiteStoreError.cannotOpen(path: path, reason: "cannot create it (\(String(cString: strerror(errno))))")
        }
        close(fd)
        var narrowed: [String] = []
        for file in [path, path + "-wal", path + "-shm"] {
            var info = stat()
            guard stat(file, &info) == 0, info.st_mode & 0o077 != 0 else { continue }
            if chmod(file, info.st_mode & 0o700) == 0 { narrowed.append(file) }
        }
        return narrowed
    }
}

/// An exclusive `flock` on a file beside the database, held while the store is open: the
/// kernel drops it when the process ends, however it ends.
final class FileLock: Sendable {
    private let descriptor: Mutex<Int32>

    init(path: String) throws {
        #if canImport(Glibc)
            let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        #else
            let fd = Darwin.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        #endif
        guard fd >= 0 else {
            throw SQLiteStoreError.cannotOpen(
                path: String(path.dropLast(5)), reason: "cannot create its lock file (\(String(cString: strerror(errno))))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let busy = errno == EWOULDBLOCK
            let reason = String(cString: strerror(errno))
            close(fd)
            if busy { throw SQLiteStoreError.locked(path: String(path.dropLast(5))) }
            throw SQLiteStoreError.cannotOpen(path: String(path.dropLast(5)), reason: "cannot lock it (\(reason))")
        }
        descriptor = Mutex(fd)
    }

    /// Releases the lock (once).
    func release() {
        descriptor.withLock { fd in
            guard fd >= 0 else { return }
            flock(fd, LOCK_UN)
            close(fd)
            fd = -1
        }
    }

    deinit { release() }
}

/// Connections handed to one task at a time, first come first served, without blocking a
/// thread while a task waits for one. A task's work on its connection runs in one work item of
/// a thread pool (SQLite's calls block), so that a transaction of several statements costs one
/// hop, not one per statement.
package final class ConnectionPool: Sendable {
    private struct State {
        var idle: [Database]
        let total: Int
        var waiters: [CheckedContinuation<Database?, Never>] = []
        var closed = false
        var closer: CheckedContinuation<[Database], Never>?
    }

    private let state: Mutex<State>
    private let threadPool: NIOThreadPool

    package init(_ connections: [Database], threadPool: NIOThreadPool = .singleton) {
        state = Mutex(State(idle: connections, total: connections.count))
        self.threadPool = threadPool
    }

    /// How many tasks wait for a connection.
    package var waiting: Int { state.withLock { $0.waiters.count } }

    /// Runs `body` with a connection to itself.
    /// - Throws: ``SQLiteFailure`` when the pool is closed, or what `body` throws.
    package func run<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        guard let connection = await take() else { throw SQLiteFailure(code: 21, message: "the store is closed") }
        defer { give(connection) }
        return try await threadPool.runIfActive { try body(connection) }
    }

    /// Runs `body` on the calling thread with a connection, when one is idle (no hop).
    /// - Returns: What `body` returned, or `nil` when every connection is in use or the pool is closed.
    package func runHere<T>(_ body: (Database) throws -> T) rethrows -> T? {
        let connection = state.withLock { state -> Database? in
            state.closed ? nil : state.idle.popLast()
        }
        guard let connection else { return nil }
        defer { give(connection) }
        return try body(connection)
    }

    /// Refuses new work, waits for the connections in use, and closes them all (`last` runs on
    /// each first). Closing twice is a no-op.
    package func close(last: @escaping @Sendable (Database) -> Void = { _ in }) async {
        let connections = await withCheckedContinuation { (continuation: CheckedContinuation<[Database], Never>) in
            let ready = state.withLock { state -> [Database]? in
                guard !state.closed else { return [] }
                state.closed = true
                for waiter in state.waiters { waiter.resume(returning: nil) }
                state.waiters = []
                guard state.idle.count == state.total else {
                    state.closer = continuation
                    return nil
                }
                defer { state.idle = [] }
                return state.idle
            }
            if let ready { continuation.resume(returning: ready) }
        }
        guard !connections.isEmpty else { return }
        _ = try? await threadPool.runIfActive {
            for connection in connections {
                last(connection)
                connection.close()
            }
        }
    }

    private func take() async -> Database? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Database?, Never>) in
            let (connection, now) = state.withLock { state -> (Database?, Bool) in
                if state.closed { return (nil, true) }
                if let connection = state.idle.popLast() { return (connection, true) }
                state.waiters.append(continuation)
                return (nil, false)
            }
            if now { continuation.resume(returning: connection) }
        }
    }

    private func give(_ connection: Database) {
        let (waiter, closer, all) = state.withLock {
            state -> (CheckedContinuation<Database?, Never>?, CheckedContinuation<[Database], Never>?, [Database]) in
            if !state.waiters.isEmpty { return (state.waiters.removeFirst(), nil, []) }
            state.idle.append(connection)
            guard state.closed, state.idle.count == state.total, let closer = state.closer else { return (nil, nil, []) }
            state.closer = nil
            defer { state.idle = [] }
            return (nil, closer, state.idle)
        }
        waiter?.resume(returning: connection)
        closer?.resume(returning: all)
    }
}

/// Values worked out once per shape and kept: the text of a statement built for a batch's size or
/// a lease's models and endpoints, a node's models decoded from their JSON. Building them on each
/// call (string joins, a JSON decoder) took about a twentieth of the one writer's time. Bounded:
/// past ``limit`` entries it starts again.
final class ShapeCache<Value: Sendable>: Sendable {
    private let values = Mutex<[String: Value]>([:])
    /// The most values kept.
    static var limit: Int { 256 }

    /// The value kept for `key`, or `make()`'s, kept for next time.
    func value(_ key: String, make: () throws -> Value) rethrows -> Value {
        if let value = values.withLock({ $0[key] }) { return value }
        let value = try make()
        values.withLock { values in
            if values.count >= Self.limit { values = [:] }
            values[key] = value
        }
        return value
    }
}

extension SQLiteStore {
    /// The next power of two from `count`: how many rows a statement of `count` binds, so that
    /// statements of any size share a few shapes (and prepared statements).
    static func width(_ count: Int) -> Int {
        count <= 1 ? 1 : 1 << (Int.bitWidth - (count - 1).leadingZeroBitCount)
    }

    /// `count` numbered binds from `?first`, separated by commas.
    static func marks(_ count: Int, from first: Int) -> String {
        (first..<first + count).map { "?\($0)" }.joined(separator: ", ")
    }
}
