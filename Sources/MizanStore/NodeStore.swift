import Foundation
import MizanCore

/// Durable registry of agent nodes. Secrets are kept only as hashes; stores never see tokens.
public protocol NodeStore: Sendable {
    /// Stores a new `pending` node with the hash of its one-time registration token.
    /// - Parameters:
    ///   - node: The node.
    ///   - registrationTokenHash: SHA-256 of the registration token.
    /// - Returns: The stored node.
    func createNode(_ node: Node, registrationTokenHash: Data) async throws -> Node

    /// Exchanges a registration token (once) for a node token: the node becomes `active`,
    /// the registration hash is cleared and the node-token hash stored.
    /// - Parameters:
    ///   - registrationTokenHash: SHA-256 of the registration token presented.
    ///   - nodeTokenHash: SHA-256 of the new node token.
    ///   - report: What the node reports about itself.
    ///   - now: The current time.
    /// - Returns: The active node.
    /// - Throws: `MizanError` `unauthorized` when no pending node has that token.
    func registerNode(registrationTokenHash: Data, nodeTokenHash: Data, report: NodeReport, now: Date) async throws -> Node

    /// Records a heartbeat: models, capacity, health, in-flight count and last-seen time.
    /// - Parameters:
    ///   - id: The node.
    ///   - report: Its report.
    ///   - now: The current time.
    /// - Returns: The node after the write.
    /// - Throws: `MizanError` `nodeNotFound`, or `unauthorized` when revoked.
    func heartbeat(_ id: NodeID, report: NodeReport, now: Date) async throws -> Node

    /// Revokes a node. Its token stops working; its leases are recovered by the sweeper.
    /// - Parameters:
    ///   - id: The node.
    ///   - now: The current time.
    /// - Returns: The revoked node.
    /// - Throws: `MizanError` `nodeNotFound`.
    func revokeNode(_ id: NodeID, now: Date) async throws -> Node

    /// Lists every node, oldest first.
    /// - Returns: The nodes.
    func nodes() async throws -> [Node]

    /// Reads one node.
    /// - Parameter id: The node id.
    /// - Returns: The node, or `nil`.
    func node(_ id: NodeID) async throws -> Node?

    /// Finds the node whose node token hashes to `tokenHash`.
    /// - Parameter tokenHash: SHA-256 of a node token.
    /// - Returns: The node, or `nil`.
    func node(tokenHash: Data) async throws -> Node?
}

/// Everything the dispatcher needs from storage.
public protocol DispatchStore: JobStore, NodeStore {
    /// Checks that the store can be reached (for readiness probes).
    /// - Throws: When it cannot.
    func ping() async throws
}

extension DispatchStore {
    /// Stores that are always reachable answer at once.
    public func ping() async throws {}
}

extension DispatchStore where Self == InMemoryStore {
    /// A new empty in-memory store: `Dispatcher(store: .memory())`.
    public static func memory() -> InMemoryStore { InMemoryStore() }
}
