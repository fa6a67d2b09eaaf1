import Foundation
import Logging
import MizanCore
import MizanStore

/// A node created by an operator, with the registration token to hand to its agent once.
public struct NodeEnrollment: Sendable {
    /// The pending node.
    public var node: Node
    /// The one-time registration token; it is not stored and cannot be shown again.
    public var registrationToken: String
}

/// A registered node with its bearer token.
public struct NodeRegistration: Sendable {
    /// The active node.
    public var node: Node
    /// The node token for all later agent calls; it is not stored and cannot be shown again.
    public var nodeToken: String
}

/// The answer to a heartbeat.
public struct HeartbeatAnswer: Sendable, Equatable {
    /// The node as stored.
    public var node: Node
    /// Leases the node reported running that are no longer current (cancelled, timed out or
    /// requeued): it should abort them.
    public var abort: [Lease]
}

extension Dispatcher {
    /// Creates a pending node and its one-time registration token.
    /// - Parameters:
    ///   - name: A human name.
    ///   - labels: Free-form labels.
    /// - Returns: The node and its registration token.
    public func createNode(name: String, labels: [String: String] = [:]) async throws -> NodeEnrollment {
        let token = Secrets.generate(prefix: "mzn_reg_")
        let node = try await store.createNode(
            Node(name: name, labels: labels, createdAt: now()),
            registrationTokenHash: Secrets.hash(token)
        )
        logger.info("node created", metadata: ["mizan.node.id": "\(node.id)", "mizan.node.name": "\(name)"])
        return NodeEnrollment(node: node, registrationToken: token)
    }

    /// Exchanges a one-time registration token for a node token.
    /// - Parameters:
    ///   - registrationToken: The token from ``createNode(name:labels:)``.
    ///   - report: What the node serves.
    /// - Returns: The active node and its node token.
    /// - Throws: `MizanError` `unauthorized` when the token is unknown or used.
    public func register(registrationToken: String, report: NodeReport) async throws -> NodeRegistration {
        let nodeToken = Secrets.generate(prefix: "mzn_node_")
        let node = try await store.registerNode(
            registrationTokenHash: Secrets.hash(registrationToken),
            nodeTokenHash: Secrets.hash(nodeToken),
            report: report,
            now: now()
        )
        forgetNode(node.id)
        nameNode(node)
        logger.info(
            "node registered", metadata: ["mizan.node.id": "\(node.id)", "mizan.node.models": "\(node.models.joined(separator: ","))"])
        return NodeRegistration(node: node, nodeToken: nodeToken)
    }

    /// Finds the active node a bearer token belongs to.
    /// - Parameter token: The node token.
    /// - Returns: The node.
    /// - Throws: `MizanError` `unauthorized` for an unknown token or a revoked node.
    ///
    /// An active node is remembered for ``Configuration/cacheLifetime`` so that
    /// a node's calls do not each cost a store lookup; its heartbeat and its revocation through
    /// this engine forget it at once.
    public func authenticateNode(token: String) async throws -> Node {
        let hash = Secrets.hash(token)
        if let node = activeNodes.value(for: hash) { return node }
        guard let node = try await store.node(tokenHash: hash) else {
            throw MizanError(.invalidNodeToken, "Invalid node token.")
        }
        guard node.status == .active else {
            throw MizanError(.invalidNodeToken, "The node was revoked.")
        }
        activeNodes.set(node, for: hash)
        nameNode(node)
        return node
    }

    /// Records a heartbeat and tells the node which of its jobs to abort.
    /// - Parameters:
    ///   - nodeID: The authenticated node.
    ///   - report: Its report.
    ///   - running: The leases it is running.
    /// - Returns: The stored node and the leases to abort.
    ///
    /// A lease the node has held for longer than ``Configuration/unreportedLeaseGrace`` but
    /// does not list in `running` never reached it (the answer to its lease call was lost on the
    /// way): the job is taken back and requeued for another attempt, or failed with
    /// `lease_lost` when none is left. A node must therefore list every job it runs.
    public func heartbeat(nodeID: NodeID, report: NodeReport, running: [Lease] = []) async throws -> HeartbeatAnswer {
        let node = try await store.heartbeat(nodeID, report: report, now: now())
        forgetNode(nodeID)
        nameNode(node)
        // One read serves both directions: what the node runs that is no longer its lease
        // (abort), and what is leased to it that it does not run (take back).
        let held = try await store.leasedJobs(nodeID: nodeID)
        let current = Set(held.compactMap(\.lease))
        try await takeBackUnreportedLeases(held, running: running)
        return HeartbeatAnswer(node: node, abort: running.filter { !current.contains($0) })
    }

