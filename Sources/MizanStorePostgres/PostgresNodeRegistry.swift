import Foundation
import Logging
import MizanCore
import MizanStore
import PostgresNIO

/// The node registry: nodes' enrollment and registration, heartbeats, connection state and
/// revocation, and reading nodes. Each call is one statement (a refusal reads the node once
/// more to tell why). Jobs leased to a node are recovered by the job queue, which keeps the
/// node's `leased` count with the jobs.
struct PostgresNodeRegistry: Sendable {
    private let context: PostgresStoreContext
    private var client: StoreClient { context.client }
    private var logger: Logger { context.logger }

    /// Creates the registry over the store's shared context.
    init(context: PostgresStoreContext) {
        self.context = context
    }

    /// Records a pending node, awaiting registration with the token whose hash is given.
    func createNode(_ node: Node, registrationTokenHash: Data) async throws -> Node {
        let rows = try await client.prepared(
            CreateNode.self,
            """
            INSERT INTO mizan_nodes (id, name, models, max_concurrency, labels, status, health, in_flight,
                registration_token_hash, last_seen, created_at, endpoints)
            VALUES (\(node.id.uuid), \(node.name), \(node.models), \(node.maxConcurrency), \(Rows.labels(node.labels)),
                'pending', \(node.health.rawValue), 0, \(registrationTokenHash), \(node.lastSeen), \(node.createdAt),
                \(node.endpoints.map(\.rawValue)))
            ON CONFLICT (id) DO NOTHING
            RETURNING \(unescaped: Rows.nodeColumns)
            """,
            logger: logger, Rows.node
        )
        guard let created = rows.first else { throw MizanError(.conflict, "A node with id \(node.id) exists.") }
        return created
    }

    /// Activates the pending node holding the registration token, with its report and node token.
    func registerNode(
        registrationTokenHash: Data,
        nodeTokenHash: Data,
        report: NodeReport,
        now: Date
    ) async throws -> Node {
        let rows = try await client.prepared(
            RegisterNode.self,
            """
            UPDATE mizan_nodes SET status = 'active', registration_token_hash = NULL, node_token_hash = \(nodeTokenHash),
                models = \(report.models), max_concurrency = \(max(1, report.maxConcurrency)), health = \(report.health.rawValue),
                in_flight = \(report.inFlight), labels = \(Rows.labels(report.labels)), last_seen = \(now),
                endpoints = \(report.endpoints.map(\.rawValue)), loaded_models = \(report.loadedModels ?? [])
            WHERE registration_token_hash = \(registrationTokenHash) AND status = 'pending'
            RETURNING \(unescaped: Rows.nodeColumns)
            """,
            logger: logger, Rows.node
        )
        guard let node = rows.first else {
            throw MizanError(.invalidNodeToken, "The registration token is invalid or was already used.")
        }
        return node
    }

    /// Records an active node's report and sign of life.
    func heartbeat(_ id: NodeID, report: NodeReport, now: Date) async throws -> Node {
        let rows = try await client.prepared(
            Heartbeat.self,
            """
            UPDATE mizan_nodes SET models = \(report.models), max_concurrency = \(max(1, report.maxConcurrency)),
                health = \(report.health.rawValue), in_flight = \(report.inFlight), labels = \(Rows.labels(report.labels)),
                last_seen = \(now), endpoints = \(report.endpoints.map(\.rawValue)), loaded_models = \(report.loadedModels ?? []),
                disconnected_at = CASE WHEN \(report.draining) THEN coalesce(disconnected_at, \(now)) ELSE NULL END
            WHERE id = \(id.uuid) AND status = 'active'
            RETURNING \(unescaped: Rows.nodeColumns)
            """,
            logger: logger, Rows.node
        )
        if let node = rows.first { return node }
        guard try await node(id) != nil else { throw MizanError(.nodeNotFound, "No node with id \(id).") }
        throw MizanError(.invalidNodeToken, "The node is not active.")
    }

    /// Records that an active node's agent is connected.
    func markConnected(_ id: NodeID, now: Date) async throws -> Node {
        let rows = try await client.prepared(
            MarkConnected.self,
            """
            UPDATE mizan_nodes SET disconnected_at = NULL, last_seen = \(now)
            WHERE id = \(id.uuid) AND status = 'active'
            RETURNING \(unescaped: Rows.nodeColumns)
            """,
            logger: logger, Rows.node
        )
        if let node = rows.first { return node }
        guard try await node(id) != nil else { throw MizanError(.nodeNotFound, "No node with id \(id).") }
        throw MizanError(.invalidNodeToken, "The node is not active.")
    }

    /// Records that an active node's agent is gone, unless it was seen after `unlessSeenAfter`.
    /// - Returns: The node, or `nil` when nothing changed (unknown, inactive, or seen since).
    func markDisconnected(_ id: NodeID, unlessSeenAfter: Date?, now: Date) async throws -> Node? {
        try await client.prepared(
            MarkDisconnected.self,
            """
            UPDATE mizan_nodes SET disconnected_at = coalesce(disconnected_at, \(now))
            WHERE id = \(id.uuid) AND status = 'active'
                AND (disconnected_at IS NOT NULL OR \(unlessSeenAfter)::timestamptz IS NULL
                    OR last_seen IS NULL OR last_seen <= \(unlessSeenAfter))
            RETURNING \(unescaped: Rows.nodeColumns)
            """,
            logger: logger, Rows.node
        ).first
    }

    /// Revokes a node: its tokens no longer work.
    func revokeNode(_ id: NodeID, now: Date) async throws -> Node {
        let rows = try await client.prepared(
            RevokeNode.self,
            """
            UPDATE mizan_nodes SET status = 'revoked', registration_token_hash = NULL
            WHERE id = \(id.uuid)
            RETURNING \(unescaped: Rows.nodeColumns)
            """,
            logger: logger, Rows.node
        )
        guard let node = rows.first else { throw MizanError(.nodeNotFound, "No node with id \(id).") }
        return node
    }

    /// Every node, oldest first.
    func nodes() async throws -> [Node] {
        try await client.prepared(
            ListNodes.self, "SELECT \(unescaped: Rows.nodeColumns) FROM mizan_nodes ORDER BY created_at, id", logger: logger, Rows.node)
    }

    /// The node with `id`, if any.
    func node(_ id: NodeID) async throws -> Node? {
        try await client.prepared(
            NodeByID.self, "SELECT \(unescaped: Rows.nodeColumns) FROM mizan_nodes WHERE id = \(id.uuid)", logger: logger, Rows.node
        ).first
    }

    /// The node holding the node token whose hash is given, if any.
    func node(tokenHash: Data) async throws -> Node? {
        try await client.prepared(
            NodeByTokenHash.self, "SELECT \(unescaped: Rows.nodeColumns) FROM mizan_nodes WHERE node_token_hash = \(tokenHash)",
            logger: logger, Rows.node
        ).first
    }
}

// Marker types naming this file's prepared statements.
private enum CreateNode {}
private enum RegisterNode {}
private enum Heartbeat {}
private enum RevokeNode {}
private enum ListNodes {}
private enum NodeByID {}
private enum NodeByTokenHash {}
private enum MarkConnected {}
private enum MarkDisconnected {}
