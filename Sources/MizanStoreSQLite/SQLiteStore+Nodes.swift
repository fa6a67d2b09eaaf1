import Foundation
import MizanCore
import MizanStore

extension SQLiteStore {
    public func createNode(_ node: Node, registrationTokenHash: Data) async throws -> Node {
        try await write { db in
            let rows = try db.query(
                """
                INSERT INTO mizan_nodes (id, name, models, max_concurrency, labels, status, health, in_flight,
                    registration_token_hash, last_seen, created_at, endpoints)
                VALUES (?, ?, ?, ?, ?, 'pending', ?, 0, ?, ?, ?, ?)
                ON CONFLICT (id) DO NOTHING
                RETURNING \(Rows.nodeColumns)
                """,
                [
                    Rows.id(node.id), .text(node.name), Rows.json(node.models), .integer(node.maxConcurrency), Rows.json(node.labels),
                    .text(node.health.rawValue), Rows.blob(registrationTokenHash), Rows.date(node.lastSeen), Rows.date(node.createdAt),
                    Rows.endpoints(node.endpoints),
                ]
            )
            guard let created = try rows.first.map(Rows.node) else { throw MizanError(.conflict, "A node with id \(node.id) exists.") }
            return (created, [])
        }
    }

    public func registerNode(registrationTokenHash: Data, nodeTokenHash: Data, report: NodeReport, now: Date) async throws -> Node {
        try await write { db in
            let rows = try db.query(
                """
                UPDATE mizan_nodes SET status = 'active', registration_token_hash = NULL, node_token_hash = ?,
                    models = ?, max_concurrency = ?, health = ?, in_flight = ?, labels = ?, last_seen = ?, endpoints = ?
                WHERE registration_token_hash = ? AND status = 'pending'
                RETURNING \(Rows.nodeColumns)
                """,
                [
                    Rows.blob(nodeTokenHash), Rows.json(report.models), .integer(max(1, report.maxConcurrency)),
                    .text(report.health.rawValue), .integer(report.inFlight), Rows.json(report.labels), Rows.date(now),
                    Rows.endpoints(report.endpoints), Rows.blob(registrationTokenHash),
                ]
            )
            guard let node = try rows.first.map(Rows.node) else {
                throw MizanError(.invalidNodeToken, "The registration token is invalid or was already used.")
            }
            return (node, [])
        }
    }

    public func heartbeat(_ id: NodeID, report: NodeReport, now: Date) async throws -> Node {
        let rows = try await writeOne(
            """
            UPDATE mizan_nodes SET models = ?, max_concurrency = ?, health = ?, in_flight = ?, labels = ?, last_seen = ?, endpoints = ?,
                disconnected_at = CASE WHEN ? THEN coalesce(disconnected_at, ?) ELSE NULL END
            WHERE id = ? AND status = 'active'
            RETURNING \(Rows.nodeColumns)
            """,
            [
                Rows.json(report.models), .integer(max(1, report.maxConcurrency)), .text(report.health.rawValue),
                .integer(report.inFlight), Rows.json(report.labels), Rows.date(now), Rows.endpoints(report.endpoints),
                .integer(report.draining ? 1 : 0), Rows.date(now), Rows.id(id),
            ]
        )
        if let node = try rows.first.map(Rows.node) { return node }
        guard try await node(id) != nil else { throw MizanError(.nodeNotFound, "No node with id \(id).") }
        throw MizanError(.invalidNodeToken, "The node is not active.")
    }

    public func markConnected(_ id: NodeID, now: Date) async throws -> Node {
        let rows = try await writeOne(
            "UPDATE mizan_nodes SET disconnected_at = NULL, last_seen = ? WHERE id = ? AND status = 'active' RETURNING \(Rows.nodeColumns)",
            [Rows.date(now), Rows.id(id)]
        )
        if let node = try rows.first.map(Rows.node) { return node }
        guard try await node(id) != nil else { throw MizanError(.nodeNotFound, "No node with id \(id).") }
        throw MizanError(.invalidNodeToken, "The node is not active.")
    }

    public func markDisconnected(_ id: NodeID, unlessSeenAfter: Date?, now: Date) async throws -> Node? {
        let rows = try await writeOne(
            """
            UPDATE mizan_nodes SET disconnected_at = coalesce(disconnected_at, ?1)
            WHERE id = ?2 AND status = 'active'
                AND (disconnected_at IS NOT NULL OR ?3 IS NULL OR coalesce(last_seen, -1e300) <= ?3)
            RETURNING \(Rows.nodeColumns)
            """,
            [Rows.date(now), Rows.id(id), Rows.date(unlessSeenAfter)]
        )
        return try rows.first.map(Rows.node)
    }

    public func revokeNode(_ id: NodeID, now: Date) async throws -> Node {
        try await write { db in
            let rows = try db.query(
                "UPDATE mizan_nodes SET status = 'revoked', registration_token_hash = NULL WHERE id = ? RETURNING \(Rows.nodeColumns)",
                [Rows.id(id)]
            )
            guard let node = try rows.first.map(Rows.node) else { throw MizanError(.nodeNotFound, "No node with id \(id).") }
            return (node, [])
        }
    }

    public func nodes() async throws -> [Node] {
        try await read("SELECT \(Rows.nodeColumns) FROM mizan_nodes ORDER BY created_at, id").map(Rows.node)
    }

    public func node(_ id: NodeID) async throws -> Node? {
        try await read("SELECT \(Rows.nodeColumns) FROM mizan_nodes WHERE id = ?", [Rows.id(id)]).first.map(Rows.node)
    }

    public func node(tokenHash: Data) async throws -> Node? {
        try await read("SELECT \(Rows.nodeColumns) FROM mizan_nodes WHERE node_token_hash = ?", [Rows.blob(tokenHash)]).first.map(Rows.node)
    }
}
