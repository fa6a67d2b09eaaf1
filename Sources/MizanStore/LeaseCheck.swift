import MizanCore

/// Explains why a completion does not match a job's current lease.
public enum LeaseCheck {
    /// The refusal for completing `job` under `lease`, or `nil` when the lease is current.
    /// - Parameters:
    ///   - lease: The lease presented.
    ///   - job: The job as stored.
    /// - Returns: A `leaseConflict` error naming the reason, or `nil`.
    public static func refusal(for lease: Lease, job: Job) -> MizanError? {
        if job.state.isTerminal {
            return MizanError(.leaseConflict, "Job \(job.id) already finished as \(job.state).")
        }
        if lease.attempt != job.attempt {
            return MizanError(
                .leaseConflict, "Lease attempt \(lease.attempt) of job \(job.id) is stale; the current attempt is \(job.attempt).")
        }
        if job.state != .leased {
            return MizanError(.leaseConflict, "Job \(job.id) is not leased.")
        }
        if job.nodeID != lease.nodeID {
            return MizanError(.leaseConflict, "Job \(job.id) is leased by another node.")
        }
        return nil
    }
}

extension JobStateMachine {
    /// The states from which `transition` is allowed, as a SQL list (`'accepted', 'leased'`):
    /// the guard of every conditional write in the SQL stores, taken from the one table.
    public static func sqlSources(of transition: JobTransition) -> String {
        sources(of: transition).map { "'\($0.rawValue)'" }.joined(separator: ", ")
    }
}
