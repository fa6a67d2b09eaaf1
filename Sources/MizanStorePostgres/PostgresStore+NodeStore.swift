import Foundation
import MizanCore
import MizanStore

/// The nodes, kept by the ``PostgresNodeRegistry``; a node's leases recovered by the ``PostgresJobQueue``.
extension PostgresStore: NodeStore {
    /// Records a pending node, awaiting registration.
    public func createNode(_ node: Node, registrationTokenHash: Data) async throws -> Node {
        try await nodeRegistry.createNode(node, registrationTokenHash: registrationTokenHash)
    }

    /// Activates the pending node holding the registration token.
    public func registerNode(registrationTokenHash: Data, nodeTokenHash: Data, report: NodeReport, now: Date) async throws -> Node {
        try await nodeRegistry.registerNode(
            registrationTokenHash: registrationTokenHash, nodeTokenHash: nodeTokenHash, report: report, now: now)
    }

    /// Records an active node's report and sign of life.
    public func heartbeat(_ id: NodeID, report: NodeReport, now: Date) async throws -> Node {
        try await nodeRegistry.heartbeat(id, report: report, now: now)
    }

    /// Records that an active node's agent is connected.
    public func markConnected(_ id: NodeID, now: Date) async throws -> Node {
        try await nodeRegistry.markConnected(id, now: now)
    }

    /// Records that an active node's agent is gone, unless it was seen after `unlessSeenAfter`.
    public func markDisconnected(_ id: NodeID, unlessSeenAfter: Date?, now: Date) async throws -> Node? {
        try await nodeRegistry.markDisconnected(id, unlessSeenAfter: unlessSeenAfter, now: now)
    }

    /// Requeues (or fails) the jobs leased to a node found gone.
    public func recoverLeases(of nodeID: NodeID, now: Date) async throws -> [Job] {
        try await jobQueue.recoverLeases(of: nodeID, now: now)
    }

    /// Revokes a node.
    public func revokeNode(_ id: NodeID, now: Date) async throws -> Node {
        try await nodeRegistry.revokeNode(id, now: now)
    }

    /// Every node, oldest first.
    public func nodes() async throws -> [Node] {
        try await nodeRegistry.nodes()
    }

    /// The node with `id`, if any.
    public func node(_ id: NodeID) async throws -> Node? {
        try await nodeRegistry.node(id)
    }

    /// The node holding the node token whose hash is given, if any.
    public func node(tokenHash: Data) async throws -> Node? {
        try await nodeRegistry.node(tokenHash: tokenHash)
    }
}
