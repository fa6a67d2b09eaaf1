import Foundation
import MizanCore

/// Storage of client API keys (as hashes) and usage records.
public protocol AccessStore: Sendable {
    /// Stores a new key with the SHA-256 hash of its secret.
    /// - Parameters:
    ///   - key: The key record.
    ///   - hash: SHA-256 of the secret key.
    /// - Returns: The stored key.
    func createAPIKey(_ key: APIKey, hash: Data) async throws -> APIKey

    /// Lists every key, oldest first.
    /// - Returns: The keys, revoked ones included.
    func apiKeys() async throws -> [APIKey]

    /// Revokes a key; it stops working at once.
    /// - Parameters:
    ///   - id: The key id.
    ///   - now: The current time.
    /// - Returns: The revoked key.
    /// - Throws: `MizanError` `notFound`.
    func revokeAPIKey(_ id: String, now: Date) async throws -> APIKey

    /// Finds the key whose secret hashes to `hash`, revoked or not.
    /// - Parameter hash: SHA-256 of a presented key.
    /// - Returns: The key, or `nil`.
    func apiKey(hash: Data) async throws -> APIKey?

    /// Records what one request used.
    /// - Parameter record: The record.
    /// - Returns: Whether its tokens were counted: not for a retry of an idempotent job whose
    ///   tokens a record counted already.
    @discardableResult
    func recordUsage(_ record: UsageRecord) async throws -> Bool

    /// Records what one request used and ends its key's admission: its hold released and, when
    /// the record counted them, its tokens counted (``finish(_:holdID:tokens:now:)``) — in one
    /// step where the store can. The admission ends even when the record cannot be stored.
    /// - Parameters:
    ///   - record: The record.
    ///   - admission: The request's admission, when its key is counted.
    /// - Returns: Whether the record counted its tokens.
    @discardableResult
    func recordUsage(_ record: UsageRecord, ending admission: KeyAdmissionEnd?) async throws -> Bool

    /// Records the usage and ends the admission as ``recordUsage(_:ending:)`` does, where the
    /// store can without the caller waiting for it: with the key's next change on this
    /// instance (applied before it, so that a next request of the same client finds its slot
    /// free) or on its own moments later. What cannot be stored then goes to `failed` (the
    /// caller keeps it to write again). A store that cannot defer it (the default) records it
    /// before returning.
    /// - Parameters:
    ///   - record: The record (of a request that is not an idempotent job's).
    ///   - admission: The request's admission.
    ///   - failed: Called when the deferred write fails, with what was and was not applied.
    func recordUsageSoon(
        _ record: UsageRecord, ending admission: KeyAdmissionEnd, failed: @escaping @Sendable (UsageWriteFailure) -> Void
    ) async throws

    /// Sums usage per API key and model.
    /// - Returns: One row per (key, model), ordered by key then model.
    func usageSummary() async throws -> [UsageSummary]

    /// Sums usage records by the query's grouping, within its filters.
    /// - Parameter query: The filters and grouping (checked by the caller).
    /// - Returns: One row per group, ordered by period, key, model and endpoint.
    func usage(_ query: UsageQuery) async throws -> [UsageRow]

    /// Changes a key's name and policy (its id, secret and counters stay).
    /// - Parameters:
    ///   - id: The key id.
    ///   - name: The new name.
    ///   - policy: The new policy.
    /// - Returns: The changed key.
    /// - Throws: `MizanError` `notFound`.
    func updateAPIKey(_ id: String, name: String, policy: KeyPolicy) async throws -> APIKey

    /// Changes a key's counters in one atomic step: no change of another task or gateway
    /// instance sharing the store comes between reading and writing them. `change` may run more
    /// than once (a store that retries a step another instance raced) and must depend on its
    /// argument alone.
    /// - Parameters:
    ///   - keyID: The key id.
    ///   - change: The change; what it returns is returned.
    /// - Throws: `MizanError` `notFound` for an unknown key.
    func changeKeyCounters<T: Sendable>(_ keyID: String, _ change: @escaping @Sendable (inout KeyCounters) -> T) async throws -> T

    /// Whether a usage record is stored: the one of request `requestID` made at `createdAt`
    /// (what a write that seemed to fail — its answer lost as the database went away — may have
    /// stored, with the end of its key's admission: it is not written again).
    /// - Parameters:
    ///   - requestID: The record's request id.
    ///   - createdAt: The record's time.
    func usageRecorded(requestID: String, createdAt: Date) async throws -> Bool

    /// Records that a console session was signed out, until it would have expired (sessions are
    /// signed cookies; only their ends are kept). Expired entries may be dropped meanwhile.
    /// - Parameters:
    ///   - id: The session's id.
    ///   - expires: When it would have expired.
    ///   - now: The current time.
    func endConsoleSession(_ id: String, expires: Date, now: Date) async throws

    /// Whether a console session was signed out.
    /// - Parameter id: The session's id.
    func isConsoleSessionEnded(_ id: String) async throws -> Bool

    /// A key's counters as they stand.
    /// - Parameter keyID: The key id.
    /// - Throws: `MizanError` `notFound` for an unknown key.
    func keyCounters(_ keyID: String) async throws -> KeyCounters
}

