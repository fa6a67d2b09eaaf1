import Foundation
import Logging
import MizanCore
import MizanStore
import ServiceLifecycle
import Synchronization

/// Runs batches and background responses: every ``BatchSettings/tick`` it claims the work no
/// live instance holds (and renews its own claims), runs each batch's lines — at most
/// ``BatchSettings/linesInFlight`` at once — and each background response, and finishes each
/// batch once its lines have ended, its window has closed, it was cancelled or its key's budget
/// ran out.
///
/// A gateway that stops hands its claims back at once; one that dies loses them after
/// ``BatchSettings/claimLifetime``, and whoever claims the batch next resumes it: lines already
/// ended are skipped, a line whose job is queued or running attaches to it (its idempotency
/// key), so that no line runs twice to completion.
final class BatchRunner: Service, Sendable {
    let store: any BatchStore
    let lines: LineServer
    let responses: BackgroundResponses
    let settings: BatchSettings
    let logger: Logger
    let metrics: BatchMetrics
    /// This instance's name in claims.
    let runner = "gateway-" + BatchIDs.hex()
    /// The batches running here, by id.
    private let running = Mutex<[String: BatchControl]>([:])
    /// Set to look for work before the next tick (a batch created or cancelled here).
    private let poked = Atomic(false)

    init(store: any BatchStore, lines: LineServer, responses: BackgroundResponses, settings: BatchSettings, logger: Logger) {
        self.store = store
        self.lines = lines
        self.responses = responses
        self.settings = settings
        self.logger = logger
        self.metrics = BatchMetrics()
    }

    /// What a running batch's lines read: whether it is stopping, and the jobs its lines queued.
    final class BatchControl: Sendable {
        enum Stop: Sendable {
            case cancel
            case budget(MizanError)
            /// This instance no longer holds the batch (its claim lapsed, or the gateway stops):
            /// no new line starts here, and whoever holds it ends it.
            case handedOver
        }
        let stop = Mutex<Stop?>(nil)
        let jobs = Mutex<[Int: JobID]>([:])
        /// Whether a line expired (the batch then ends `expired`).
        let sawExpiry = Atomic(false)

        var isCancelling: Bool { stop.withLock { if case .cancel = $0 { true } else { false } } }
    }

