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
    /// Tunables of the sweeper.
    public struct Configuration: Sendable {
        /// Time between sweeps.
        public var interval: Duration
        /// A node not heard from for this long is gone; its jobs are requeued.
        public var nodeStaleAfter: Duration
        /// Finished jobs are kept this long.
        public var retention: Duration
        /// Time between prunes.
        public var pruneInterval: Duration

        /// Creates a configuration.
        /// - Parameters:
        ///   - interval: Time between sweeps (1 second).
        ///   - nodeStaleAfter: When a silent node counts as gone (30 seconds).
        ///   - retention: How long finished jobs are kept (24 hours).
        ///   - pruneInterval: Time between prunes (1 minute).
        public init(
            interval: Duration = .seconds(1),
            nodeStaleAfter: Duration = .seconds(30),
            retention: Duration = .seconds(86_400),
            pruneInterval: Duration = .seconds(60)
        ) {
            self.interval = interval
            self.nodeStaleAfter = nodeStaleAfter
            self.retention = retention
            self.pruneInterval = pruneInterval
        }
    }

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

        /// A report of a sweep that did nothing.
        public init() {}
    }

    let dispatcher: Dispatcher
    let configuration: Configuration
    let clock: C
    let lastPrune = Mutex<C.Instant?>(nil)

    /// Creates a sweeper.
    /// - Parameters:
    ///   - dispatcher: The engine whose store to sweep.
    ///   - configuration: Tunables.
    ///   - clock: The clock that paces sweeps (inject a manual one in tests).
    public init(dispatcher: Dispatcher, configuration: Configuration = .init(), clock: C) {
        self.dispatcher = dispatcher
        self.configuration = configuration
        self.clock = clock
    }

    /// Sweeps every ``Configuration/interval`` until graceful shutdown or cancellation.
    public func run() async throws {
        let logger = dispatcher.logger
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await self.clock.sleep(for: self.configuration.interval)
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
        let recovered = try await store.recoverLeases(staleBefore: now.adding(.zero - configuration.nodeStaleAfter), now: now)
        report.requeued = recovered.filter { $0.state == .accepted }.count
        report.failed = recovered.count - report.requeued
        let pruneDue: Bool = lastPrune.withLock { last in
            let current = clock.now
            if let previous = last, previous.duration(to: current) < configuration.pruneInterval { return false }
            last = current
            return true
        }
        if pruneDue {
            report.pruned = try await store.prune(finishedBefore: now.adding(.zero - configuration.retention))
        }
        for (model, depth) in try await store.queueDepth() {
            dispatcher.metrics.queueDepth(model: model).record(depth)
        }
        if report != Report() {
            dispatcher.logger.info(
                "sweep",
                metadata: [
                    "mizan.sweep.timed_out": "\(report.timedOut)", "mizan.sweep.requeued": "\(report.requeued)",
                    "mizan.sweep.failed": "\(report.failed)", "mizan.sweep.pruned": "\(report.pruned)",
                ]
            )
        }
        return report
    }
}

extension Sweeper where C == ContinuousClock {
    /// Creates a sweeper paced by the continuous clock.
    /// - Parameters:
    ///   - dispatcher: The engine whose store to sweep.
    ///   - configuration: Tunables.
    public convenience init(dispatcher: Dispatcher, configuration: Configuration = .init()) {
        self.init(dispatcher: dispatcher, configuration: configuration, clock: ContinuousClock())
    }
}
