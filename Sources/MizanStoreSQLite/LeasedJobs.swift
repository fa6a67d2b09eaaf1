import Foundation
import MizanCore
import Synchronization

/// The jobs this store has leased, as their lease's selection read them, until a completion
/// takes them: a completion of a kept job then updates its row by its row number and returns
/// nothing, and the job is the kept one with the completion applied, instead of every column of
/// every completed row copied off the one writer and read into a job again.
///
/// Nothing else changes a leased job's row without changing its state, attempt or node, which
/// the completion's fence checks: when the fenced update applies, the kept job is the row as it
/// was. A job not kept (leased before a restart, or past the bounds) is completed as before.
///
/// A kept job's completion holds it until its write is done (``release(_:)``): a second success
/// of the same lease meanwhile is refused here. So a row that is found succeeded under the lease
/// after the completion's update can only have been succeeded by that update — what a batch
/// whose update changed fewer rows than it had completions relies on to tell which applied.
/// Bounded by ``limit`` jobs and ``byteLimit`` bytes of their bodies: past either it starts
/// again, keeping only the jobs being completed (a job kept whose lease ended another way —
/// expired, cancelled — goes then).
package final class LeasedJobs: Sendable {
    /// A job kept under its lease, with its row number.
    struct Kept: Sendable {
        let leased: LeasedJob
        let seq: Int
        /// A completion took it and its write is not done.
        var completing = false
    }

    /// What a success's completion finds for its lease.
    package enum Taken: Sendable {
        /// The job as leased, and its row number: this completion holds it until released.
        case kept(Job, seq: Int)
        /// Another completion of the same lease holds it.
        case completing
        /// Not kept: the completion reads the row.
        case none
    }

    private struct State {
        /// Each job under its one current lease (``LeasedJob/lease``).
        var jobs: [JobID: Kept] = [:]
        var bytes = 0
    }

    /// The most jobs kept.
    static var limit: Int { 20_000 }
    /// The most bytes of bodies kept.
    static var byteLimit: Int { 64 << 20 }

    private let state = Mutex(State())

    /// An empty cache.
    package init() {}

    /// Keeps the jobs a lease selected, with their row numbers.
    package func keep(_ leased: [(LeasedJob, seq: Int)]) {
        state.withLock { state in
            for (item, seq) in leased {
                if state.jobs.count >= Self.limit || state.bytes + item.job.body.count > Self.byteLimit {
                    state.jobs = state.jobs.filter(\.value.completing)
                    state.bytes = state.jobs.values.reduce(0) { $0 + $1.leased.job.body.count }
                }
                if let earlier = state.jobs.updateValue(Kept(leased: item, seq: seq), forKey: item.job.id) {
                    state.bytes -= earlier.leased.job.body.count
                }
                state.bytes += item.job.body.count
            }
        }
    }

    /// Takes the job kept under `lease` for a success's completion, which holds it until
    /// ``release(_:)`` (a job kept under another lease stays).
    package func take(_ lease: Lease) -> Taken {
        state.withLock { state in
            guard let kept = state.jobs[lease.jobID], kept.leased.lease == lease else { return .none }
            if kept.completing { return .completing }
            state.jobs[lease.jobID]?.completing = true
            return .kept(kept.leased.job, seq: kept.seq)
        }
    }

    /// Lets go of the jobs completions took (``take(_:)``), once their write is done.
    package func release(_ leases: [Lease]) {
        guard !leases.isEmpty else { return }
        state.withLock { state in
            for lease in leases {
                guard let kept = state.jobs[lease.jobID], kept.leased.lease == lease, kept.completing else { continue }
                state.jobs[lease.jobID] = nil
                state.bytes -= kept.leased.job.body.count
            }
        }
    }

    /// Forgets the job kept for `id`, under whatever lease, unless a completion holds it (that
    /// completion lets it go).
    package func forget(_ id: JobID) {
        state.withLock { state in
            guard let kept = state.jobs[id], !kept.completing else { return }
            state.jobs[id] = nil
            state.bytes -= kept.leased.job.body.count
        }
    }
}
