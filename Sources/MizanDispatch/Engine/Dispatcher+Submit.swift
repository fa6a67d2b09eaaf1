import Foundation
import Logging
import MizanCore
import MizanStore

extension Dispatcher {
    /// Submits a job and waits for its terminal state.
    ///
    /// The wait is driven by the store's finish event. At the deadline the job is timed out;
    /// when the calling task is cancelled (the client went away) the job is cancelled, and
    /// the node holding it learns so at its next heartbeat.
    /// - Parameter request: What to run.
    /// - Returns: The job in a terminal state: `succeeded`, `failed` or `timedOut`.
    /// - Throws: `MizanError` `cancelled` when the calling task is cancelled, or a store error.
    public func submit(_ request: DispatchRequest) async throws -> Job {
        try await awaitFinish(try await accept(request))
    }

    /// Queues a job and returns at once; ``awaitFinish(_:)`` then waits for its end. Use it
    /// when something must be set up with the job's id before a node can lease it (e.g. a
    /// stream relay). Call ``awaitFinish(_:)`` exactly once for every accepted job.
    /// - Parameter request: What to run.
    /// - Returns: The accepted job (or the existing one for a repeated idempotency key).
    public func accept(_ request: DispatchRequest) async throws -> PendingJob {
        let accepted = now()
        let deadline = accepted.adding(request.deadline ?? configuration.defaultDeadline)
        var job = Job(
            id: request.jobID,
            requestID: request.requestID,
            model: request.model,
            endpoint: request.endpoint,
            body: request.body,
            stream: request.stream,
            deadline: deadline,
            maxAttempts: configuration.maxAttempts,
            priority: request.priority,
            idempotencyKey: request.idempotencyKey,
            apiKeyID: request.apiKeyID,
            now: accepted
        )
        job.scheduling.weight = min(100, max(1, request.weight))
        if request.priority > PriorityClass.batch.rank { liveSeen.store(Self.uptimeNanoseconds(), ordering: .relaxed) }
        if let held = request.inClassUntil, held > accepted { job.scheduling.classSince = held }
        let offer = offer(for: request)
        if let offer {
            job.scheduling.preferredNode = offer.node
            job.scheduling.preferredUntil = accepted.adding(configuration.scheduling.affinityWait)
            job.scheduling.affinity = offer.affinity
        }
        metrics.offered(offer?.affinity ?? .none)
        let signal = Signal()
        waiters.waitForFinish(of: job.id, signal)
        let insertion: JobInsertion
        do {
            insertion = try await store.insert(job, maxQueued: request.maxQueued)
        } catch {
            waiters.stopWaitingForFinish(of: job.id, signal)
            throw error
        }
        if !insertion.inserted {
            waiters.stopWaitingForFinish(of: job.id, signal)
            guard insertion.job.model == job.model, insertion.job.endpoint == job.endpoint, insertion.job.body == job.body else {
                throw MizanError(
                    .badRequest, "This idempotency key was already used for a different request; use a new key for a new request.")
            }
            if !insertion.job.state.isTerminal { waiters.waitForFinish(of: insertion.job.id, signal) }
        } else {
            metrics.accepted()
            logger.debug("job accepted", metadata: ["mizan.job.id": "\(job.id)", "mizan.model": "\(request.model)"])
            if offer != nil { wakeAfterOffer(model: job.model) }
        }
        let spill = request.spillAfter.map { accepted.adding($0) }.flatMap { $0 < insertion.job.deadline ? $0 : nil }
        let queueUntil = spill ?? request.queueTimeout.map { accepted.adding($0) }.flatMap { $0 < insertion.job.deadline ? $0 : nil }
        return PendingJob(
            job: insertion.job, signal: signal, queueUntil: queueUntil, spills: spill != nil,
            conversation: insertion.inserted ? request.conversation?.whole : nil, waitsForNodes: request.waitsForNodes)
    }

    /// The node a new job is offered to first, and why: the node that answered its
    /// conversation lately, while it has a free slot; else, when only some of the model's
    /// nodes hold it loaded, the one of those with the most free slots. `nil` when affinity is
    /// off, when fewer than two nodes serve the model, or when nothing sets one apart. Read
    /// from the node list as recently read (no store read on the request's path).
    func offer(for request: DispatchRequest) -> (node: NodeID, affinity: JobScheduling.Affinity)? {
        guard configuration.scheduling.affinityWait > .zero else { return nil }
        let now = now()
        guard let known = nodeList.value(for: 0) else { return nil }
        let serving = known.filter { isHealthy($0, now: now) && $0.serves(request.model, on: request.endpoint) }
        guard serving.count > 1 else { return nil }
        if let prefix = request.conversation?.prefix, let id = affinity.node(for: prefix, now: now),
            let node = serving.first(where: { $0.id == id }), node.inFlight < node.maxConcurrency
        {
            return (id, .prefix)
        }
        let loaded = serving.filter { $0.loadedModels.contains(request.model) }
        guard !loaded.isEmpty, loaded.count < serving.count,
            let best = loaded.max(by: { $0.maxConcurrency - $0.inFlight < $1.maxConcurrency - $1.inFlight }),
            best.inFlight < best.maxConcurrency
        else { return nil }
        return (best.id, .loaded)
    }

