import MizanCore

/// How the agent judges its handler from health checks and its jobs' progress, so that a busy
/// local server stays in service and a dead one leaves it at once.
///
/// Many local servers answer nothing else while they generate (llama-cpp-python, llama.cpp's
/// `llama-server` with one slot, LM Studio): a health check that fails while one of the node's
/// jobs made progress in the last moments means *busy*, not down. The rules, checked in order:
///
/// | check | a job progressed lately | verdict | node reports | leases |
/// | --- | --- | --- | --- | --- |
/// | answers | — | healthy | healthy | yes |
/// | connection refused | — | unhealthy (at once) | unhealthy | no |
/// | slow or an error | yes | busy | healthy | yes |
/// | slow or an error | no, failing for less than the grace | suspect | healthy | no |
/// | slow or an error | no, failing for the grace or longer | unhealthy | unhealthy | no |
///
/// A suspect node keeps its place (the gateway keeps counting on it, and jobs queued for its
/// models wait) but takes no new job until its server answers again or the grace runs out.
struct HandlerHealth: Sendable, Equatable {
    /// What the agent makes of its handler now.
    enum Verdict: String, Sendable, Equatable {
        case healthy, busy, suspect, unhealthy
    }

    /// The verdict (unhealthy until the first check).
    private(set) var verdict: Verdict = .unhealthy
    /// Since when checks fail without progress.
    private var failingSince: ContinuousClock.Instant?
    /// How long checks may fail without progress before the handler counts as unhealthy.
    let grace: Duration

    init(grace: Duration) {
        self.grace = grace
    }

    /// What the node reports to the gateway.
    var reported: Node.Health { verdict == .unhealthy ? .unhealthy : .healthy }

    /// Whether the node takes new jobs.
    var leases: Bool { verdict == .healthy || verdict == .busy }

    /// Takes in one check.
    /// - Parameters:
    ///   - healthy: Whether the check answered as healthy.
    ///   - refused: When not, whether the server refused the connection.
    ///   - progressed: Whether a job of the node made progress lately.
    ///   - now: The check's time.
    /// - Returns: The verdict after it.
    @discardableResult
    mutating func record(healthy: Bool, refused: Bool, progressed: Bool, at now: ContinuousClock.Instant) -> Verdict {
        if healthy {
            failingSince = nil
            verdict = .healthy
        } else if refused {
            failingSince = failingSince ?? now
            verdict = .unhealthy
        } else if progressed {
            failingSince = nil
            verdict = .busy
        } else {
            let since = failingSince ?? now
            failingSince = since
            verdict = now - since >= grace ? .unhealthy : .suspect
        }
        return verdict
    }
}
