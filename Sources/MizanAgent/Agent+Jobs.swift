import Foundation
import Logging
import MizanCore
import NIOCore
import Synchronization

extension Agent {
    /// Runs one job on the handler and reports it. A failure before any output keeps the
    /// handler's word on whether it is retryable (a retryable one lets the gateway give the job
    /// to another node); a stream that broke after its first event is final (the client saw output).
    func execute(_ assignment: AgentWire.Assignment, lease: AgentWire.LeaseRef, token: String) async {
        let job = AgentJob(assignment) { [weak self] in self?.progressed(lease) }
        let remaining = job.remaining
        let outcome: AgentWire.Report
        do {
            guard remaining > .zero else { throw JobFailure.retryable("timeout", "The job's deadline had passed.") }
            if job.stream {
                let report = try await stream(job, lease: lease, token: token, remaining: remaining)
                await Task { await self.deliver(report, token: token, retryFor: Self.retryWindow(assignment)) }.value
                return
            }
            let handler = handler
            let result = try await withTimeLimit(remaining, timeoutError: { Self.deadlinePassed }) {
                try await handler.respond(to: job)
            }
            let usage =
                result.usage
                ?? TokenUsage(
                    promptTokens: max(
                        1, ClientRequest(endpoint: job.endpoint, body: job.body, model: job.model, stream: false).promptBytes / 4),
                    completionTokens: max(1, result.body.count / 4), source: .estimated)
            outcome = .succeeded(lease, result: result.body, usage: usage)
        } catch let failure as JobFailure {
            if state.withLock({ $0.running[lease]?.aborted ?? false }) { return }
            outcome = .failed(lease, Self.report(failure))
        } catch {
            if state.withLock({ $0.running[lease]?.aborted ?? false }) { return }
            guard Task.isCancelled || error is CancellationError else {
                // A handler's own error: another node (or this one, later) may do better.
                outcome = .failed(
                    lease,
                    .init(
                        code: "handler_error", message: "The node's handler failed: \(SafeText.excerpt("\(error)", limit: 200)).",
                        retryable: true))
                await Task { await self.deliver(outcome, token: token, retryFor: Self.retryWindow(assignment)) }.value
                return
            }
            // Cancelled by shutdown (the gateway's aborts return above): retryable.
            let stopped = AgentWire.Report.failed(
                lease, .init(code: "agent_stopped", message: "The agent stopped before the job finished.", retryable: true))
            // The job's task is cancelled; the report goes out on a task of its own, briefly.
            await Task { await self.deliver(stopped, token: token, retryFor: .seconds(5)) }.value
            return
        }
        if state.withLock({ $0.running[lease]?.aborted ?? false }) { return }
        // A result is delivered even if shutdown cancels the job's task meanwhile.
        await Task { await self.deliver(outcome, token: token, retryFor: Self.retryWindow(assignment)) }.value
    }

    /// The failure of a job whose deadline passed while its handler ran.
    static let deadlinePassed = JobFailure.retryable("timeout", "The job's deadline passed before the node's handler answered.")

    /// A handler's failure as the agent protocol reports it.
    static func report(_ failure: JobFailure) -> AgentWire.Failure {
        AgentWire.Failure(
            code: SafeText.excerpt(failure.code, limit: 64), message: SafeText.excerpt(failure.message, limit: 500),
            retryable: failure.retryable)
    }

    /// What a streamed job has sent so far: the usage its events report and the answer they amount to.
    private struct StreamState: Sendable {
        var meter: StreamUsageMeter
        var transcript = StreamTranscript()
        var sent = false
    }

    /// Streams a job: the handler's events go to the gateway as they come.
    /// - Returns: The report to deliver.
    func stream(_ job: AgentJob, lease: AgentWire.LeaseRef, token: String, remaining: Duration) async throws -> AgentWire.Report {
        let (frames, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let client = client
        let handler = handler
        let progress = Mutex(StreamState(meter: StreamUsageMeter(requestBytes: job.body.count)))
        let writer = JobEventWriter { [weak self] event in
            try Task.checkCancellation()
            self?.progressed(lease)
            progress.withLock { state in
                state.meter.observe(event)
                state.transcript.observe(event)
                state.sent = true
            }
            continuation.yield(ByteBuffer(string: SSEEvent.frame(event)))
        }
        do {
            // The events go to the gateway as they come; the answer they amount to is kept as the
            // job's result (an idempotent retry of the request gets it again).
            let usage = try await withThrowingTaskGroup(of: TokenUsage??.self) { group in
                group.addTask {
                    try await client.stream(token: token, lease: lease, frames: frames, timeout: remaining)
                    return nil
                }
                group.addTask {
                    defer { continuation.finish() }
                    return .some(
                        try await withTimeLimit(remaining, timeoutError: { Self.deadlinePassed }) {
                            try await handler.stream(job, to: writer)
                        })
                }
                var usage: TokenUsage?
                for try await result in group { if let result { usage = result } }
                return usage
            }
            let (meter, transcript) = progress.withLock { ($0.meter, $0.transcript) }
            return .succeeded(lease, result: transcript.completion(), usage: usage ?? meter.usage)
        } catch let error as AgentClientError where error.kind == .status(409) || error.kind == .status(404) {
            // Usually the job is over (client gone): the report below is then refused and
            // dropped. If the job still stands, it must not stay leased to this node.
            logger.info("the gateway stopped the stream (client gone or lease moved on)", metadata: ["mizan.job.id": "\(job.id)"])
            return .failed(lease, .init(code: "stream_refused", message: "The gateway refused the node's stream.", retryable: false))
        } catch let failure as JobFailure where progress.withLock({ $0.sent }) {
            // The client saw output: no other node may start the answer again.
            return .failed(lease, Self.report(JobFailure(code: failure.code, message: failure.message, retryable: false)))
        }
    }

    /// How long a job's report is retried: until a minute past its deadline (at least a minute).
    static func retryWindow(_ job: AgentWire.Assignment) -> Duration {
        .seconds(max(60, job.deadline.timeIntervalSinceNow + 60))
    }
    /// Reports an outcome, retrying with jittered backoff while the gateway is unreachable (a
    /// gateway restart loses no result); a refused report (409: the lease moved on) is dropped.
    func deliver(_ report: AgentWire.Report, token: String, retryFor: Duration) async {
        let until = ContinuousClock.now + retryFor
        do {
            _ = try await retrying("report", until: until) {
                if let failure = report.failure {
                    try await self.client.fail(
                        token: token, jobID: report.jobID, AgentWire.FailRequest(attempt: report.attempt, failure: failure))
                } else {
                    try await self.client.complete(
                        token: token, jobID: report.jobID,
                        AgentWire.CompleteRequest(attempt: report.attempt, result: report.result ?? Data(), usage: report.usage)
                    )
                }
            }
            logger.debug("job reported", metadata: ["mizan.job.id": "\(report.jobID)", "mizan.failed": "\(report.failure != nil)"])
        } catch let error as AgentClientError where error.kind == .status(409) || error.kind == .status(404) {
            logger.info("report refused: the job moved on", metadata: ["mizan.job.id": "\(report.jobID)", "mizan.error": "\(error)"])
        } catch {
            logger.error("report lost", metadata: ["mizan.job.id": "\(report.jobID)", "mizan.error": "\(error)"])
        }
    }
}
