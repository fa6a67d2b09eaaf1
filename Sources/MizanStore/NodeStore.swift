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

    /// Records a heartbeat: models, capacity, health, in-flight count and last-seen time. A
    /// heartbeat clears the node's ``Node/disconnectedAt`` unless its report says it is
    /// draining (then it is set, if it was not).
    /// - Parameters:
    ///   - id: The node.
    ///   - report: Its report.
    ///   - now: The current time.
    /// - Returns: The node after the write.
    /// - Throws: `MizanError` `nodeNotFound`, or `unauthorized` when revoked.
    func heartbeat(_ id: NodeID, report: NodeReport, now: Date) async throws -> Node

    /// Marks a node connected (its agent opened a channel): clears ``Node/disconnectedAt`` and
    /// records `now` as last seen.
    /// - Parameters:
    ///   - id: The node.
    ///   - now: The current time.
    /// - Returns: The node after the write.
    /// - Throws: `MizanError` `nodeNotFound`, or `unauthorized` when it is not active.
    func markConnected(_ id: NodeID, now: Date) async throws -> Node

    /// Marks an active node disconnected at `now` (its agent said goodbye, or its channel ended
    /// and it did not come back) — unless it was heard from after `unlessSeenAfter`: it came
    /// back meanwhile, perhaps through another gateway instance. A node marked already keeps
    /// its first time.
    /// - Parameters:
    ///   - id: The node.
    ///   - unlessSeenAfter: When its channel ended (`nil`: mark it whatever it did since).
    ///   - now: The current time.
    /// - Returns: The node when it is (now) disconnected, `nil` when it was heard from since.
    func markDisconnected(_ id: NodeID, unlessSeenAfter: Date?, now: Date) async throws -> Node?

    /// Takes back every job leased to one node (its agent is gone): each is requeued while
    /// attempts and its deadline allow, else failed as `node_lost` — as ``JobStore/recoverLeases(staleBefore:now:)``
    /// does for stale nodes.
    /// - Parameters:
    ///   - nodeID: The node.
    ///   - now: The current time.
    /// - Returns: The jobs changed.
    func recoverLeases(of nodeID: NodeID, now: Date) async throws -> [Job]

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
