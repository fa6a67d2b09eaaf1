import Foundation
import MizanCore
import Synchronization

/// The jobs this store has leased, as their lease's statement returned them, until a
/// completion takes them: a completion of a kept job then has its statement return only the
/// ids it updated, and the job is the kept one with the completion applied, instead of every
/// column of every completed row copied off the one writer and read into a job again.
///
/// Nothing else changes a leased job's row without changing its state, attempt or node, which
/// the completion's fence checks: when the fenced update applies, the kept job is the row as it
/// was. A job not kept (leased before a restart, or past the bounds) is completed as before.
/// Bounded by ``limit`` jobs and ``byteLimit`` bytes of their bodies: past either it starts
/// again (a job kept whose lease ended another way — expired, cancelled — goes then).
final class LeasedJobs: Sendable {
    private struct State {
        /// Each job under its one current lease (``LeasedJob/lease``).
        var jobs: [JobID: LeasedJob] = [:]
        var bytes = 0
    }

    /// The most jobs kept.
    static var limit: Int { 20_000 }
    /// The most bytes of bodies kept.
    static var byteLimit: Int { 64 << 20 }

    private let state = Mutex(State())

    /// Keeps the jobs a lease returned.
    func keep(_ leased: [LeasedJob]) {
        state.withLock { state in
            for item in leased {
                if state.jobs.count >= Self.limit || state.bytes + item.job.body.count > Self.byteLimit { state = State() }
                if let earlier = state.jobs.updateValue(item, forKey: item.job.id) { state.bytes -= earlier.job.body.count }
                state.bytes += item.job.body.count
            }
        }
    }

    /// Takes the job kept under `lease`, if any (a job kept under another lease stays).
    func take(_ lease: Lease) -> Job? {
        state.withLock { state in
            guard let item = state.jobs[lease.jobID], item.lease == lease else { return nil }
            state.jobs[lease.jobID] = nil
            state.bytes -= item.job.body.count
            return item.job
        }
    }

    /// Forgets the job kept for `id`, under whatever lease.
    func forget(_ id: JobID) {
        state.withLock { state in
            guard let item = state.jobs.removeValue(forKey: id) else { return }
            state.bytes -= item.job.body.count
        }
    }
}

/// When a lease last wrote each node's last-seen time: a lease writes it when a second has
/// passed (or the clock went back), so that a node leasing in a loop does not write its row at
/// every lease. Bounded: past 10,000 nodes it starts again.
final class NodesSeen: Sendable {
    private let written = Mutex<[NodeID: Date]>([:])

    /// Whether a lease of `node` at `now` writes its last-seen time (then counted as written).
    func due(_ node: NodeID, now: Date) -> Bool {
        written.withLock { written in
            if let last = written[node], (0..<1).contains(now.timeIntervalSince(last)) { return false }
            if written.count >= 10_000 { written = [:] }
            written[node] = now
            return true
        }
    }
}
