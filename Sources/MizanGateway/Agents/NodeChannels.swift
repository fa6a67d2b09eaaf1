import Foundation
import Logging
import MizanCore
import MizanDispatch
import Synchronization

/// The agent channels open on this gateway instance, by node, and what rides on them:
///
/// - **A few channels per node**, the newest winning: a node that opens one more than
///   ``maxPerNode`` has its oldest closed (an agent reconnecting leaves a half-dead one behind;
///   a hostile one cannot pile them up).
/// - **Disconnection noticed in seconds**: when a node's last channel here ends without a
///   goodbye, the node is disconnected after ``grace`` unless it came back (here or through
///   another instance), and the jobs leased to it go back to the queue then — not after the
///   heartbeat staleness. A goodbye disconnects it at once.
/// - **Aborts pushed**: the jobs leased over a node's channels are remembered until the node
///   reports them; when one ends without it (its client left, its deadline passed) the node
///   is told at once by an `abort` frame on its newest channel, so that it stops the local
///   server's work within moments instead of at its next heartbeat.
/// - **Revocation ends the node's channels.**
final class NodeChannels: Sendable {
    /// One open channel: how to send it a frame, and how to end it.
    struct Channel: Sendable {
        let id: Int
        let node: NodeID
        let push: @Sendable (AgentWire.ChannelFrame) -> Void
        let close: @Sendable () -> Void
    }

    private struct State {
        var channels: [Int: Channel] = [:]
        /// Each node's channels, oldest first.
        var byNode: [NodeID: [Int]] = [:]
        /// Disconnections waiting out their grace.
        var timers: [NodeID: Task<Void, Never>] = [:]
        /// Jobs leased over a channel and not reported yet: the node and attempt.
        var leases: [JobID: (node: NodeID, attempt: Int)] = [:]
        var nextID = 1
        var stopped = false
    }

    /// The most channels one node keeps open at once (4).
    let maxPerNode: Int
    /// How long a node whose channels all ended may take to come back before it is disconnected.
    let grace: Duration
    /// The most leases remembered for pushed aborts (older ones are left to the heartbeat).
    static let maxLeases = 100_000
    private let dispatcher: Dispatcher
    private let logger: Logger
    private let state = Mutex(State())

    init(dispatcher: Dispatcher, grace: Duration, maxPerNode: Int = 4, logger: Logger) {
        self.dispatcher = dispatcher
        self.grace = grace
        self.maxPerNode = max(1, maxPerNode)
        self.logger = logger
        dispatcher.onJobFinished { [weak self] id, _ in self?.jobFinished(id) }
        dispatcher.onNodeRevoked { [weak self] id in self?.revoke(id) }
    }

    /// Channels open now.
    var count: Int { state.withLock { $0.channels.count } }

    /// Registers a new channel of `node`, closing its oldest past ``maxPerNode``.
    /// - Returns: The channel's id.
    func open(
        node: NodeID, push: @escaping @Sendable (AgentWire.ChannelFrame) -> Void, close: @escaping @Sendable () -> Void
    ) -> Int {
        let (id, evicted, timer): (Int, [Channel], Task<Void, Never>?) = state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.channels[id] = Channel(id: id, node: node, push: push, close: close)
            state.byNode[node, default: []].append(id)
            var evicted: [Channel] = []
            while let ids = state.byNode[node], ids.count > maxPerNode, let oldest = ids.first {
                state.byNode[node]?.removeFirst()
                if let channel = state.channels.removeValue(forKey: oldest) { evicted.append(channel) }
            }
            return (id, evicted, state.timers.removeValue(forKey: node))
        }
        timer?.cancel()
        for channel in evicted {
            logger.info(
                "closed a node's oldest agent channel: it opened more than \(maxPerNode)", metadata: ["mizan.node.id": "\(node)"])
            channel.close()
        }
        return id
    }

    /// Forgets a channel that ended. When it was the node's last one here, the node is
    /// disconnected after the grace unless it comes back (or said goodbye: that disconnected it).
    /// - Parameters:
    ///   - id: The channel.
    ///   - saidGoodbye: Whether the node said goodbye on it.
    func closed(_ id: Int, saidGoodbye: Bool) {
        let closedAt = Date()
        let grace = grace
        let dispatcher = dispatcher
        let logger = logger
        state.withLock { state in
            guard let channel = state.channels.removeValue(forKey: id) else {
                // Evicted by a newer channel of the same node: that one stands.
                return
            }
            state.byNode[channel.node]?.removeAll { $0 == id }
            guard state.byNode[channel.node]?.isEmpty ?? true else { return }
            state.byNode[channel.node] = nil
            guard !saidGoodbye, !state.stopped else { return }
            let node = channel.node
            state.timers[node]?.cancel()
            state.timers[node] = Task {
                try? await Task.sleep(for: grace)
                guard !Task.isCancelled else { return }
                do {
                    try await dispatcher.disconnectNode(node, unlessSeenAfter: closedAt)
                } catch {
                    logger.warning(
                        "could not mark a node disconnected; it will go stale instead",
                        metadata: ["mizan.node.id": "\(node)", "mizan.error": "\(error)"])
                }
                self.state.withLock { state in
                    if state.timers[node].map({ $0.isCancelled }) == false { state.timers[node] = nil }
                }
            }
        }
    }

    /// Remembers jobs leased to `node` over a channel (to push their abort).
    func leased(_ jobs: [AgentWire.Assignment], to node: NodeID) {
        guard !jobs.isEmpty else { return }
        state.withLock { state in
            for job in jobs where state.leases.count < Self.maxLeases { state.leases[job.jobID] = (node, job.attempt) }
        }
    }

    /// Forgets a job the node reports (its own result or failure: nothing to push).
    func reported(_ jobID: JobID) {
        _ = state.withLock { $0.leases.removeValue(forKey: jobID) }
    }

    /// A job ended: when it was leased over a channel and the node has not reported it, the
    /// node is told to abort it.
    func jobFinished(_ jobID: JobID) {
        let target: (Channel, Int)? = state.withLock { state in
            guard let lease = state.leases.removeValue(forKey: jobID), let newest = state.byNode[lease.node]?.last,
                let channel = state.channels[newest]
            else { return nil }
            return (channel, lease.attempt)
        }
        guard let (channel, attempt) = target else { return }
        var frame = AgentWire.ChannelFrame(.abort, id: 0)
        frame.jobID = jobID
        frame.attempt = attempt
        channel.push(frame)
    }

    /// Closes every channel of a revoked node.
    func revoke(_ node: NodeID) {
        let channels = state.withLock { state in
            let ids = state.byNode.removeValue(forKey: node) ?? []
            state.timers.removeValue(forKey: node)?.cancel()
            return ids.compactMap { state.channels.removeValue(forKey: $0) }
        }
        for channel in channels { channel.close() }
    }

    /// Stops the grace timers (the gateway is shutting down: its nodes reconnect elsewhere or
    /// to the restarted gateway, and are not disconnected for it).
    func stop() {
        let timers = state.withLock { state in
            state.stopped = true
            defer { state.timers = [:] }
            return Array(state.timers.values)
        }
        for timer in timers { timer.cancel() }
    }
}
