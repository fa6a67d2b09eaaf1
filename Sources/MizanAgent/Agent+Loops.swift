import Foundation
import Logging
import MizanCore
import MizanProvider
import ServiceLifecycle

extension Agent {
    /// Reads the node token from the token file, or registers and writes it there (mode 0600).
    func obtainToken() async throws -> String {
        let url = URL(fileURLWithPath: configuration.tokenFile)
        if let saved = try? String(contentsOf: url, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !saved.isEmpty {
            if let mode = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.posixPermissions] as? Int, mode & 0o077 != 0 {
                logger.warning(
                    "the token file can be read by other users; anyone who reads it can act as this node (chmod 600 it)",
                    metadata: ["mizan.token_file": "\(configuration.tokenFile)", "mizan.mode": "\(String(mode, radix: 8))"]
                )
            }
            return saved
        }
        guard let registration = configuration.registrationToken, !registration.isEmpty else {
            throw AgentClientError(
                .status(401), message: "No node token in \(configuration.tokenFile) and no registration token to register with.")
        }
        let answer = try await retrying("registration") {
            try await self.client.register(registrationToken: registration, report: self.report())
        }
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString)")
        guard
            FileManager.default.createFile(
                atPath: temporary.path, contents: Data(answer.nodeToken.utf8), attributes: [.posixPermissions: 0o600])
        else {
            throw AgentClientError(.invalidAnswer, message: "Cannot write the token file \(configuration.tokenFile).")
        }
        guard rename(temporary.path, url.path) == 0 else {
            try? FileManager.default.removeItem(at: temporary)
            throw AgentClientError(.invalidAnswer, message: "Cannot write the token file \(configuration.tokenFile).")
        }
        logger.info("node registered", metadata: ["mizan.node.id": "\(answer.node.id)", "mizan.token_file": "\(configuration.tokenFile)"])
        return answer.nodeToken
    }

    /// Asks the handler for its catalog: sets models, endpoints and health (the configured
    /// models, when given, instead of the catalog's). Health counts the jobs' progress: a
    /// slow check while a job streams means busy, not down (``HandlerHealth``).
    func checkHandler() async throws {
        // A job that made progress lately is the check: the server is not asked meanwhile. A
        // single-slot server answers nothing else while it generates, and llama-cpp-python even
        // stops its running stream for a new request (its --interrupt_requests, on by default).
        if hasProgressedLately() {
            let before = judge(healthy: true, refused: false)
            if before != .healthy { logger.info("the local server makes progress on a job; healthy, leasing") }
            return
        }
        let catalog: HandlerCatalog
        do {
            catalog = try await handler.catalog()
        } catch {
            let before = judge(healthy: false, refused: false)
            if before != .unhealthy, state.withLock({ $0.health.verdict }) == .unhealthy {
                logger.warning("the node's handler is unhealthy; not leasing", metadata: ["mizan.error": "\(error)"])
            }
            state.withLock { state in
                if let models = configuredModels { state.models = models }
            }
            if state.withLock({ $0.models.isEmpty }) {
                throw AgentClientError(.unreachable, message: "\(error)")
            }
            return
        }
        state.withLock { state in
            state.models = configuredModels ?? catalog.models
            state.endpoints = catalog.endpoints
        }
        if let check = catalog.check,
            state.withLock({ state in
                defer { state.healthCheck = check }
                return state.healthCheck != check
            })
        {
            logger.info("checking the local server's health", metadata: ["mizan.health_check": "\(check)"])
        }
        let before = judge(healthy: catalog.healthy, refused: catalog.refused)
        let after = state.withLock { $0.health.verdict }
        guard before != after else { return }
        switch after {
        case .healthy: logger.info("the node's handler is healthy; leasing")
        case .busy: logger.info("the local server is busy: its health check did not answer, but a job made progress; leasing")
        case .suspect: logger.warning("the local server's health check failed; not leasing until it answers")
        case .unhealthy:
            logger.warning(
                catalog.refused
                    ? "the local server refuses connections; the node is unhealthy" : "the node's handler is unhealthy; not leasing")
        }
    }

    /// The models configured, with the aliases' public names; `nil` when none are (the
    /// handler's catalog says them).
    var configuredModels: [String]? {
        configuration.models.map(configuration.modelAliases.adding(to:))
    }

    /// Takes in a check; returns the verdict before it.
    private func judge(healthy: Bool, refused: Bool) -> HandlerHealth.Verdict {
        let progressed = hasProgressedLately()
        return state.withLock { state in
            let before = state.health.verdict
            state.health.record(healthy: healthy, refused: refused, progressed: progressed, at: .now)
            return before
        }
    }

    /// Whether a running job produced a byte (or started) within the last health interval and
    /// the 10 s a check may take.
    private func hasProgressedLately() -> Bool {
        let now = ContinuousClock.now
        let window = configuration.healthInterval + .seconds(10)
        return state.withLock { state in state.running.values.contains { now - $0.progress <= window } }
    }

    /// Notes that a running job made progress (a byte from its local server).
    func progressed(_ lease: AgentWire.LeaseRef) {
        state.withLock { $0.running[lease]?.progress = .now }
    }

    /// Checks the handler until it answers with models: a local server started at the same
    /// time as the agent may not listen yet.
    func waitForHandler() async throws {
        var backoff = Backoff()
        while true {
            do {
                return try await checkHandler()
            } catch let error as AgentClientError {
                logger.warning("waiting for the local provider", metadata: ["mizan.error": "\(error.message)"])
                try await Task.sleep(for: backoff.next())
            }
        }
    }

    /// Checks the handler periodically.
    func healthLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.healthInterval)
            if Task.isCancelled { return }
            try? await checkHandler()
        }
    }

    /// Asks the handler which models it holds loaded, at once and then every health interval.
    func loadedModelsLoop() async {
        while !Task.isCancelled {
            await findLoadedModels()
            try? await Task.sleep(for: configuration.healthInterval)
        }
    }

    /// Asks the handler which models it holds loaded, for 2 seconds at most, and keeps what it
    /// says for the heartbeats: the models the node serves, at most 64 (`nil`, unknown, when it
    /// does not answer). A server generating for one of the node's jobs is not asked (single-slot
    /// servers answer nothing else meanwhile, and some stop their stream for it): the last
    /// answer stands.
    func findLoadedModels() async {
        if hasProgressedLately() { return }
        let handler = handler
        let found =
            try? await withTimeLimit(LoadedModels.timeout, timeoutError: { CancellationError() }) {
                await handler.loadedModels()
            }
        state.withLock { state in
            var reported = Set<String>()
            let served = Set(state.models)
            state.loadedModels = found.flatMap { $0 }.map { names in
                Array(names.filter { served.contains($0) && reported.insert($0).inserted }.prefix(NodeReport.maxLoadedModels))
            }
        }
    }

    /// Heartbeats at a fixed interval; aborts the jobs the gateway names.
    func heartbeatLoop(token: String) async throws {
        while !Task.isCancelled {
            let running = state.withLock { Array($0.running.keys) }
            do {
                let answer = try await client.heartbeat(token: token, AgentWire.HeartbeatRequest(report: report(), running: running))
                for lease in answer.abort { abort(lease) }
            } catch let error as AgentClientError where error.isUnauthorized {
                logger.error("the gateway refused the node token (the node was revoked, or the gateway no longer knows it); stopping")
                state.withLock { $0.revoked = true }
                for lease in state.withLock({ Array($0.running.keys) }) { abort(lease) }
                slotFreed.yield()
                return
            } catch is CancellationError {
                return
            } catch {
                logger.warning("heartbeat failed", metadata: ["mizan.error": "\(error)"])
            }
            try? await Task.sleep(for: configuration.heartbeatInterval)
        }
    }

    /// Tells the gateway at once that the agent is stopping (a heartbeat that says so).
    func announceDraining(token: String) async {
        let running = state.withLock { Array($0.running.keys) }
        do {
            let answer = try await withTimeLimit(.seconds(5), timeoutError: { AgentClientError(.unreachable, message: "no answer") }) {
                try await self.client.heartbeat(token: token, AgentWire.HeartbeatRequest(report: self.report(), running: running))
            }
            for lease in answer.abort { abort(lease) }
        } catch {
            logger.info("could not tell the gateway the agent is stopping", metadata: ["mizan.error": "\(error)"])
        }
    }

    /// Cancels a running job's local call; it will not be reported.
    func abort(_ lease: AgentWire.LeaseRef) {
        let task = state.withLock { state -> Task<Void, Never>? in
            state.running[lease]?.aborted = true
            return state.running[lease]?.task
        }
        if let task {
            logger.info("aborting job the gateway cancelled", metadata: ["mizan.job.id": "\(lease.jobID)"])
            task.cancel()
        }
    }

    /// Leases while there are free slots and the handler is healthy, until shutdown.
    func leaseLoop(token: String) async throws {
        var backoff = Backoff()
        var slotIterator = slots.makeAsyncIterator()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let (free, healthy, revoked) = state.withLock { ($0.running.count, $0.health.leases, $0.revoked) }
            if revoked { return }
            let slots = configuration.maxConcurrency - free
            guard slots > 0 else {
                _ = await slotIterator.next()
                continue
            }
            guard healthy else {
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
                continue
            }
            let jobs: [AgentWire.Assignment]
            do {
                jobs = try await cancelWhenGracefulShutdown {
                    try await self.client.lease(token: token, limit: slots, wait: self.configuration.leaseWait)
                }
                backoff.reset()
            } catch let error as AgentClientError where error.isUnauthorized {
                logger.error("the gateway refused the node token (the node was revoked, or the gateway no longer knows it); stopping")
                state.withLock { $0.revoked = true }
                return
            } catch {
                if Task.isShuttingDownGracefully || Task.isCancelled { return }
                logger.warning("lease failed; retrying", metadata: ["mizan.error": "\(error)"])
                let pause = backoff.next()
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
                continue
            }
            for job in jobs { start(job, token: token) }
        }
    }

    /// Starts a job on its own task, counted in the running set until it has been reported.
    func start(_ job: AgentWire.Assignment, token: String) {
        let lease = AgentWire.LeaseRef(jobID: job.jobID, attempt: job.attempt)
        state.withLock { $0.running[lease] = RunningJob() }
        let task = Task {
            await self.execute(job, lease: lease, token: token)
            self.state.withLock { _ = $0.running.removeValue(forKey: lease) }
            self.slotFreed.yield()
        }
        state.withLock { state in
            if state.running[lease] != nil { state.running[lease]?.task = task }
        }
    }

    /// Waits for in-flight jobs up to the grace period, then cancels the rest (reported retryable).
    func drain() async {
        let deadline = ContinuousClock.now + configuration.shutdownGrace
        while state.withLock({ !$0.running.isEmpty }) {
            if ContinuousClock.now >= deadline {
                let tasks = state.withLock { $0.running.values.compactMap(\.task) }
                logger.warning("grace period over; failing the remaining jobs as retryable", metadata: ["mizan.jobs": "\(tasks.count)"])
                for task in tasks { task.cancel() }
                for task in tasks { await task.value }
                return
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Runs `body` until it succeeds, backing off with jitter while the gateway is unreachable.
    func retrying<T: Sendable>(
        _ what: String, until deadline: ContinuousClock.Instant = .now + .seconds(600), _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        var backoff = Backoff()
        while true {
            do {
                return try await body()
            } catch let error as AgentClientError where error.isTransient && ContinuousClock.now < deadline {
                logger.warning("\(what) failed; retrying", metadata: ["mizan.error": "\(error)"])
                try await Task.sleep(for: backoff.next())
            }
        }
    }
}

/// Exponential backoff with full jitter, 100 ms to 5 s.
struct Backoff {
    private var attempt = 0

    mutating func reset() { attempt = 0 }

    mutating func next() -> Duration {
        let cap = min(5000.0, 100.0 * pow(2.0, Double(attempt)))
        attempt = min(attempt + 1, 16)
        return .milliseconds(Double.random(in: cap / 2...cap))
    }
}
