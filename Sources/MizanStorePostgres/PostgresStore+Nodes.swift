import Foundation
import MizanCore
import MizanStore
import PostgresNIO

extension PostgresStore {
    public func createNode(_ node: Node, registrationTokenHash: Data) async throws -> Node {
        let rows = try await client.prepared(
            Key1.self,
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

    public func registerNode(
        registrationTokenHash: Data,
        nodeTokenHash: Data,
        report: NodeReport,
        now: Date
    ) async throws -> Node {
        let rows = try await client.prepared(
            Key2.self,
            """
            UPDATE mizan_nodes SET status = 'active', registration_token_hash = NULL, node_token_hash = \(nodeTokenHash),
                models = \(report.models), max_concurrency = \(max(1, report.maxConcurrency)), health = \(report.health.rawValue),
                in_flight = \(report.inFlight), labels = \(Rows.labels(report.labels)), last_seen = \(now),
                endpoints = \(report.endpoints.map(\.rawValue))
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

    public func heartbeat(_ id: NodeID, report: NodeReport, now: Date) async throws -> Node {
        let rows = try await client.prepared(
            Key3.self,
            """
            UPDATE mizan_nodes SET models = \(report.models), max_concurrency = \(max(1, report.maxConcurrency)),
                health = \(report.health.rawValue), in_flight = \(report.inFlight), labels = \(Rows.labels(report.labels)),
                last_seen = \(now), endpoints = \(report.endpoints.map(\.rawValue)),
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

    public func markConnected(_ id: NodeID, now: Date) async throws -> Node {
        let rows = try await client.prepared(
            Key8.self,
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

    public func markDisconnected(_ id: NodeID, unlessSeenAfter: Date?, now: Date) async throws -> Node? {
        try await client.prepared(
            Key9.self,
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

    public func revokeNode(_ id: NodeID, now: Date) async throws -> Node {
        let rows = try await client.prepared(
            Key4.self,
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

    public func nodes() async throws -> [Node] {
        try await client.prepared(
            Key5.self, "SELECT \(unescaped: Rows.nodeColumns) FROM mizan_nodes ORDER BY created_at, id", logger: logger, Rows.node)
    }

    public func node(_ id: NodeID) async throws -> Node? {
        try await client.prepared(
            Key6.self, "SELECT \(unescaped: Rows.nodeColumns) FROM mizan_nodes WHERE id = \(id.uuid)", logger: logger, Rows.node
        ).first
    }

    public func node(tokenHash: Data) async throws -> Node? {
        try await client.prepared(
            Key7.self, "SELECT \(unescaped: Rows.nodeColumns) FROM mizan_nodes WHERE node_token_hash = \(tokenHash)", logger: logger,
            Rows.node
        ).first
    }
}

// Marker types naming this file's prepared statements.
private enum Key1 {}
private enum Key2 {}
private enum Key3 {}
private enum Key4 {}
private enum Key5 {}
private enum Key6 {}
private enum Key7 {}
private enum Key8 {}
private enum Key9 {}
