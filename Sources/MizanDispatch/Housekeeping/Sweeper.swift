import Foundation
import Logging
import MizanCore
import MizanStore
import ServiceLifecycle
import Synchronization

/// The background housekeeping of the engine, off the hot path: times out jobs past their
/// deadline, requeues or fails the jobs of nodes that stopped heartbeating (or were
/// revoked), prunes old finished jobs, and publishes queue depth.
///
/// Several gateway instances may each run one on a shared store: every write is conditional.
public final class Sweeper<C: Clock>: Service, Sendable where C.Duration == Duration {
    /// What one sweep did.
    public struct Report: Sendable, Equatable {
        /// Jobs timed out.
        public var timedOut: Int = 0
        /// Jobs of lost nodes put back in the queue.
        public var requeued: Int = 0
        /// Jobs of lost nodes failed (no attempt or time left).
        public var failed: Int = 0
        /// Finished jobs deleted.
        public var pruned: Int = 0
        /// Queued jobs raised one class for their wait.
        public var promoted: Int = 0

        /// A report of a sweep that did nothing.
        public init() {}
    }

    let dispatcher: Dispatcher
    let clock: C
    let lastPrune = Mutex<C.Instant?>(nil)
    /// The models the queue-depth gauge was last set for, so that one whose queue emptied falls back to 0.
    let gaugedModels = Mutex<Set<String>>([])

    /// Creates a sweeper paced by the dispatcher's ``Dispatcher/Configuration/sweeping`` and
    /// its ``Dispatcher/Configuration/nodeStaleAfter``.
    /// - Parameters:
    ///   - dispatcher: The engine whose store to sweep.
    ///   - clock: The clock that paces sweeps (inject a manual one in tests).
    public init(dispatcher: Dispatcher, clock: C) {
        self.dispatcher = dispatcher
        self.clock = clock
    }

    var pace: Dispatcher.Configuration.Sweeping { dispatcher.configuration.sweeping }

    /// Sweeps every ``Dispatcher/Configuration/Sweeping/interval`` until graceful shutdown or cancellation.
    public func run() async throws {
        let logger = dispatcher.logger
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await self.clock.sleep(for: self.pace.interval)
                do {
                    _ = try await self.sweep()
                } catch {
                    // Stopping: the store may already be closed; that is no failure to report.
                    if Task.isCancelled { return }
                    logger.warning("sweep failed", metadata: ["mizan.error": "\(error)"])
                }
            }
        }
    }

    /// Runs one sweep now.
    /// - Returns: What it did.
    /// - Throws: A store error.
    public func sweep() async throws -> Report {
        let store = dispatcher.store
        let now = dispatcher.now()
        var report = Report()
        let expired = try await store.timeOutExpired(now: now)
        report.timedOut = expired.count
        for job in expired { dispatcher.metrics.finished(job) }
        let recovered = try await store.recoverLeases(staleBefore: now.adding(.zero - dispatcher.configuration.nodeStaleAfter), now: now)
        report.requeued = recovered.filter { $0.state == .accepted }.count
        report.failed = recovered.count - report.requeued
        report.promoted = try await store.promote(
            waitingSince: now.adding(.zero - dispatcher.configuration.scheduling.promoteAfter), now: now)
        dispatcher.metrics.promoted(report.promoted)
        let pruneDue: Bool = lastPrune.withLock { last in
            let current = clock.now
            if let previous = last, previous.duration(to: current) < pace.pruneInterval { return false }
            last = current
            return true
        }
        if pruneDue {
            report.pruned = try await store.prune(finishedBefore: now.adding(.zero - pace.retention))
        }
        let depths = try await store.queueDepth()
        let previous = gaugedModels.withLock { gauged in
            defer { gauged = Set(depths.keys) }
            return gauged
        }
        for (model, depth) in depths { dispatcher.metrics.queueDepth(model: model).record(depth) }
        for model in previous.subtracting(depths.keys) { dispatcher.metrics.queueDepth(model: model).record(0) }
        try await checkNodes(now: now)
        if report != Report() {
            dispatcher.logger.info(
                "sweep",
                metadata: [
                    "mizan.sweep.timed_out": "\(report.timedOut)", "mizan.sweep.requeued": "\(report.requeued)",
                    "mizan.sweep.failed": "\(report.failed)", "mizan.sweep.pruned": "\(report.pruned)",
                    "mizan.sweep.promoted": "\(report.promoted)",
                ]
            )
        }
        return report
    }
}

extension Sweeper {
    /// Counts the nodes by condition for the metrics, and finds the models that submitters
    /// here wait for but no node could serve now (none connected and heard from): those
    /// submitters are woken to answer 503 rather than wait out their queue time.
    func checkNodes(now: Date) async throws {
        let nodes = try await dispatcher.nodes()
        var counts: [NodeCondition: Int] = [:]
        var served: Set<String> = []
        for node in nodes {
            let condition = dispatcher.condition(of: node, now: now)
            counts[condition, default: 0] += 1
            if condition.holdsQueue { served.formUnion(node.models) }
        }
        for condition in NodeCondition.allCases { dispatcher.metrics.nodes(condition).record(counts[condition] ?? 0) }
        dispatcher.waiters.setOrphaned(dispatcher.waiters.watchedModels.subtracting(served))
    }
}

extension Sweeper where C == ContinuousClock {
    /// Creates a sweeper paced by the continuous clock.
    /// - Parameter dispatcher: The engine whose store to sweep (and whose configuration paces it).
    public convenience init(dispatcher: Dispatcher) {
        self.init(dispatcher: dispatcher, clock: ContinuousClock())
    }
}
