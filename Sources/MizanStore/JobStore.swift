import Foundation
import MizanCore

/// Durable storage of dispatch jobs.
///
/// Every write is conditional on the job's current state as `JobStateMachine` allows, so
/// that several gateway instances sharing one store can never both apply a transition.
/// Times are passed in (`now`) so that stores are deterministic under test.
public protocol JobStore: Sendable {
    /// Inserts an accepted job. When `job.idempotencyKey` is set and a job with that key
    /// exists, nothing is inserted and the existing job is returned.
    ///
    /// The store sets the job's ``JobScheduling/fairTag`` as it queues it: the tag of the
    /// key's latest queued job of the same model and class plus ``JobScheduling/increment``,
    /// or, when the key has none queued there, the lowest tag queued there (the queue's head),
    /// or 0 when nothing is. A store may keep the head's tag past the time it is leased (a
    /// virtual time that never goes back) instead.
    /// - Parameters:
    ///   - job: A job in the `accepted` state.
    ///   - maxQueued: The most jobs of the job's key that may be queued (`accepted`) at once,
    ///     this one included; `nil` for no cap.
    /// - Returns: The stored job (with its tag) and whether it was newly inserted.
    /// - Throws: `MizanError` `rateLimited` (429) when the key's queue is full, or a store
    ///   error when the write fails.
    func insert(_ job: Job, maxQueued: Int?) async throws -> JobInsertion

    /// Leases up to `limit` accepted jobs for a node: only models it advertises, highest class
    /// (``Job/priority``) first, then lowest ``JobScheduling/fairTag``, then oldest; never
    /// beyond its free capacity (`maxConcurrency` minus jobs it holds), never a job past its
    /// deadline, and never a job offered first to another node
    /// (``JobScheduling/preferredNode``) before its ``JobScheduling/preferredUntil``.
    /// - Parameters:
    ///   - nodeID: The leasing node; it must be active and not unhealthy.
    ///   - limit: The most jobs to hand out.
    ///   - now: The current time.
    ///   - headroom: Slots kept for live traffic: of the node's free slots (before `limit`), the
    ///     last ``LeaseHeadroom/slots`` take only jobs of rank ``LeaseHeadroom/minimumRank`` or
    ///     above; `nil` for none.
    /// - Returns: The leased jobs, each with the lease that fences it.
    /// - Throws: `MizanError` `nodeNotFound` or `unauthorized` (revoked).
    func lease(nodeID: NodeID, limit: Int, now: Date, headroom: LeaseHeadroom?) async throws -> [LeasedJob]

    /// Finishes a leased job. Applied only while `lease` is the job's current lease.
    /// A retryable failure requeues the job (attempt + 1) while attempts and the deadline allow.
    /// - Parameters:
    ///   - lease: The lease the holder received.
    ///   - completion: The result or failure.
    ///   - now: The current time.
    /// - Returns: The job after the write.
    /// - Throws: `MizanError` `jobNotFound`, or `leaseConflict` for a stale attempt,
    ///   another node, a job no longer leased or a second completion; nothing is changed then.
    func complete(_ lease: Lease, with completion: JobCompletion, now: Date) async throws -> Job

    /// Finishes several leased jobs at once, each exactly as ``complete(_:with:now:)`` would;
    /// a store may apply them in one write. One refused completion does not stop the others.
    /// - Parameters:
    ///   - completions: The leases and their results.
    ///   - now: The current time.
    /// - Returns: For each completion in order, the job after the write or the refusal.
    /// - Throws: A store error when the write as a whole fails.
    func complete(_ completions: [LeaseCompletion], now: Date) async throws -> [Result<Job, MizanError>]

    /// Fails a live job with code `cancelled`. A terminal job is returned unchanged.
    /// - Parameters:
    ///   - id: The job.
    ///   - now: The current time.
    /// - Returns: The job after the write.
    /// - Throws: `MizanError` `jobNotFound`.
    func cancel(_ id: JobID, now: Date) async throws -> Job

    /// Withdraws a job that waits for a node (`accepted`), to be served elsewhere (a spill to a
    /// provider route): it fails with code `spilled`, conditionally, so that a job leased
    /// meanwhile is never also withdrawn. Any other job is returned unchanged.
    /// - Parameters:
    ///   - id: The job.
    ///   - now: The current time.
    /// - Returns: The job after the write: `failed` with code `spilled` when it was withdrawn.
    /// - Throws: `MizanError` `jobNotFound`.
    func withdraw(_ id: JobID, now: Date) async throws -> Job

