import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

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
