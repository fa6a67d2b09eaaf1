import Foundation
import Logging
import MizanCore
import MizanProvider
import NIOCore

extension Agent {
    /// Runs one job against the local provider and reports it. A failure before any output is
    /// reported retryable so the gateway can give the job to another node.
    func execute(_ job: AgentWire.Assignment, lease: AgentWire.LeaseRef, token: String) async {
        let remaining = Duration.seconds(max(0, job.deadline.timeIntervalSinceNow))
        let outcome: AgentWire.Report
        do {
            guard remaining > .zero else { throw ProviderError(.timeout, detail: "the job's deadline had passed") }
            if job.stream {
                let report = try await stream(job, lease: lease, token: token, remaining: remaining)
                await Task { await self.deliver(report, token: token, retryFor: Self.retryWindow(job)) }.value
                return
            }
            let response = try await provider.call(job.endpoint, job.body, endpoint: endpoint(remaining: remaining))
            let usage =
                response.usage.flatMap { TokenUsage(reported: $0) }
                ?? TokenUsage(
                    promptTokens: max(1, job.body.count / 4), completionTokens: max(1, response.body.count / 4), source: .estimated)
            outcome = .succeeded(lease, result: response.body, usage: usage)
        } catch let error as ProviderError {
            outcome = .failed(lease, Self.failure(of: error))
        } catch {
            // Cancelled: by the gateway (aborted, nothing to report) or by shutdown (retryable).
            if state.withLock({ $0.running[lease]?.aborted ?? false }) { return }
            let stopped = AgentWire.Report.failed(
                lease, .init(code: "agent_stopped", message: "The agent stopped before the job finished.", retryable: true))
            // The job's task is cancelled; the report goes out on a task of its own, briefly.
            await Task { await self.deliver(stopped, token: token, retryFor: .seconds(5)) }.value
            return
        }
        if state.withLock({ $0.running[lease]?.aborted ?? false }) { return }
        // A result is delivered even if shutdown cancels the job's task meanwhile.
        await Task { await self.deliver(outcome, token: token, retryFor: Self.retryWindow(job)) }.value
    }

    /// Streams a job: the local provider's events go to the gateway as they come. A provider
    /// failure before the first event is retryable; after it, not (the client saw output).
    /// - Returns: The report to deliver.
    func stream(_ job: AgentWire.Assignment, lease: AgentWire.LeaseRef, token: String, remaining: Duration) async throws -> AgentWire.Report
    {
        let events = try await provider.stream(job.endpoint, job.body, endpoint: endpoint(remaining: remaining))
        let (frames, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let client = client
        do {
            // The events go to the gateway as they come; the answer they amount to is kept as the
            // job's result (an idempotent retry of the request gets it again).
            let (usage, transcript) = try await withThrowingTaskGroup(of: (TokenUsage?, Data)?.self) { group in
                group.addTask {
                    try await client.stream(token: token, lease: lease, frames: frames, timeout: remaining)
                    return nil
                }
                group.addTask {
                    defer { continuation.finish() }
                    var meter = StreamUsageMeter(requestBytes: job.body.count)
                    var transcript = StreamTranscript()
                    for try await event in events {
                        meter.observe(event)
                        transcript.observe(event)
                        continuation.yield(ByteBuffer(string: SSEEvent.frame(event)))
                    }
                    return (meter.usage, transcript.completion())
                }
                var outcome: (TokenUsage?, Data) = (nil, Data())
                for try await result in group { if let result { outcome = result } }
                return outcome
            }
            return .succeeded(lease, result: transcript, usage: usage)
        } catch let error as AgentClientError where error.kind == .status(409) || error.kind == .status(404) {
            // Usually the job is over (client gone): the report below is then refused and
            // dropped. If the job still stands, it must not stay leased to this node.
            logger.info("the gateway stopped the stream (client gone or lease moved on)", metadata: ["mizan.job.id": "\(job.jobID)"])
            return .failed(lease, .init(code: "stream_refused", message: "The gateway refused the node's stream.", retryable: false))
        } catch let error as ProviderError {
            return .failed(lease, .init(code: "provider_error", message: "The local provider's stream broke: \(error).", retryable: false))
        }
    }

    /// How long a job's report is retried: until a minute past its deadline (at least a minute).
    static func retryWindow(_ job: AgentWire.Assignment) -> Duration {
        .seconds(max(60, job.deadline.timeIntervalSinceNow + 60))
    }

    /// The failure report of a provider error; no upstream body goes into it.
    static func failure(of error: ProviderError) -> AgentWire.Failure {
        switch error.kind {
        case .status(let status) where (400..<500).contains(status) && status != 429 && status != 408:
            AgentWire.Failure(
                code: "provider_rejected", message: "The local provider refused the request (HTTP \(status)).", retryable: false)
        default:
            AgentWire.Failure(code: "provider_error", message: "The local provider failed: \(error).", retryable: true)
        }
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