    /// Raises every queued job of a class below the highest that has waited in its class since
    /// `waitingSince` or earlier by one class; a promoted job takes the lowest tag queued in its
    /// new class (it has waited longest) and its ``JobScheduling/classSince`` becomes `now`.
    /// - Parameters:
    ///   - waitingSince: Jobs in their class since this instant or earlier rise.
    ///   - now: The current time.
    /// - Returns: How many jobs rose.
    func promote(waitingSince: Date, now: Date) async throws -> Int

    /// Times out one live job (its submitter's deadline fired). A terminal job is returned unchanged.
    /// - Parameters:
    ///   - id: The job.
    ///   - now: The current time.
    /// - Returns: The job after the write.
    /// - Throws: `MizanError` `jobNotFound`.
    func timeOut(_ id: JobID, now: Date) async throws -> Job

    /// Times out every live job whose deadline is at or before `now`.
    /// - Parameter now: The current time.
    /// - Returns: The jobs that timed out.
    func timeOutExpired(now: Date) async throws -> [Job]

    /// Requeues (attempt + 1) or, when attempts or the deadline are used up, fails with code
    /// `node_lost` every leased job whose holder was last seen before `staleBefore` or is revoked.
    /// - Parameters:
    ///   - staleBefore: Nodes not seen since this instant are considered gone.
    ///   - now: The current time.
    /// - Returns: The jobs changed, in their new state.
    func recoverLeases(staleBefore: Date, now: Date) async throws -> [Job]

    /// Deletes terminal jobs that finished before `finishedBefore`.
    /// - Parameter finishedBefore: The retention cut-off.
    /// - Returns: How many jobs were deleted.
    func prune(finishedBefore: Date) async throws -> Int

    /// Reads one job.
    /// - Parameter id: The job id.
    /// - Returns: The job, or `nil`.
    func job(_ id: JobID) async throws -> Job?

    /// Reads several jobs; missing ids are left out.
    /// - Parameter ids: The job ids.
    /// - Returns: The jobs found, in no particular order.
    func jobs(_ ids: [JobID]) async throws -> [Job]

    /// Lists jobs, newest first.
    /// - Parameters:
    ///   - filter: Which jobs: a state, a model, older than a job (a page after it).
    ///   - limit: The most jobs to return.
    /// - Returns: The jobs.
    func jobs(matching filter: JobFilter, limit: Int) async throws -> [Job]

    /// The number of accepted jobs per model.
    /// - Returns: Model to queued count; models with none are left out.
    func queueDepth() async throws -> [String: Int]

    /// The jobs leased to a node right now.
    /// - Parameter nodeID: The node.
    /// - Returns: Its leased jobs.
    func leasedJobs(nodeID: NodeID) async throws -> [Job]

    /// Adds a handler for ``StoreEvent``s. Handlers must not block.
    /// - Parameter handler: The handler.
    func addEventHandler(_ handler: @escaping @Sendable (StoreEvent) -> Void)

    /// Relays a streaming job's event data to the other processes sharing this store (as a
    /// ``StoreEvent/streamed(id:data:end:)`` event there).
    /// - Returns: Whether the store reaches other processes at all (`false`: nothing was sent).
    func relayStream(_ id: JobID, data: [String], end: Bool) async throws -> Bool
}

/// A lease and how its holder finished the job.
public struct LeaseCompletion: Sendable, Equatable {
    /// The lease the holder received.
    public var lease: Lease
    /// The result or failure.
    public var completion: JobCompletion

    /// Creates a completion.
    /// - Parameters:
    ///   - lease: The lease.
    ///   - completion: The result or failure.
    public init(lease: Lease, completion: JobCompletion) {
        self.lease = lease
        self.completion = completion
    }
}

/// Which jobs a listing returns (every condition that is set holds).
public struct JobFilter: Sendable, Equatable {
    /// Only jobs in this state.
    public var state: JobState?
    /// Only jobs of this public model.
    public var model: String?
    /// Only jobs older than this one (ids are time-ordered): the page after a listing that
    /// ended with it.
    public var before: JobID?

    /// Creates a filter; with no arguments it matches every job.
    /// - Parameters:
    ///   - state: Only jobs in this state.
    ///   - model: Only jobs of this model.
    ///   - before: Only jobs older than this one.
    public init(state: JobState? = nil, model: String? = nil, before: JobID? = nil) {
        self.state = state
        self.model = model
        self.before = before
    }

