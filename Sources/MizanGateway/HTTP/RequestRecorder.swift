import Foundation
import Logging
import MizanCore
import MizanStore

/// What happens once a response has been written: one log line, the request metrics, and
/// for a known model one usage record.
struct RequestRecorder: Sendable {
    let access: any AccessStore
    let metrics: GatewayMetrics
    let logger: Logger

    /// Logs, counts and records a finished request.
    func finish(method: String, path: String, status: Int, started: ContinuousClock.Instant, trace: RequestTrace) async {
        let elapsed = ContinuousClock.now - started
        let seconds = elapsed.timeInterval
        let fields = trace.fields
        // Agent long-polls, reports and heartbeats would drown the log at info.
        let level: Logger.Level =
            fields.model == nil && (path.hasPrefix("/agent/") || path.hasPrefix("/healthz") || path.hasPrefix("/metrics")) ? .debug : .info
        if logger.logLevel <= level {
            var metadata: Logger.Metadata = [
                "mizan.request.id": "\(fields.requestID)",
                "http.method": "\(method)",
                "http.path": "\(path)",
                "http.status": "\(status)",
                "mizan.latency_ms": "\(Self.milliseconds(seconds))",
            ]
            if let model = fields.model { metadata["mizan.model"] = "\(model)" }
            if let endpoint = fields.endpoint { metadata["mizan.endpoint"] = "\(endpoint.rawValue)" }
            if let servedBy = fields.servedBy { metadata["mizan.served_by"] = "\(servedBy)" }
            if let error = fields.streamError { metadata["mizan.stream_error"] = "\(error)" }
            if let usage = fields.usage {
                metadata["mizan.tokens.prompt"] = "\(usage.promptTokens)"
                metadata["mizan.tokens.completion"] = "\(usage.completionTokens)"
            }
            logger.log(level: level, "request", metadata: metadata)
        }
        let counted = await record(fields, status: status, seconds: seconds)
        if let admission = fields.admission {
            // The hold is released and the tokens counted: the usage record's figure (none for a
            // retry of an idempotent job whose tokens were counted).
            let tokens = counted ? (fields.usage?.promptTokens ?? 0) + (fields.usage?.completionTokens ?? 0) : 0
            await release(admission, tokens: tokens, requestID: fields.requestID)
        }
    }

    /// Counts a finished request in the metrics and, for a known model, records its usage.
    /// - Returns: Whether the record counted its tokens.
    func record(_ fields: RequestTrace.Fields, status: Int, seconds: Double) async -> Bool {
        guard let model = fields.model else { return false }
        let route = fields.servedBy.map { $0.hasPrefix("node/") ? "agents" : $0 } ?? "none"
        // Labels and usage rows carry known models only: a client's made-up names would
        // otherwise grow them without bound.
        metrics.request(route: route, model: fields.modelKnown ? model : "unknown", status: status, seconds: seconds)
        guard fields.modelKnown else { return false }
        let record = UsageRecord(
            requestID: fields.requestID,
            apiKeyID: fields.apiKeyID,
            model: model,
            servedBy: fields.servedBy,
            status: status,
            latencyMilliseconds: seconds * 1000,
            usage: fields.usage,
            createdAt: Date(),
            jobID: fields.jobID,
            endpoint: fields.endpoint ?? .chatCompletions
        )
        do {
            return try await access.recordUsage(record)
        } catch {
            logger.error(
                "usage record could not be stored", metadata: ["mizan.request.id": "\(fields.requestID)", "mizan.error": "\(error)"])
            return false
        }
    }

    /// Releases a counted key's hold and counts its tokens, before the connection reads its next
    /// request (so that a client's next request finds the slot free).
    func release(_ admission: (key: APIKey, holdID: String), tokens: Int, requestID: String) async {
        do {
            try await access.finish(admission.key, holdID: admission.holdID, tokens: tokens, now: Date())
        } catch {
            logger.error(
                "a limited key's request could not be counted", metadata: ["mizan.request.id": "\(requestID)", "mizan.error": "\(error)"])
        }
    }

    /// Milliseconds with two decimals, e.g. `1.25` (without `String(format:)`, slow on Linux).
    static func milliseconds(_ seconds: Double) -> String {
        let hundredths = Int((seconds * 100_000).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
