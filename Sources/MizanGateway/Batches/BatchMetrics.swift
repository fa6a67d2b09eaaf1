import Metrics
import MizanCore

/// The batch runner's metrics: the batches this instance runs and their waiting lines (gauges,
/// set at each claim), lines ended by where they ran and how, batches ended by status.
struct BatchMetrics: Sendable {
    /// Sets the gauges from the batches this instance holds.
    func update(_ batches: [Batch]) {
        Gauge(label: "mizan_batches_running").record(batches.count)
        Gauge(label: "mizan_batch_lines_pending").record(batches.reduce(0) { $0 + $1.counts.pending })
    }

    /// Counts an ended line.
    func line(_ result: LineResult) {
        Counter(
            label: "mizan_batch_lines_total",
            dimensions: [("place", result.place.rawValue), ("result", result.succeeded ? "completed" : "failed")]
        ).increment()
    }

    /// Counts an ended batch.
    func ended(_ batch: Batch) {
        Counter(label: "mizan_batches_ended_total", dimensions: [("status", batch.status.rawValue)]).increment()
    }
}
