/// Why an SQLite store could not be opened; the message says what to do.
public enum SQLiteStoreError: Error, CustomStringConvertible, Sendable {
    /// Another process (a second gateway) holds the file.
    case locked(path: String)
    /// The file cannot be opened or written (a missing folder, permissions, not a database).
    case cannotOpen(path: String, reason: String)

    /// What went wrong, and what to do about it.
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
