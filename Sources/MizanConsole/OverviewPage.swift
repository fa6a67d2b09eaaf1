import Foundation
import Hummingbird
import MizanCore
import MizanDispatch
import MizanGateway

/// The overview: this instance's last hour of traffic, the queue and the nodes at a glance.
struct OverviewPage: Sendable {
    /// The engine: its nodes and its queue.
    let dispatcher: Dispatcher
    /// This instance's last hour of traffic.
    let activity: RecentActivity

    /// The overview page.
    /// - Parameters:
    ///   - viewer: Who it is for.
    ///   - now: The time it shows the last hour up to.
    func page(for viewer: ConsoleViewer, now: Date = Date()) async throws -> Response {
        let minutes = activity.lastHour(now: now)
        async let nodesRead = dispatcher.nodes()
        async let depthRead = dispatcher.queueDepth()
        let (nodes, depth) = try await (nodesRead, depthRead)

        let requests = minutes.reduce(0) { $0 + $1.requests }
        let failures = minutes.reduce(0) { $0 + $1.failures }
        let refusals = minutes.reduce(0) { $0 + $1.refusals }
        let tokens = minutes.reduce(0) { $0 + $1.tokens }
        let histogram = RecentActivity.merged(minutes)
        let lastFive = minutes.suffix(5).reduce(0) { $0 + $1.requests }
        var conditions: [NodeCondition: Int] = [:]
        for node in nodes where node.status != .revoked { conditions[dispatcher.condition(of: node, now: now), default: 0] += 1 }
        let queued = depth.values.reduce(0, +)

        let tiles: HTML = """
            <div class="tiles">
              \(tile("Requests, last hour", ConsoleLayout.number(requests), "\(Double(lastFive * 2).rounded() / 10) a minute over the last 5 minutes"))
              \(tile("Error rate", ConsoleLayout.percent(failures, of: requests), "\(ConsoleLayout.number(failures)) failed (5xx) · \(ConsoleLayout.number(refusals)) refused (4xx)"))
              \(tile("Latency p50 / p95", "\(ConsoleLayout.milliseconds(RecentActivity.percentile(0.5, of: histogram))) / \(ConsoleLayout.milliseconds(RecentActivity.percentile(0.95, of: histogram)))", "the gateway's whole time per request"))
              \(tile("Tokens, last hour", ConsoleLayout.number(tokens), "prompt and completion"))
              \(tile("Queued jobs", ConsoleLayout.number(queued), depth.isEmpty ? "nothing waiting for a node" : "\(depth.count) model\(depth.count == 1 ? "" : "s") waiting"))
              \(tile("Nodes", "\(conditions[.healthy] ?? 0) healthy", "\(conditions[.unhealthy] ?? 0) unhealthy · \((conditions[.stale] ?? 0) + (conditions[.disconnected] ?? 0)) stale or disconnected · \(conditions[.pending] ?? 0) waiting"))
            </div>
            """

        let time = { (minute: RecentActivity.Minute) in ConsoleLayout.utcText(minute.start) }
        let requestBars = minutes.map {
            ConsoleCharts.Bar(
                value: Double($0.requests), highlighted: Double($0.failures),
                title: "\(time($0)): \($0.requests) requests, \($0.failures) failed, \($0.refusals) refused")
        }
        let p50 = minutes.map { RecentActivity.percentile(0.5, of: $0.latencies) }
        let p95 = minutes.map { RecentActivity.percentile(0.95, of: $0.latencies) }
        let latencyTitles = minutes.indices.map {
            "\(time(minutes[$0])): p50 \(ConsoleLayout.milliseconds(p50[$0])), p95 \(ConsoleLayout.milliseconds(p95[$0]))"
        }
        let tokenBars = minutes.map { ConsoleCharts.Bar(value: Double($0.tokens), title: "\(time($0)): \($0.tokens) tokens") }
        let peakRequests = minutes.map(\.requests).max() ?? 0
        let charts: HTML = """
            <div class="charts">
              <section class="panel chart" aria-labelledby="chart-requests">
                <h2 id="chart-requests">Requests per minute</h2>
                \(ConsoleCharts.bars(requestBars, label: "Requests per minute over the last hour; the busiest minute had \(peakRequests)."))
                <div class="legend"><span><span class="swatch"></span>answered</span><span><span class="swatch bad"></span>failed (5xx)</span><span>peak \(peakRequests)/min</span></div>
              </section>
              <section class="panel chart" aria-labelledby="chart-latency">
                <h2 id="chart-latency">Latency per minute</h2>
                \(ConsoleCharts.lines([.init(values: p50), .init(values: p95, secondary: true)], titles: latencyTitles, label: "Latency p50 and p95 per minute over the last hour."))
                <div class="legend"><span><span class="swatch"></span>p50</span><span><span class="swatch bad"></span>p95</span><span>peak \(ConsoleLayout.milliseconds(p95.compactMap { $0 }.max()))</span></div>
              </section>
              <section class="panel chart" aria-labelledby="chart-tokens">
                <h2 id="chart-tokens">Tokens per minute</h2>
                \(ConsoleCharts.bars(tokenBars, label: "Tokens per minute over the last hour."))
                <div class="legend"><span>peak \(ConsoleLayout.number(minutes.map(\.tokens).max() ?? 0))/min</span></div>
              </section>
            </div>
            """

        let queueRows = depth.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.map { model, count -> HTML in
            "<tr><td data-label=\"Model\">\(model)</td><td class=\"num\" data-label=\"Waiting\">\(ConsoleLayout.number(count))</td></tr>"
        }
        let queue: HTML =
            queueRows.isEmpty
            ? "<div class=\"table-wrap\"><p class=\"empty\">No job is waiting for a node.</p></div>"
            : """
            <div class="table-wrap"><table class="responsive"><thead><tr><th scope="col">Model</th><th scope="col" class="num">Waiting</th></tr></thead>
            <tbody>\(queueRows)</tbody></table></div>
            """

        let body: HTML = """
            <h1>Overview</h1>
            <div id="overview-live" data-live="5">
            <p class="hint">Traffic of this gateway instance over the last hour (its requests to every inference endpoint); <span id="refreshed">refreshed every 5 seconds</span>.</p>
            \(tiles)
            \(charts)
            <h2>Queue by model</h2>
            \(queue)
            </div>
            """
        return viewer.page("Overview", .overview, body)
    }

    /// A tile: a figure with its label above and a line of detail under it.
    private func tile(_ label: String, _ value: String, _ sub: String) -> HTML {
        "<div class=\"tile\"><div class=\"label\">\(label)</div><div class=\"value\">\(value)</div><div class=\"sub\">\(sub)</div></div>"
    }
}
