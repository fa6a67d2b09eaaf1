import Synchronization

/// A small thread-safe map whose entries expire a fixed time after they were stored.
///
/// Mizan keeps hot lookups here that would otherwise cost a store round trip on every
/// request (an API key by its hash, a node by its token); anything that changes such a record
/// on this instance removes it at once, and other instances see the change within `lifetime`.
public final class ExpiringCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Entry {
        var value: Value
        var expires: ContinuousClock.Instant
        var stored: ContinuousClock.Instant
    }

    private let entries = Mutex<[Key: Entry]>([:])
    /// How long an entry is served after it was stored; `.zero` turns the cache off.
    public let lifetime: Duration
    /// The most entries kept; past it, expired entries are dropped, then all.
    public let capacity: Int

    /// Creates an empty cache.
    /// - Parameters:
    ///   - lifetime: How long an entry lives.
    ///   - capacity: The most entries kept.
    public init(lifetime: Duration, capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.capacity = max(1, capacity)
    }

    /// The live value for `key`, if any.
    public func value(for key: Key, now: ContinuousClock.Instant = .now) -> Value? {
        guard lifetime > .zero else { return nil }
        return entries.withLock { entries in
            guard let entry = entries[key], entry.expires > now else { return nil }
            return entry.value
        }
    }

    /// The value for `key` even past its lifetime, when it was stored within `maxAge`: what
    /// was read last, for when the source cannot be read (a database restart). Expired entries
    /// are kept until the cache is full.
    public func staleValue(for key: Key, maxAge: Duration, now: ContinuousClock.Instant = .now) -> Value? {
        guard lifetime > .zero else { return nil }
        return entries.withLock { entries in
            guard let entry = entries[key], now - entry.stored <= maxAge else { return nil }
            return entry.value
        }
    }

    /// Stores `value` for `key` for ``lifetime``.
    public func set(_ value: Value, for key: Key, now: ContinuousClock.Instant = .now) {
        guard lifetime > .zero else { return }
        entries.withLock { entries in
            if entries.count >= capacity, entries[key] == nil {
                entries = entries.filter { $0.value.expires > now }
                if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            }
            entries[key] = Entry(value: value, expires: now.advanced(by: lifetime), stored: now)
        }
    }

    /// Drops the entries whose value matches.
    public func removeAll(where matches: (Value) -> Bool) {
        entries.withLock { entries in entries = entries.filter { !matches($0.value.value) } }
    }

    /// Drops every entry.
    public func removeAll() {
        entries.withLock { $0.removeAll() }
    }
}
