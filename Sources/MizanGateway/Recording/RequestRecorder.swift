import Foundation
import Logging
import MizanCore
import MizanStore

/// What happens once a response has been written: one log line, the request metrics, and
/// for a known model one usage record.
struct RequestRecorder: Sendable {
    /// Where a counted key's admission ends, with the request's usage record.
    let admissions: Admissions
    let metrics: GatewayMetrics
    /// The last hour of inference traffic, for the console.
    let activity: RecentActivity
    let logger: Logger

    /// Logs, counts and records a finished request.
    /// - Parameters:
    ///   - method: The request's method.
    ///   - path: The request's path.
    ///   - status: The status answered.
    ///   - started: When the request arrived.
    ///   - record: What the request was and how it was served.
    ///   - clientLeft: Whether the client went away before the whole answer was written.
    func finish(
        method: String, path: String, status: Int, started: ContinuousClock.Instant, record: RequestRecord, clientLeft: Bool = false
    )
        async
    {
        let elapsed = ContinuousClock.now - started
        let seconds = elapsed.timeInterval
        let fields = record.fields
        let finished = Finished(fields: fields, clientLeft: clientLeft)
        // Agent long-polls, reports and heartbeats would drown the log at info.
        let level: Logger.Level =
            fields.inference == nil && (path.hasPrefix("/agent/") || path.hasPrefix("/healthz") || path.hasPrefix("/metrics"))
            ? .debug : .info
        if logger.logLevel <= level {
            var metadata: Logger.Metadata = [
                "mizan.request.id": "\(fields.requestID)",
                "http.method": "\(method)",
                "http.path": "\(path)",
                "http.status": "\(status)",
                "mizan.latency_ms": "\(Self.milliseconds(seconds))",
            ]
            if let inference = fields.inference {
                metadata["mizan.model"] = "\(inference.model)"
                metadata["mizan.endpoint"] = "\(inference.endpoint.rawValue)"
            }
            if let servedBy = fields.outcome.servedBy { metadata["mizan.served_by"] = "\(servedBy.recorded)" }
            if let priority = fields.priority { metadata["mizan.priority"] = "\(priority.rawValue)" }
            if let error = finished.streamError { metadata["mizan.stream_error"] = "\(error)" }
            if let usage = finished.usage {
                metadata["mizan.tokens.prompt"] = "\(usage.promptTokens)"
                metadata["mizan.tokens.completion"] = "\(usage.completionTokens)"
            }
            logger.log(level: level, "request", metadata: metadata)
        }
        if await !self.record(finished, status: status, seconds: seconds), let ending = fields.admission {
            await admissions.end(ending, requestID: fields.requestID)
        }
    }

    /// A request as it ended: its record, with a stream's usage and error read from its ending.
    struct Finished: Sendable {
        var fields: RequestRecord.Fields
        var usage: TokenUsage?
        var streamError: String?

        init(fields: RequestRecord.Fields, clientLeft: Bool = false) {
            self.fields = fields
            usage = fields.ending?.usage ?? fields.outcome.usage
            streamError = fields.ending?.error ?? (clientLeft ? "the client went away" : nil)
        }
    }

    /// Counts a finished request in the metrics and, for a known model, records its usage and
    /// ends its key's admission (its hold released, its tokens counted: the record's figure) —
    /// queued before the connection reads its next request, so that the client's next request
    /// on this instance finds the slot free (its admission is applied after it).
    /// - Returns: Whether a usage record was made (and the admission ended with it).
    func record(_ finished: Finished, status: Int, seconds: Double) async -> Bool {
        let fields = finished.fields
        guard let inference = fields.inference else { return false }
        activity.record(
            status: status, milliseconds: seconds * 1000, tokens: finished.usage.map { $0.promptTokens + $0.completionTokens } ?? 0)
        let servedBy = fields.outcome.servedBy
        let route = servedBy?.metricLabel ?? "none"
        // Labels and usage rows carry known models only: a client's made-up names would
        // otherwise grow them without bound.
        // A model only nodes advertise is a label once a node served it: a node cannot grow the
        // series by reporting names no request is ever served for.
        let labelled = fields.model == .routed || (fields.model == .known && servedBy != nil)
        metrics.request(route: route, model: labelled ? inference.model : "unknown", status: status, seconds: seconds)
        if let overhead = fields.overhead { metrics.overhead(route: route, seconds: overhead.timeInterval) }
        guard fields.model != .unknown else { return false }
        let record = UsageRecord(
            requestID: fields.requestID,
            apiKeyID: fields.apiKeyID,
            model: inference.model,
            servedBy: servedBy?.recorded,
            status: status,
            latencyMilliseconds: seconds * 1000,
            usage: finished.usage,
            createdAt: Date(),
            jobID: fields.outcome.jobID,
            endpoint: inference.endpoint,
            priority: fields.priority
        )
        await admissions.end(fields.admission, recording: record)
        return true
    }

    /// Milliseconds with two decimals, e.g. `1.25` (without `String(format:)`, slow on Linux).
    static func milliseconds(_ seconds: Double) -> String {
        let hundredths = Int((seconds * 100_000).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