    /// Whether `job` matches.
    public func matches(_ job: Job) -> Bool {
        (state.map { job.state == $0 } ?? true) && (model.map { job.model == $0 } ?? true) && (before.map { job.id < $0 } ?? true)
    }
}

extension JobStore {
    /// Inserts an accepted job with no cap on its key's queue (see ``insert(_:maxQueued:)``).
    public func insert(_ job: Job) async throws -> JobInsertion {
        try await insert(job, maxQueued: nil)
    }

    /// Lists jobs, newest first.
    /// - Parameters:
    ///   - state: Only jobs in this state, or all when `nil`.
    ///   - limit: The most jobs to return.
    /// - Returns: The jobs.
    public func jobs(state: JobState?, limit: Int) async throws -> [Job] {
        try await jobs(matching: JobFilter(state: state), limit: limit)
    }

    /// Filters every leased job (a store with an index by node should do better).
    public func leasedJobs(nodeID: NodeID) async throws -> [Job] {
        try await jobs(state: .leased, limit: 100_000).filter { $0.nodeID == nodeID }
    }

    /// A store of one process has no one to relay to.
    public func relayStream(_ id: JobID, data: [String], end: Bool) async throws -> Bool { false }

    /// Completes each lease in turn.
    public func complete(_ completions: [LeaseCompletion], now: Date) async throws -> [Result<Job, MizanError>] {
        var results: [Result<Job, MizanError>] = []
        results.reserveCapacity(completions.count)
        for item in completions {
            do {
                results.append(.success(try await complete(item.lease, with: item.completion, now: now)))
            } catch let error as MizanError {
                results.append(.failure(error))
            }
        }
        return results
    }
}

/// The result of ``JobStore/insert(_:maxQueued:)``.
public struct JobInsertion: Sendable, Equatable {
    /// The stored job: the new one, or the earlier one with the same idempotency key.
    public var job: Job
    /// Whether `job` was inserted by this call.
    public var inserted: Bool

    /// Creates an insertion result.
    /// - Parameters:
    ///   - job: The stored job.
    ///   - inserted: Whether it is new.
    public init(job: Job, inserted: Bool) {
        self.job = job
        self.inserted = inserted
    }
}

/// Error codes stores write into failed and timed-out jobs.
public enum JobErrorCode {
    /// The client went away.
    public static let cancelled = "cancelled"
    /// The deadline passed.
    public static let deadlineExceeded = "deadline_exceeded"
    /// The holding node stopped heartbeating or was revoked and no attempt is left.
    public static let nodeLost = "node_lost"
    /// The node never reported the lease as running (the lease answer was lost on its way)
    /// and no attempt is left.
    public static let leaseLost = "lease_lost"
    /// No node leased the job in time and it went to a provider route instead.
    public static let spilled = "spilled"

    /// The refusal of a job whose key has `maxQueued` jobs queued already.
    public static func queueFull(_ maxQueued: Int) -> MizanError {
        var error = MizanError(
            .rateLimited, "This API key has \(maxQueued) requests waiting for a node already, its most; try again when some have run.")
        error.retryAfter = 1
        return error
    }
}

extension JobStore {
    /// Leases as ``lease(nodeID:limit:now:headroom:)`` does, without headroom.
    public func lease(nodeID: NodeID, limit: Int, now: Date) async throws -> [LeasedJob] {
        try await lease(nodeID: nodeID, limit: limit, now: now, headroom: nil)
    }
}

/// Slots a lease leaves to live traffic: while requests above the lowest class are coming, a
/// node's last free slots go only to them, so that such a request finds a slot free instead of
/// waiting for a batch's line to end (a line takes a slot for its whole service time).
public struct LeaseHeadroom: Sendable, Equatable {
    /// How many of the node's free slots are kept.
    public var slots: Int
    /// The lowest rank (``Job/priority``) a kept slot takes.
    public var minimumRank: Int

    /// Creates headroom.
    public init(slots: Int, minimumRank: Int) {
        self.slots = max(0, slots)
        self.minimumRank = minimumRank
    }

    /// How many of `free` slots any job may take: the rest only jobs of ``minimumRank`` or above.
    public func open(of free: Int) -> Int { max(0, free - slots) }
}