/// A usage write that failed, and whether the admission it was to end ended all the same (the
/// store changed the key's counters apart from the record): a caller that writes it again
/// writes the record alone then, or the record with the admission's end when it did not.
public struct UsageWriteFailure: Error, Sendable, CustomStringConvertible {
    /// Whether the admission ended although the record was not stored.
    public var admissionEnded: Bool
    /// Whether the store writes a record and the end of its admission together or not at all:
    /// then a record found stored (its write's answer lost) means its end is stored too.
    public var atomic: Bool
    /// What went wrong.
    public var underlying: any Error

    /// Creates a failure.
    public init(admissionEnded: Bool, atomic: Bool = false, underlying: any Error) {
        self.admissionEnded = admissionEnded
        self.atomic = atomic
        self.underlying = underlying
    }

    public var description: String { "\(underlying)" }
}

/// What ends a counted key's admitted request: the key (its policy as the caller knows it)
/// and the request's hold.
public struct KeyAdmissionEnd: Sendable {
    /// The key.
    public var key: APIKey
    /// The request's hold on a concurrency slot.
    public var holdID: String?
    /// The tokens its admission reserved (settled to the real count at its end).
    public var reserved: Int
    /// When it was admitted (the budget period its reservation was counted in).
    public var admittedAt: Date?

    public init(key: APIKey, holdID: String?, reserved: Int = 0, admittedAt: Date? = nil) {
        self.key = key
        self.holdID = holdID
        self.reserved = reserved
        self.admittedAt = admittedAt
    }
}

/// The record of a ``UsageWriteFailure`` was stored; only the end of its admission failed.
public struct AdmissionEndFailure: Error, Sendable, CustomStringConvertible {
    /// Whether the record counted its tokens (the end counts them then).
    public var counted: Bool
    /// What went wrong.
    public var underlying: any Error

    public var description: String { "\(underlying)" }
}

extension AccessStore {
    /// Records the usage and ends the admission before returning (a failure is thrown).
    public func recordUsageSoon(
        _ record: UsageRecord, ending admission: KeyAdmissionEnd, failed: @escaping @Sendable (UsageWriteFailure) -> Void
    ) async throws {
        try await recordUsage(record, ending: admission)
    }

    /// Records the usage, then ends the admission: two steps, for a store that cannot make them one.
    @discardableResult
    public func recordUsage(_ record: UsageRecord, ending admission: KeyAdmissionEnd?) async throws -> Bool {
        try await recordUsageThenEnd(record, ending: admission)
    }

    /// Records the usage, then ends the admission (with the record's tokens when it counted them).
    /// - Throws: ``UsageWriteFailure``, saying whether the admission ended.
    @discardableResult
    public func recordUsageThenEnd(_ record: UsageRecord, ending admission: KeyAdmissionEnd?) async throws -> Bool {
        guard let admission else {
            do {
                return try await recordUsage(record)
            } catch {
                throw UsageWriteFailure(admissionEnded: true, underlying: error)
            }
        }
        let counted: Bool
        do {
            counted = try await recordUsage(record)
        } catch {
            // The tokens were used whether or not their record could be kept.
            let ended =
                (try? await finish(
                    admission.key, holdID: admission.holdID, tokens: record.tokens, reserved: admission.reserved, now: Date()))
                != nil
            throw UsageWriteFailure(admissionEnded: ended, underlying: error)
        }
        do {
            try await finish(
                admission.key, holdID: admission.holdID, tokens: counted ? record.tokens : 0, reserved: admission.reserved,
                admittedAt: admission.admittedAt, now: Date())
        } catch {
            // The record is stored: what is left is the admission's end, with its tokens.
            throw UsageWriteFailure(admissionEnded: false, underlying: AdmissionEndFailure(counted: counted, underlying: error))
        }
        return counted
    }

    /// Admits a request of a counted key against its policy, or says why not: one atomic step
    /// of the key's counters, exact however many gateway instances share the store.
    /// - Parameters:
    ///   - key: The key (its policy as the caller knows it).
    ///   - holdID: The id of the request's hold on a concurrency slot.
    ///   - holdUntil: When the hold lapses if the request is never finished (its deadline).
    ///   - now: The current time.
    ///   - reserve: The tokens to reserve until the request ends (see ``KeyLimiter``).
    public func admit(_ key: APIKey, holdID: String, holdUntil: Date, now: Date, reserve: Int = 0) async throws -> KeyAdmission {
        let policy = key.policy
        return try await changeKeyCounters(key.id) { counters in
            KeyLimiter.admit(&counters, policy: policy, holdID: holdID, holdUntil: holdUntil, now: now, reserve: reserve)
        }
    }

    /// Ends an admitted request: releases its hold and counts its tokens.
    /// - Parameters:
    ///   - key: The key.
    ///   - holdID: The request's hold.
    ///   - tokens: The tokens it used (the figure of its usage record).
    ///   - reserved: The tokens its admission reserved.
    ///   - admittedAt: When it was admitted.
    ///   - now: The current time.
    public func finish(
        _ key: APIKey, holdID: String?, tokens: Int, reserved: Int = 0, admittedAt: Date? = nil, now: Date
    ) async throws {
        let policy = key.policy
        try await changeKeyCounters(key.id) { counters in
            KeyLimiter.finish(
                &counters, policy: policy, holdID: holdID, tokens: tokens, reserved: reserved, admittedAt: admittedAt, now: now)
        }
    }
}
