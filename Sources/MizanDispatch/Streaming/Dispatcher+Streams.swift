import Foundation
import MizanCore
import MizanStore

/// What a streamed job's client receives, in order: `data` events, then `end` or `finished`.
public enum JobStreamEvent: Sendable {
    /// One server-sent event's data, as the node's local provider produced it (`[DONE]` included).
    case data(String)
    /// The node's stream ended.
    case end
    /// The job reached a terminal state (or waiting for it failed).
    case finished(Result<Job, any Error>)
}

extension Dispatcher {
    /// Submits a job whose node streams its answer, and returns at once with the job's events.
    ///
    /// The events are listened for before the job can be leased, so none is missed. The node
    /// holding the lease sends them through ``openStream(_:)``, on this instance or on another
    /// one sharing the store. Stopping early (``JobEvents/stop(cancellingJob:)`` with `true`,
    /// or cancelling the task that waits in ``JobEvents/next()``) cancels the job.
    /// - Parameter request: What to run (`stream` should be `true`).
    /// - Returns: The job's events.
    public func submitStreaming(_ request: DispatchRequest) async throws -> JobEvents {
        let mailbox = streams.subscribe(request.jobID)
        let pending: PendingJob
        do {
            pending = try await accept(request)
        } catch {
            mailbox.finish()
            throw error
        }
        let watcher = Task {
            let outcome: Result<Job, any Error>
            do {
                outcome = .success(try await self.awaitFinish(pending))
            } catch {
                outcome = .failure(error)
            }
            // The job is over: a node's writer that waits for a client not reading is released.
            mailbox.closeToWriters()
            mailbox.offer(.finished(outcome))
        }
        // After a full stream the watcher lives on until the node's completion lands (usage,
        // fencing), bounded by the deadline; stopping early cancels it and so the job.
        return JobEvents(job: pending.job, mailbox: mailbox) { cancelJob in
            if cancelJob { watcher.cancel() }
            mailbox.finish()
        }
    }

    /// Opens the stream of a job for the node that holds its lease.
    /// - Parameter lease: The lease, built from the authenticated node's id and the attempt it quotes.
    /// - Returns: Where the node writes the job's events.
    /// - Throws: `MizanError` `jobNotFound`, or `leaseConflict` when the lease is not current or
    ///   the job is not a stream.
    public func openStream(_ lease: Lease) async throws -> JobStreamWriter {
        guard let job = try await store.job(lease.jobID) else {
            throw MizanError(.jobNotFound, "No job with id \(lease.jobID).")
        }
        guard job.lease == lease, job.stream else {
            throw MizanError(.leaseConflict, "The node does not hold this lease (attempt \(lease.attempt)); stop the job.")
        }
        if streams.claim(lease.jobID, by: lease) == .notOwner {
            throw MizanError(
                .leaseConflict, "Another attempt of this job already streamed to its client; stop the job (attempt \(lease.attempt)).")
        }
        return JobStreamWriter(dispatcher: self, lease: lease)
    }
}

/// A streamed job's events as its client request reads them (see ``Dispatcher/submitStreaming(_:)``).
/// One task reads at a time.
public final class JobEvents: Sendable {
    /// The job as accepted.
    public let job: Job
    private let mailbox: StreamHub.Mailbox
    private let stopper: @Sendable (_ cancelJob: Bool) -> Void

    init(job: Job, mailbox: StreamHub.Mailbox, stop: @escaping @Sendable (_ cancelJob: Bool) -> Void) {
        self.job = job
        self.mailbox = mailbox
        self.stopper = stop
    }

    /// The next event, or `nil` once the events are stopped (or the stream was cut off: a
    /// client that did not read a stream relayed from another instance). Cancelling the
    /// waiting task cancels the job.
    public func next() async -> JobStreamEvent? {
        await withTaskCancellationHandler {
            await mailbox.next()
        } onCancel: { [stopper] in
            stopper(true)
        }
    }

    /// The node streaming the events, once it has written one here (`nil` for a stream relayed
    /// from another instance sharing the store).
    public var node: NodeID? { mailbox.writer }

    /// Stops listening.
    /// - Parameter cancellingJob: Whether to cancel the job too (the client went away or the
    ///   stream broke); `false` after a full stream lets the node's completion land.
    public func stop(cancellingJob: Bool) {
        stopper(cancellingJob)
    }
}

/// Where the node holding a streamed job's lease writes its events (see
/// ``Dispatcher/openStream(_:)``). Events go to the client request in this process, waiting
/// while its buffer is full; when the client waits on another instance sharing the store, they
/// are relayed through the store. Either way the lease is checked again every second, so that
/// a cancelled job, a lease that moved on or a revoked node stops the node's stream.
public struct JobStreamWriter: Sendable {
    let dispatcher: Dispatcher
    /// The lease the events are written under.
    public let lease: Lease
    private var relaying = false
    private var checked = ContinuousClock.now

    init(dispatcher: Dispatcher, lease: Lease) {
        self.dispatcher = dispatcher
        self.lease = lease
    }

    /// Sends events to the job's client.
    /// - Parameters:
    ///   - items: Server-sent events' data, in order.
    ///   - end: Whether the node's stream ends with them.
    /// - Throws: `MizanError` `leaseConflict` when no client waits any more (cancelled), the
    ///   lease moved on, another attempt owns the stream or the node was revoked: the node
    ///   should stop the job.
    public mutating func send(_ items: [String], end: Bool) async throws {
        let id = lease.jobID
        let streams = dispatcher.streams
        var rest = items[...]
        if !relaying {
            while let item = rest.first {
                switch await streams.publish(id, from: lease, .data(item)) {
                case .delivered:
                    rest = rest.dropFirst()
                    continue
                case .notOwner:
                    throw MizanError(.leaseConflict, "This node's lease no longer owns the job's stream; stop the job.")
                case .noClient:
                    break
                }
                break
            }
            if rest.isEmpty {
                // The end is a courtesy: a client that already read [DONE] has stopped listening.
                if end { _ = await streams.publish(id, from: lease, .end) }
                try await checkLease()
                return
            }
            guard try await dispatcher.store.relayStream(id, data: Array(rest), end: end) else {
                throw MizanError(.leaseConflict, "No client is waiting for this job any more (cancelled); stop the job.")
            }
            relaying = true
            return
        }
        _ = try await dispatcher.store.relayStream(id, data: Array(rest), end: end)
        try await checkLease()
    }

    /// Every second, that the lease is still the job's and its node active.
    private mutating func checkLease() async throws {
        guard ContinuousClock.now - checked > .seconds(1) else { return }
        checked = .now
        guard try await dispatcher.store.job(lease.jobID)?.lease == lease else {
            throw MizanError(.leaseConflict, "The job was cancelled or moved on; stop the job.")
        }
    }
}
