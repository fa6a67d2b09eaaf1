import PostgresNIO
import Synchronization

/// A statement whose text is fixed at its call site, run as a named prepared statement so
/// that PostgreSQL parses and plans it once per connection instead of on every call.
///
/// The call site names it by a local marker type and writes the query with interpolation as
/// usual; the text is recorded on first use.
struct PreparedQuery<Key>: PostgresPreparedStatement {
    typealias Row = PostgresRow

    static var name: String { "mizan_\(StatementTexts.identifier(for: Key.self))" }
    static var sql: String { StatementTexts.text(for: Key.self) }

    let bindings: PostgresBindings

    func makeBindings() throws -> PostgresBindings { bindings }
    func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}

/// The recorded text and a short unique name of each prepared statement.
enum StatementTexts {
    private struct Entry {
        var sql: String
        var identifier: String
    }

    private static let entries = Mutex<[ObjectIdentifier: Entry]>([:])

    static func record(_ key: Any.Type, sql: String) {
        entries.withLock { entries in
            let id = ObjectIdentifier(key)
            if let existing = entries[id] {
                assert(existing.sql == sql, "a prepared statement's text must not change between calls")
                return
            }
            entries[id] = Entry(sql: sql, identifier: "s\(entries.count)_\(String(describing: key).prefix(24))")
        }
    }

    static func text(for key: Any.Type) -> String {
        entries.withLock { $0[ObjectIdentifier(key)]?.sql ?? "" }
    }

    static func identifier(for key: Any.Type) -> String {
        entries.withLock { $0[ObjectIdentifier(key)]?.identifier ?? "unknown" }
    }
}