    /// Wakes the nodes waiting for work once a job's offer to one node has run out, so that any
    /// of them takes it if that node did not.
    private func wakeAfterOffer(model: String) {
        let wait = configuration.scheduling.affinityWait
        Task { [waiters] in
            try? await Task.sleep(for: wait + .milliseconds(1))
            waiters.handle(.jobsAvailable(model: model, count: 1))
        }
    }

    /// Waits for an accepted job's terminal state (see ``submit(_:)`` for deadlines, the queue
    /// wait and cancellation).
    /// - Parameter pending: What ``accept(_:)`` returned.
    /// - Returns: The job in a terminal state.
    public func awaitFinish(_ pending: PendingJob) async throws -> Job {
        if pending.job.state.isTerminal { return pending.job }
        let job = try await awaitFinish(
            of: pending.job.id, model: pending.job.model, deadline: pending.job.deadline, queueUntil: pending.queueUntil,
            signal: pending.signal, idempotent: pending.job.idempotencyKey != nil, spills: pending.spills,
            waitsForNodes: pending.waitsForNodes)
        if job.state == .succeeded, let node = job.nodeID, let conversation = pending.conversation {
            affinity.remember(conversation, node: node, now: now())
        }
        return job
    }

    /// Waits for a job to finish, timing it out at `deadline` and cancelling it when the task is cancelled.
    func awaitFinish(
        of id: JobID, model: String, deadline: Date, queueUntil: Date? = nil, signal: Signal, idempotent: Bool = false,
        spills: Bool = false, waitsForNodes: Bool = false
    ) async throws -> Job {
        var current = signal
        var queueUntil = queueUntil
        // Woken too when every node that could serve the model is gone (see `Sweeper`).
        waiters.watchCapacity(of: model, current)
        defer {
            waiters.stopWaitingForFinish(of: id, current)
            waiters.stopWatchingCapacity(of: model, current)
        }
        while true {
            let remaining = min(deadline, queueUntil ?? deadline).timeIntervalSince(now())
            let until = ContinuousClock.now.advanced(by: .seconds(max(0, remaining)))
            _ = await current.wait(until: until)
            if Task.isCancelled, idempotent, configuration.idempotentRetryGrace > .zero {
                // Left running for a retry with the same key; cancelled later if none came.
                cancelLater(id)
                throw MizanError(.cancelled, "The client went away; the job keeps running for a retry with its idempotency key.")
            }
            if Task.isCancelled {
                // An unstructured task does not inherit the cancellation, so the write still happens.
                let job = try await Task { [store, now] in try await store.cancel(id, now: now()) }.value
                if job.state == .failed, job.errorCode == JobErrorCode.cancelled {
                    metrics.finished(job)
                    logger.info("job cancelled by client", metadata: ["mizan.job.id": "\(id)"])
                    throw MizanError(.cancelled, "The client cancelled the request.")
                }
                return job
            }
            if let limit = queueUntil, now() >= limit, now() < deadline {
                queueUntil = nil
                if spills {
                    if let job = try await withdrawForSpill(id) { return job }
                } else if let job = try await withdrawIfNeverLeased(id) {
                    return job
                }
                continue
            }
            if !waitsForNodes, waiters.isOrphaned(model), try await !hasCapacity(for: model), let job = try await withdrawIfQueued(id) {
                return job
            }
            if now() >= deadline {
                let job = try await store.timeOut(id, now: now())
                metrics.finished(job)
                return job
            }
            do {
                if let job = try await finishedHereOrStored(id), job.state.isTerminal {
                    metrics.finished(job)
                    return job
                }
                // Woken without a finish (e.g. a stale event); wait again with a fresh signal.
                waiters.stopWaitingForFinish(of: id, current)
                waiters.stopWatchingCapacity(of: model, current)
                current = Signal()
                waiters.waitForFinish(of: id, current)
                waiters.watchCapacity(of: model, current)
                if let job = try await store.job(id), job.state.isTerminal {
                    waiters.stopWaitingForFinish(of: id, current)
                    metrics.finished(job)
                    return job
                }
            } catch  where Task.isCancelled {
                // The client left while the store was read (a store may end its call with a
                // cancellation error): the job is cancelled at the top of the loop, not left leased.
                continue
            }
        }
    }

    /// Withdraws a job that is still waiting for its first lease (its queue wait ran out).
    /// - Returns: The job when it has finished meanwhile, `nil` when it is running (keep waiting).
    /// - Throws: `MizanError` `noCapacity` when it was withdrawn.
    private func withdrawIfNeverLeased(_ id: JobID) async throws -> Job? {
        guard let job = try await store.job(id) else { return nil }
        if job.state.isTerminal { return job }
        guard job.state == .accepted, job.attempt == 1 else { return nil }
        let withdrawn = try await store.cancel(id, now: now())
        guard withdrawn.state == .failed, withdrawn.errorCode == JobErrorCode.cancelled else { return withdrawn }
        metrics.finished(withdrawn)
        logger.info(
            "job withdrawn: no node took it within its queue wait", metadata: ["mizan.job.id": "\(id)", "mizan.model": "\(job.model)"])
        throw MizanError(
            .noCapacity, "All capacity for the model '\(job.model)' is busy; no node took the request in time. Try again later.")
    }

