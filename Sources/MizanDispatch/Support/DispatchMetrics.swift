import Foundation
import Metrics
import MizanCore

/// The engine's swift-metrics instruments. With no metrics backend bootstrapped they cost nothing.
struct DispatchMetrics: Sendable {
    private let acceptedCounter = Counter(label: "mizan_dispatch_jobs_accepted_total")
    private let outcomes: [JobState: Counter] = Dictionary(
        uniqueKeysWithValues: JobState.terminal.map {
            ($0, Counter(label: "mizan_dispatch_jobs_finished_total", dimensions: [("outcome", $0.rawValue)]))
        }
    )
    private let cancelledCounter = Counter(label: "mizan_dispatch_jobs_finished_total", dimensions: [("outcome", "cancelled")])
    private let pickup = Metrics.Timer(label: "mizan_dispatch_pickup_seconds", preferredDisplayUnit: .seconds)
    private let endToEnd = Metrics.Timer(label: "mizan_dispatch_job_duration_seconds", preferredDisplayUnit: .seconds)

    private let offers: [JobScheduling.Affinity: Counter] = Dictionary(
        uniqueKeysWithValues: JobScheduling.Affinity.allCases.map {
            ($0, Counter(label: "mizan_dispatch_affinity_offers_total", dimensions: [("affinity", $0.rawValue)]))
        })
    private let offerHits = Counter(label: "mizan_dispatch_affinity_leases_total", dimensions: [("result", "hit")])
    private let offerMisses = Counter(label: "mizan_dispatch_affinity_leases_total", dimensions: [("result", "miss")])
    private let spills = Counter(label: "mizan_dispatch_jobs_spilled_total")
    private let promotions = Counter(label: "mizan_dispatch_jobs_promoted_total")

    func accepted() { acceptedCounter.increment() }

    /// A new job was offered to one node first (`prefix`, `loaded`), or to every node (`none`).
    func offered(_ affinity: JobScheduling.Affinity) { offers[affinity]?.increment() }

    func spilled() { spills.increment() }

    func promoted(_ count: Int) { if count > 0 { promotions.increment(by: count) } }

    func leased(_ job: Job) {
        guard let leasedAt = job.leasedAt else { return }
        pickup.recordNanoseconds(Int64(max(0, leasedAt.timeIntervalSince(job.createdAt)) * 1e9))
        // An offer is a hit when the node it was made to took the job.
        if let preferred = job.scheduling.preferredNode, job.attempt == 1 {
            if preferred == job.nodeID { offerHits.increment() } else { offerMisses.increment() }
        }
    }

    func finished(_ job: Job) {
        guard job.state.isTerminal else { return }
        if job.errorCode == "cancelled" { cancelledCounter.increment() } else { outcomes[job.state]?.increment() }
        if let finishedAt = job.finishedAt {
            endToEnd.recordNanoseconds(Int64(max(0, finishedAt.timeIntervalSince(job.createdAt)) * 1e9))
        }
    }

    /// Nodes in each condition (`mizan_nodes{condition}`), as the admin API and the console say it.
    private let nodeGauges: [NodeCondition: Gauge] = Dictionary(
        uniqueKeysWithValues: NodeCondition.allCases.map { ($0, Gauge(label: "mizan_nodes", dimensions: [("condition", $0.rawValue)])) })

    func nodes(_ condition: NodeCondition) -> Gauge { nodeGauges[condition]! }

    func queueDepth(model: String) -> Gauge {
        Gauge(label: "mizan_dispatch_queue_depth", dimensions: [("model", model)])
    }
}
