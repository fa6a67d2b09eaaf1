import NIOPosix
import Synchronization

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
