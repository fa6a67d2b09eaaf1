import Foundation

/// How a node stands at a moment, as everything that shows or uses it says it: the admin API,
/// `mizan nodes list`, the console, the metrics, and the gateway deciding whether a request
/// may count on it. One function decides it (``of(_:now:staleAfter:)``), so that they never
/// disagree about the same node at the same moment.
public enum NodeCondition: String, Sendable, Codable, CaseIterable {
    /// Registered, connected, heard from lately, and its local server answers: it takes jobs.
    case healthy
    /// Registered, connected and heard from lately, but its local server does not answer. Jobs
    /// already queued for its models keep waiting (for it or another node); it leases none.
    case unhealthy
    /// Registered but not heard from for longer than the staleness limit (or never): not
    /// capacity; its leased jobs go back to the queue.
    case stale
    /// Its agent said goodbye, or its channel ended and it did not come back within the grace:
    /// not capacity; its leased jobs go back to the queue.
    case disconnected
    /// Created; its registration token was not exchanged yet.
    case pending
    /// Revoked by an operator.
    case revoked

    /// The condition of `node` at `now`.
    /// - Parameters:
    ///   - node: The node as stored.
    ///   - now: The moment.
    ///   - staleAfter: How long a node may go unheard before it counts as stale.
    /// - Returns: Its condition.
    public static func of(_ node: Node, now: Date, staleAfter: TimeInterval) -> NodeCondition {
        switch node.status {
        case .revoked: return .revoked
        case .pending: return .pending
        case .active:
            if node.disconnectedAt != nil { return .disconnected }
            guard let lastSeen = node.lastSeen, now.timeIntervalSince(lastSeen) <= staleAfter else { return .stale }
            return node.health == .unhealthy ? .unhealthy : .healthy
        }
    }

    /// Whether a request may count on the node now (it is ``healthy``).
    public var takesRequests: Bool { self == .healthy }

    /// Whether jobs queued for the node's models may still count on it: it is connected and
    /// heard from (``healthy``, or ``unhealthy`` for a moment: a busy or restarting local server).
    public var holdsQueue: Bool { self == .healthy || self == .unhealthy }
}