    /// Requeues (or fails) the leases held longer than the grace that the node did not report.
    func takeBackUnreportedLeases(_ held: [Job], running: [Lease]) async throws {
        let reported = Set(running.map(\.jobID))
        let cutoff = now().addingTimeInterval(-configuration.unreportedLeaseGrace.timeInterval)
        for job in held where !reported.contains(job.id) {
            guard let lease = job.lease, let leasedAt = job.leasedAt, leasedAt < cutoff else { continue }
            let message = "The node never reported running the job (its lease was lost on the way)."
            do {
                let after = try await store.complete(
                    lease, with: .failed(code: JobErrorCode.leaseLost, message: message, retryable: true), now: now()
                )
                waiters.deliver(CollectionOfOne(after))
                logger.warning(
                    "took back a lease the node never reported",
                    metadata: [
                        "mizan.node.id": "\(lease.nodeID)", "mizan.job.id": "\(job.id)", "mizan.job.state": "\(after.state.rawValue)",
                    ]
                )
            } catch let error as MizanError where error.code == .leaseConflict || error.code == .jobNotFound {
                // Finished or moved on meanwhile: nothing to take back.
            }
        }
    }

    /// Records that a node's agent connected (it opened a channel): it is no longer
    /// disconnected, and counts as seen now.
    /// - Parameter id: The authenticated node.
    /// - Returns: The node after the write.
    @discardableResult
    public func markConnected(_ id: NodeID) async throws -> Node {
        let node = try await store.markConnected(id, now: now())
        forgetNode(id)
        return node
    }

    /// Records that a node's agent is gone: it said goodbye (`unlessSeenAfter` `nil`), or its
    /// channel ended at `unlessSeenAfter` and it did not come back (through any instance) since.
    /// The node stops counting as capacity and the jobs leased to it go back to the queue at
    /// once (or fail as `node_lost` when no attempt is left), without waiting for it to go stale.
    /// - Parameters:
    ///   - id: The node.
    ///   - unlessSeenAfter: When its channel ended; `nil` when it said goodbye.
    /// - Returns: The jobs taken back, or `nil` when the node came back meanwhile.
    @discardableResult
    public func disconnectNode(_ id: NodeID, unlessSeenAfter: Date?) async throws -> [Job]? {
        guard try await store.markDisconnected(id, unlessSeenAfter: unlessSeenAfter, now: now()) != nil else { return nil }
        forgetNode(id)
        let taken = try await store.recoverLeases(of: id, now: now())
        waiters.deliver(taken)
        for job in taken where job.state.isTerminal { metrics.finished(job) }
        logger.info(
            unlessSeenAfter == nil ? "node said goodbye" : "node disconnected",
            metadata: ["mizan.node.id": "\(id)", "mizan.jobs.taken_back": "\(taken.count)"])
        return taken
    }

    /// How a node stands now: the one decision behind the admin API, the console, the metrics
    /// and whether requests count on it (``isHealthy(_:now:)``).
    /// - Parameters:
    ///   - node: The node as read from the store.
    ///   - now: The moment (the engine's clock by default).
    /// - Returns: Its condition.
    public func condition(of node: Node, now: Date? = nil) -> NodeCondition {
        NodeCondition.of(node, now: now ?? self.now(), staleAfter: configuration.nodeStaleAfter.timeInterval)
    }

    /// Revokes a node: its token stops working and the sweeper requeues its jobs.
    /// - Parameter id: The node.
    /// - Returns: The revoked node.
    /// - Throws: `MizanError` `nodeNotFound`.
    @discardableResult
    public func revokeNode(_ id: NodeID) async throws -> Node {
        let node = try await store.revokeNode(id, now: now())
        forgetNode(id)
        streams.revoke(node: id)
        for handler in revocationHandlers.withLock({ $0 }) { handler(id) }
        logger.info("node revoked", metadata: ["mizan.node.id": "\(id)"])
        return node
    }

    /// Lists every node, as the store has it now.
    /// - Returns: The nodes, oldest first.
    public func nodes() async throws -> [Node] {
        let nodes = try await store.nodes()
        nodeList.set(nodes, for: 0)
        for node in nodes { nameNode(node) }
        return nodes
    }

    /// Lists every node as read within ``Configuration/cacheLifetime``: for decisions taken on
    /// every request (is there capacity for a model?). A heartbeat, registration or revocation
    /// through this engine makes the next call read the store again.
    /// - Returns: The nodes, oldest first.
    public func recentNodes() async throws -> [Node] {
        if let nodes = nodeList.value(for: 0) { return nodes }
        return try await nodes()
    }

    /// A node from the list ``recentNodes()`` keeps, without reading the store: `nil` when the
    /// list is not kept right now or does not hold it.
    /// - Parameter id: The node's id.
    /// - Returns: The node as last read.
    public func recentNode(_ id: NodeID) -> Node? {
        nodeList.value(for: 0)?.first { $0.id == id }
    }

    /// A node's name as this instance last saw it (registration, authentication, heartbeat or a
    /// read of the list), without reading the store: for naming who served an answer.
    /// - Parameter id: The node's id.
    /// - Returns: Its name, or `nil` when this instance has not seen the node.
    public func nodeName(_ id: NodeID) -> String? {
        nodeNames.withLock { $0[id] }
    }

    /// Remembers a node's name (one entry per node: bounded by the nodes the store holds).
    func nameNode(_ node: Node) {
        nodeNames.withLock { names in
            if names[node.id] != node.name { names[node.id] = node.name }
        }
    }

    /// Drops what is remembered about a node that changed.
    func forgetNode(_ id: NodeID) {
        activeNodes.removeAll { $0.id == id }
        nodeList.removeAll()
    }
}
