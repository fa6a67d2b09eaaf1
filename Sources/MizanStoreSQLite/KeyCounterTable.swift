import MizanCore
import Synchronization

/// The counters of the keys in use, kept in the process and written to the file behind.
///
/// One gateway holds an SQLite file (its lock), so its memory is the one place where a key's
/// counters change: an admission is a step under a lock here, with no statement and no wait,
/// and exact however many requests race. The file gets the counters with each usage record
/// of the key (in the record's transaction, so that the tokens a record counts are never
/// lost without it) and, for changes no record follows, from ``SQLiteStore``'s service about
/// once a second and on close. What a crash of the process can lose is the last second of
/// admissions to the request rate (never counted tokens); holds are never written: the
/// requests they count end with the process.
final class KeyCounterTable: Sendable {
    private struct Entry {
        var counters: KeyCounters
        /// Bumped by every change.
        var version: UInt64 = 0
        /// The version last written to the file.
        var stored: UInt64 = 0
    }

    /// A key's counters at one version, to be written to the file.
    struct Snapshot: Sendable {
        let keyID: String
        let counters: KeyCounters
        let version: UInt64

        /// The stored form, without holds.
        var text: String {
            var counters = counters
            counters.holds = [:]
            return counters.encoded()
        }
    }

    private let entries = Mutex<[String: Entry]>([:])

    /// Whether the key's counters are here.
    func contains(_ keyID: String) -> Bool {
        entries.withLock { $0[keyID] != nil }
    }

    /// Takes the counters read from the file, unless another task took them first. Holds in
    /// the file (a form that stored them) belong to a process that has ended.
    func load(_ keyID: String, stored text: String?) {
        var counters = KeyCounters.decoded(text)
        counters.holds = [:]
        entries.withLock { entries in
            if entries[keyID] == nil { entries[keyID] = Entry(counters: counters) }
        }
    }

    /// Runs `change` on a loaded key's counters.
    /// - Parameter snapshot: Whether to answer the counters as they stand after it, when they
    ///   are not written at that version yet.
    /// - Returns: What it returned and the snapshot, or `nil` for a key not loaded.
    func change<T>(_ keyID: String, snapshot: Bool = false, _ change: (inout KeyCounters) -> T) -> (T, Snapshot?)? {
        entries.withLock { entries in
            guard var entry = entries[keyID] else { return nil }
            entries[keyID] = nil  // the counters are changed in place, not copied
            let before = (entry.counters.requestsTAT, entry.counters.tokensTAT, entry.counters.periodStart, entry.counters.periodTokens)
            let result = change(&entry.counters)
            let after = (entry.counters.requestsTAT, entry.counters.tokensTAT, entry.counters.periodStart, entry.counters.periodTokens)
            // Holds are never written: only a change of what is written needs writing.
            if before != after { entry.version += 1 }
            entries[keyID] = entry
            guard snapshot, entry.version > entry.stored else { return (result, nil) }
            return (result, Snapshot(keyID: keyID, counters: entry.counters, version: entry.version))
        }
    }

    /// A loaded key's counters.
    func counters(_ keyID: String) -> KeyCounters? {
        entries.withLock { $0[keyID]?.counters }
    }

    /// Whether some counters changed since they were last written.
    var hasUnstored: Bool {
        entries.withLock { $0.values.contains { $0.version > $0.stored } }
    }

    /// The counters changed since they were last written.
    func unstored() -> [Snapshot] {
        entries.withLock { entries in entries.compactMap { key, entry in Self.unstored(key, entry) } }
    }

    /// A key's counters as they stand, when they changed since they were last written.
    func unstored(_ keyID: String) -> Snapshot? {
        entries.withLock { entries in entries[keyID].flatMap { Self.unstored(keyID, $0) } }
    }

    private static func unstored(_ keyID: String, _ entry: Entry) -> Snapshot? {
        entry.version > entry.stored ? Snapshot(keyID: keyID, counters: entry.counters, version: entry.version) : nil
    }

    /// Notes that a snapshot has been written.
    func stored(_ snapshot: Snapshot) {
        entries.withLock { entries in
            guard let entry = entries[snapshot.keyID], entry.stored < snapshot.version else { return }
            entries[snapshot.keyID]?.stored = snapshot.version
        }
    }
}
