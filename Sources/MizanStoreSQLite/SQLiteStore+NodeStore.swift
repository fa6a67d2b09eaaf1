import Foundation
import MizanCore
import MizanStore

/// The nodes, answered by the node registry (``SQLiteNodeRegistry``); a node's leases taken
/// back by the job queue.
extension SQLiteStore {
    /// Records a pending node, registered later with its registration token.
    public func createNode(_ node: Node, registrationTokenHash: Data) async throws -> Node {
        try await nodeRegistry.createNode(node, registrationTokenHash: registrationTokenHash)
    }

    /// Activates the pending node of a registration token, with its node token and report.
    public func registerNode(registrationTokenHash: Data, nodeTokenHash: Data, report: NodeReport, now: Date) async throws -> Node {
        try await nodeRegistry.registerNode(
            registrationTokenHash: registrationTokenHash, nodeTokenHash: nodeTokenHash, report: report, now: now)
    }

    /// Records an active node's report.
    public func heartbeat(_ id: NodeID, report: NodeReport, now: Date) async throws -> Node {
        try await nodeRegistry.heartbeat(id, report: report, now: now)
    }

    /// Marks an active node connected.
    public func markConnected(_ id: NodeID, now: Date) async throws -> Node {
        try await nodeRegistry.markConnected(id, now: now)
    }

    /// Marks an active node disconnected, unless it was seen after `unlessSeenAfter`.
    public func markDisconnected(_ id: NodeID, unlessSeenAfter: Date?, now: Date) async throws -> Node? {
        try await nodeRegistry.markDisconnected(id, unlessSeenAfter: unlessSeenAfter, now: now)
    }

    /// Takes back the leases of one node.
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

    /// The node with `id`.
    public func node(_ id: NodeID) async throws -> Node? {
        try await nodeRegistry.node(id)
    }

    /// The node whose token has `tokenHash`.
    public func node(tokenHash: Data) async throws -> Node? {
        try await nodeRegistry.node(tokenHash: tokenHash)
    }
}
