import Metrics

/// The gateway's metrics, reported through swift-metrics (Prometheus when the executable
/// bootstraps it): requests by route, model and status, latency, upstream failures, cool-downs.
struct GatewayMetrics: Sendable {
    /// Counts a finished request and records its latency.
    func request(route: String, model: String, status: Int, seconds: Double) {
        Counter(label: "mizan_gateway_requests_total", dimensions: [("route", route), ("model", model), ("status", String(status))])
            .increment()
        Metrics.Timer(
            label: "mizan_gateway_request_duration_seconds", dimensions: [("route", route), ("model", model)],
            preferredDisplayUnit: .seconds
        )
        .recordNanoseconds(Int64(seconds * 1e9))
    }

    /// Records the gateway's own time for an inference request (its `X-Mizan-Overhead-Ms`).
    func overhead(route: String, seconds: Double) {
        Metrics.Timer(label: "mizan_gateway_overhead_seconds", dimensions: [("route", route)], preferredDisplayUnit: .seconds)
            .recordNanoseconds(Int64(seconds * 1e9))
    }

    /// Counts an upstream failure of a provider route.
    func upstreamFailure(route: String, kind: String) {
        Counter(label: "mizan_gateway_upstream_failures_total", dimensions: [("route", route), ("kind", kind)]).increment()
    }

    /// Counts a request a key's policy refused: `requests`, `tokens`, `concurrency`, `budget`
    /// (its limits), `model` (outside its allow-list) or `expired`.
    func refusal(reason: String) {
        Counter(label: "mizan_gateway_refusals_total", dimensions: [("reason", reason)]).increment()
    }

    /// Counts a route entering its cool-down.
    func cooldown(route: String) {
        Counter(label: "mizan_gateway_route_cooldowns_total", dimensions: [("route", route)]).increment()
    }
}