    /// Looks for work now rather than at the next tick.
    func poke() { poked.store(true, ordering: .relaxed) }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var lastPrune = ContinuousClock.now - .seconds(3600)
            while !Task.isCancelled {
                await self.claim()
                if ContinuousClock.now - lastPrune > .seconds(60) {
                    lastPrune = .now
                    _ = try? await self.store.pruneResponses(
                        endedBefore: Date().addingTimeInterval(-self.settings.responseRetention.timeInterval))
                }
                // Until the next tick, or sooner when poked.
                let next = ContinuousClock.now.advanced(by: self.settings.tick)
                while ContinuousClock.now < next, !self.poked.exchange(false, ordering: .relaxed), !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
        }
        // Hand the work on: no new line starts here, and another instance, or this gateway
        // started again, resumes it at once (lines running here attach to their jobs there).
        for control in running.withLock({ Array($0.values) }) { control.stop.withLock { if $0 == nil { $0 = .handedOver } } }
        try? await store.releaseClaims(runner: runner)
    }

    /// Claims (and renews) batches and background responses, starting those not running here.
    func claim() async {
        let now = Date()
        let until = now.addingTimeInterval(settings.claimLifetime.timeInterval)
        do {
            let batches = try await store.claimBatches(runner: runner, until: until, now: now, limit: 64)
            metrics.update(batches)
            for batch in batches {
                let (control, fresh) = running.withLock { running -> (BatchControl, Bool) in
                    if let control = running[batch.id] { return (control, false) }
                    let control = BatchControl()
                    running[batch.id] = control
                    return (control, true)
                }
                if batch.status == .cancelling { await cancel(control) }
                if fresh {
                    // Not a child of the loop: a graceful stop leaves the lines' jobs queued for
                    // whoever resumes the batch, instead of cancelling them.
                    Task { await self.runBatch(batch, control: control) }
                }
            }
            // A batch running here that the claim no longer returned is another's now.
            let held = Set(batches.map(\.id))
            for control in running.withLock({ running in running.filter { !held.contains($0.key) }.map(\.value) }) {
                control.stop.withLock { if $0 == nil { $0 = .handedOver } }
            }
            try await responses.claim(runner: runner, until: until, now: now, limit: settings.responsesInFlight)
        } catch {
            logger.warning("could not claim batches", metadata: ["mizan.error": "\(error)"])
        }
    }

    /// Stops a batch's lines: no new line starts, queued ones are withdrawn, running ones finish.
    private func cancel(_ control: BatchControl) async {
        let first = control.stop.withLock { stop -> Bool in
            guard stop == nil else { return false }
            stop = .cancel
            return true
        }
        guard first else { return }
        for id in control.jobs.withLock({ Array($0.values) }) { _ = try? await lines.client.dispatcher.withdraw(id) }
    }

    /// Marks a batch cancelled here (its status is `cancelling` in the store) and wakes the loop.
    func cancelled(_ id: String) async {
        if let control = running.withLock({ $0[id] }) { await cancel(control) }
        poke()
    }

    /// Runs a claimed batch to its end.
    private func runBatch(_ claimed: Batch, control: BatchControl) async {
        defer { _ = running.withLock { $0.removeValue(forKey: claimed.id) } }
        var batch = claimed
        do {
            if batch.status == .validating {
                batch = try await store.moveBatch(batch.id, to: .inProgress, from: [.validating], failure: nil, now: Date()) ?? batch
            }
            guard let key = try await lines.client.credentials.activeKey(id: batch.apiKeyID) else {
                try await finish(
                    batch, control: control,
                    leftover: ("key_revoked", "The batch's API key was revoked or expired before this request ran."),
                    failure: Batch.Failure(code: "key_revoked", message: "The batch's API key was revoked or expired."))
                return
            }
            if batch.status == .inProgress { try await runLines(batch, key: key, control: control) }
            try await finishIfEnded(batch.id, control: control)
        } catch {
            logger.warning(
                "batch interrupted; it resumes at the next claim", metadata: ["mizan.batch.id": "\(batch.id)", "mizan.error": "\(error)"])
        }
    }

    /// Serves the batch's waiting lines, a window at a time, until none is left, the window
    /// closes or the batch stops.
    private func runLines(_ batch: Batch, key: APIKey, control: BatchControl) async throws {
        let spillPoint = batch.spillPoint(spillAt: settings.spillAt)
        let window = settings.linesInFlight
        // Lines never throw: a store error on one must not cancel the others running.
        var failure: (any Error)?
        await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            var cursor = 0
            pages: while control.stop.withLock({ $0 == nil }), Date() < batch.expiresAt {
                let page: [InputLine]
                do {
                    page = try await store.pendingLines(batchID: batch.id, after: cursor, limit: window)
                } catch {
                    failure = error
                    break
                }
                if page.isEmpty { break }
                for input in page {
                    while inFlight >= window {
                        await group.next()
                        inFlight -= 1
                    }
                    guard control.stop.withLock({ $0 == nil }), Date() < batch.expiresAt else { break pages }
                    cursor = input.number
                    inFlight += 1
                    let line = LineServer.Line(batch: batch, key: key, input: input, spillPoint: spillPoint)
                    group.addTask { await self.runLine(line, control: control) }
                }
            }
            await group.waitForAll()
        }
        if let failure { throw failure }
    }

    /// Serves one line until it ends (a refusal for now is tried again a moment later).
    private func runLine(_ line: LineServer.Line, control: BatchControl) async {
        while true {
            let end = await lines.serve(
                line, cancelling: { control.isCancelling },
                queued: { id in control.jobs.withLock { $0[line.input.number] = id } })
            control.jobs.withLock { _ = $0.removeValue(forKey: line.input.number) }
            switch end {
            case .ended(let result):
                await record(result, of: line)
                return
            case .expired(let result):
                control.sawExpiry.store(true, ordering: .relaxed)
                await record(result, of: line)
                return
            case .later:
                guard control.stop.withLock({ $0 == nil }), Date() < line.batch.expiresAt else { return }
                try? await Task.sleep(for: .seconds(1))
            case .outOfBudget(let error):
                control.stop.withLock { if $0 == nil { $0 = .budget(error) } }
                return
            case .withdrawn:
                return
            }
        }
    }

    /// Writes a line's result, trying again while the store does not answer (a database that
    /// blips); a line whose result cannot be written stays waiting, for the next run to serve
    /// (attaching to its job).
    private func record(_ result: LineResult, of line: LineServer.Line) async {
        for attempt in 0..<5 {
            do {
                _ = try await store.finishLines(batchID: line.batch.id, [result], now: Date())
                metrics.line(result)
                return
            } catch {
                guard attempt < 4 else {
                    logger.warning(
                        "could not record a batch line; it runs again at the next claim",
                        metadata: [
                            "mizan.batch.id": "\(line.batch.id)", "mizan.batch.line": "\(line.input.number)", "mizan.error": "\(error)",
                        ])
                    return
                }
                try? await Task.sleep(for: .milliseconds(200 << attempt))
            }
        }
    }

    /// Ends a batch whose lines have all ended, whose window closed, or that stopped. A batch
    /// this instance no longer holds is left to whoever holds it.
    private func finishIfEnded(_ id: String, control: BatchControl) async throws {
        guard let batch = try await store.batch(id, apiKeyID: nil), !batch.status.isTerminal else { return }
        let stop = control.stop.withLock { $0 }
        if case .handedOver = stop { return }
        let expired = control.sawExpiry.load(ordering: .relaxed)
        if batch.status == .cancelling || control.isCancelling {
            try await finish(
                batch, control: control, leftover: ("batch_cancelled", "The batch was cancelled before this request ran."), failure: nil)
        } else if case .budget(let error) = stop {
            try await finish(
                batch, control: control, leftover: ("budget_exhausted", "The batch's API key ran out of budget before this request ran."),
                failure: Batch.Failure(code: "budget_exhausted", message: error.message))
        } else if batch.counts.pending == 0, !expired {
            try await finish(batch, control: control, leftover: nil, failure: nil)
        } else if Date() >= batch.expiresAt || expired {
            try await finish(
                batch, control: control,
                leftover: ("batch_expired", "This request could not be executed before the completion window expired."), failure: nil)
        }
    }

    /// Writes every waiting line to the error file (`leftover`) and moves the batch to its end.
    private func finish(_ batch: Batch, control: BatchControl, leftover: (code: String, message: String)?, failure: Batch.Failure?)
        async throws
    {
        var expiredLines = 0
        if let leftover {
            while true {
                let page = try await store.pendingLines(batchID: batch.id, after: 0, limit: 1000)
                if page.isEmpty { break }
                let results = page.map {
                    LineResult(
                        number: $0.number, succeeded: false,
                        line: BatchInput.resultLine(customID: $0.customID, status: nil, requestID: nil, body: nil, error: leftover),
                        place: .none)
                }
                expiredLines += try await store.finishLines(batchID: batch.id, results, now: Date())
            }
        }
        let final: Batch.Status =
            batch.status == .cancelling || control.isCancelling
            ? .cancelled
            : failure != nil
                ? .failed
                : leftover?.code == "batch_expired" ? .expired : .completed
        if final == .completed || final == .expired {
            _ = try await store.moveBatch(batch.id, to: .finalizing, from: [.inProgress], failure: nil, now: Date())
        }
        guard
            let ended = try await store.moveBatch(
                batch.id, to: final, from: [.inProgress, .finalizing, .cancelling], failure: failure, now: Date())
        else { return }
        metrics.ended(ended)
        logger.info(
            "batch ended",
            metadata: [
                "mizan.batch.id": "\(ended.id)", "mizan.batch.status": "\(ended.status.rawValue)",
                "mizan.batch.completed": "\(ended.counts.completed)", "mizan.batch.failed": "\(ended.counts.failed)",
                "mizan.batch.by_nodes": "\(ended.counts.byNodes)", "mizan.batch.by_routes": "\(ended.counts.byRoutes)",
            ])
    }
}