    /// Withdraws a job no node leased within its spill time, conditionally: a job leased
    /// meanwhile keeps running and is waited for.
    /// - Returns: The job when it has finished meanwhile, `nil` when it is running (keep waiting).
    /// - Throws: ``JobSpilled`` when it was withdrawn.
    private func withdrawForSpill(_ id: JobID) async throws -> Job? {
        let job = try await store.withdraw(id, now: now())
        if job.state == .failed, job.errorCode == JobErrorCode.spilled {
            metrics.spilled()
            logger.debug("job spilled: no node took it in time", metadata: ["mizan.job.id": "\(id)", "mizan.model": "\(job.model)"])
            throw JobSpilled(job: job)
        }
        return job.state.isTerminal ? job : nil
    }

    /// Whether a node that could serve `model` is there now (connected and heard from), read
    /// from the store: the sweep's verdict is a moment old, and a node may have come since.
    func hasCapacity(for model: String) async throws -> Bool {
        let now = now()
        return try await nodes().contains { condition(of: $0, now: now).holdsQueue && $0.models.contains(model) }
    }

    /// Withdraws a job that waits in the queue (first attempt or requeued) when no node that
    /// could serve its model is left: its nodes disconnected, went stale or were revoked.
    /// - Returns: The job when it has finished meanwhile, `nil` when it is running (keep waiting).
    /// - Throws: `MizanError` `noHealthyNode` (503) when it was withdrawn.
    private func withdrawIfQueued(_ id: JobID) async throws -> Job? {
        guard let job = try await store.job(id) else { return nil }
        if job.state.isTerminal { return job }
        guard job.state == .accepted else { return nil }
        let withdrawn = try await store.cancel(id, now: now())
        guard withdrawn.state == .failed, withdrawn.errorCode == JobErrorCode.cancelled else { return withdrawn }
        metrics.finished(withdrawn)
        logger.info(
            "job withdrawn: no node left to serve its model", metadata: ["mizan.job.id": "\(id)", "mizan.model": "\(job.model)"])
        throw MizanError(
            .noHealthyNode,
            "No healthy node serves the model '\(SafeText.escaped(job.model))' any more: the nodes serving it disconnected or stopped answering."
        )
    }

    /// Cancels an idempotent job once its retry grace has passed with nobody waiting for it here.
    private func cancelLater(_ id: JobID) {
        let grace = configuration.idempotentRetryGrace
        Task { [waiters, store, now, metrics, logger] in
            try? await Task.sleep(for: grace)
            guard !waiters.isWaitedFor(id) else { return }
            guard let job = try? await store.cancel(id, now: now()), job.state == .failed, job.errorCode == JobErrorCode.cancelled else {
                return
            }
            metrics.finished(job)
            logger.info("job cancelled: no retry came for its idempotency key", metadata: ["mizan.job.id": "\(id)"])
        }
    }

    /// Cancels a job on behalf of its client: a queued job fails at once as `cancelled`; the
    /// node holding a leased one learns so at its next heartbeat (or stream write) and aborts.
    /// - Parameter id: The job.
    /// - Returns: The job after the write (unchanged when it had finished already).
    /// - Throws: `MizanError` `jobNotFound`.
    @discardableResult
    public func cancel(_ id: JobID) async throws -> Job {
        try await store.cancel(id, now: now())
    }
}

/// A job accepted by ``Dispatcher/accept(_:)`` whose end has not been awaited yet.
public struct PendingJob: Sendable {
    /// The job as accepted.
    public let job: Job
    let signal: Signal
    let queueUntil: Date?
    /// The queue wait ends in a spill (``JobSpilled``), not a refusal.
    let spills: Bool
    /// The conversation to remember the answering node for.
    let conversation: UInt64?
    /// Whether it waits for its model's nodes to come back (``DispatchRequest/waitsForNodes``).
    let waitsForNodes: Bool
}

extension Dispatcher {
    /// Withdraws a job that waits for a node (`accepted`), conditionally: a job leased meanwhile
    /// keeps running. A withdrawn job fails with code `spilled`; its submitter's wait returns it.
    /// - Parameter id: The job.
    /// - Returns: The job after the write.
    /// - Throws: `MizanError` `jobNotFound`.
    public func withdraw(_ id: JobID) async throws -> Job {
        try await store.withdraw(id, now: now())
    }
}

extension Dispatcher {
    /// The job as it finished on this instance, or as the store has it.
    func finishedHereOrStored(_ id: JobID) async throws -> Job? {
        if let job = waiters.finishedJob(id) { return job }
        return try await store.job(id)
    }
}
