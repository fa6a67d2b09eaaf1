import Foundation
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

/// A first-come, first-served lock for async code: the writer connection is held by one
/// transaction at a time, without blocking a thread while others wait.
final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func lock() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { state -> Bool in
                if state.locked {
                    state.waiters.append(continuation)
                    return false
                }
                state.locked = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    func unlock() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}

/// Round-robin over the reader connections.
final class ReaderIndex: Sendable {
    private let value = Atomic<Int>(0)

    func next() -> Int { value.wrappingAdd(1, ordering: .relaxed).oldValue & Int.max }
}
