import Foundation
import MizanCore
import MizanStore
import Synchronization

/// The nodes of an SQLite file: their creation and registration, heartbeats, connection marks and
/// revocation, and what a node may take when it leases (its capacity, and its last-seen time,
/// which a lease writes at most once a second: ``NodesSeen``).
package final class SQLiteNodeRegistry: Sendable {
    private let connections: SQLiteConnections
    /// When a lease last wrote each node's last-seen time.
    private let seen = NodesSeen()

    /// What a node may lease now: its models and endpoints, and how many jobs at most.
    package struct Capacity: Sendable {
        /// The models it serves (deduplicated).
        package let models: [String]
        /// The endpoints it serves.
        package let endpoints: [Endpoint]
        /// How many jobs it may take (above 0).
        package let free: Int
        /// Its free slots, whatever the lease's limit.
        package let slotsFree: Int
    }

    /// The nodes' models, by the JSON text they are stored as (deduplicated).
    private static let nodeModels = ShapeCache<[String]>()
    /// The nodes' endpoints, by the JSON text they are stored as.
    private static let nodeEndpoints = ShapeCache<[Endpoint]>()

    /// - Parameter connections: The file's connections.
    package init(connections: SQLiteConnections) {
        self.connections = connections
    }

    /// Records a pending node (see `NodeStore`).
    package func createNode(_ node: Node, registrationTokenHash: Data) async throws -> Node {
        try await connections.write { db in
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

    /// Activates the pending node of a registration token (see `NodeStore`).
    package func registerNode(registrationTokenHash: Data, nodeTokenHash: Data, report: NodeReport, now: Date) async throws -> Node {
        try await connections.write { db in
            let rows = try db.query(
                """
                UPDATE mizan_nodes SET status = 'active', registration_token_hash = NULL, node_token_hash = ?,
                    models = ?, max_concurrency = ?, health = ?, in_flight = ?, labels = ?, last_seen = ?, endpoints = ?,
                    loaded_models = ?
                WHERE registration_token_hash = ? AND status = 'pending'
                RETURNING \(Rows.nodeColumns)
                """,
                [
                    Rows.blob(nodeTokenHash), Rows.json(report.models), .integer(max(1, report.maxConcurrency)),
                    .text(report.health.rawValue), .integer(report.inFlight), Rows.json(report.labels), Rows.date(now),
                    Rows.endpoints(report.endpoints), Rows.json(report.loadedModels ?? []), Rows.blob(registrationTokenHash),
                ]
            )
            guard let node = try rows.first.map(Rows.node) else {
                throw MizanError(.invalidNodeToken, "The registration token is invalid or was already used.")
            }
            return (node, [])
        }
    }

    /// Records a node's report (see `NodeStore`).
    package func heartbeat(_ id: NodeID, report: NodeReport, now: Date) async throws -> Node {
        let rows = try await connections.writeOne(
            """
            UPDATE mizan_nodes SET models = ?, max_concurrency = ?, health = ?, in_flight = ?, labels = ?, last_seen = ?, endpoints = ?,
                loaded_models = ?, disconnected_at = CASE WHEN ? THEN coalesce(disconnected_at, ?) ELSE NULL END
            WHERE id = ? AND status = 'active'
            RETURNING \(Rows.nodeColumns)
            """,
            [
                Rows.json(report.models), .integer(max(1, report.maxConcurrency)), .text(report.health.rawValue),
                .integer(report.inFlight), Rows.json(report.labels), Rows.date(now), Rows.endpoints(report.endpoints),
                Rows.json(report.loadedModels ?? []), .integer(report.draining ? 1 : 0), Rows.date(now), Rows.id(id),
            ]
        )
        if let node = try rows.first.map(Rows.node) { return node }
        guard try await node(id) != nil else { throw MizanError(.nodeNotFound, "No node with id \(id).") }
        throw MizanError(.invalidNodeToken, "The node is not active.")
    }

    /// Marks an active node connected (see `NodeStore`).
    package func markConnected(_ id: NodeID, now: Date) async throws -> Node {
        let rows = try await connections.writeOne(
            "UPDATE mizan_nodes SET disconnected_at = NULL, last_seen = ? WHERE id = ? AND status = 'active' RETURNING \(Rows.nodeColumns)",
            [Rows.date(now), Rows.id(id)]
        )
        if let node = try rows.first.map(Rows.node) { return node }
        guard try await node(id) != nil else { throw MizanError(.nodeNotFound, "No node with id \(id).") }
        throw MizanError(.invalidNodeToken, "The node is not active.")
    }

    /// Marks an active node disconnected (see `NodeStore`).
    package func markDisconnected(_ id: NodeID, unlessSeenAfter: Date?, now: Date) async throws -> Node? {
        let rows = try await connections.writeOne(
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

    /// Revokes a node (see `NodeStore`).
    package func revokeNode(_ id: NodeID, now: Date) async throws -> Node {
        try await connections.write { db in
            let rows = try db.query(
                "UPDATE mizan_nodes SET status = 'revoked', registration_token_hash = NULL WHERE id = ? RETURNING \(Rows.nodeColumns)",
                [Rows.id(id)]
            )
            guard let node = try rows.first.map(Rows.node) else { throw MizanError(.nodeNotFound, "No node with id \(id).") }
            return (node, [])
        }
    }

    /// Every node, oldest first.
    package func nodes() async throws -> [Node] {
        try await connections.read("SELECT \(Rows.nodeColumns) FROM mizan_nodes ORDER BY created_at, id").map(Rows.node)
    }

    /// The node with `id`.
    package func node(_ id: NodeID) async throws -> Node? {
        try await connections.read("SELECT \(Rows.nodeColumns) FROM mizan_nodes WHERE id = ?", [Rows.id(id)]).first.map(Rows.node)
    }

    /// The node whose token has `tokenHash`.
    package func node(tokenHash: Data) async throws -> Node? {
        try await connections.read("SELECT \(Rows.nodeColumns) FROM mizan_nodes WHERE node_token_hash = ?", [Rows.blob(tokenHash)]).first
            .map(Rows.node)
    }

    // MARK: Leases

    /// Whether a lease of `node` at `now` writes its last-seen time (then counted as written):
    /// a lease is a sign of life, written at most once a second.
    package func leaseWritesLastSeen(_ node: NodeID, now: Date) -> Bool {
        seen.due(node, now: now)
    }

    /// What `nodeID` may lease now, read on the writer inside the lease's transaction; writes its
    /// last-seen time first when `writeLastSeen` (``leaseWritesLastSeen(_:now:)``).
    /// - Parameters:
    ///   - limit: The most jobs the lease asks for.
    /// - Returns: Its capacity, or `nil` when it may take nothing (not active, unhealthy, full,
    ///   or serving no model or endpoint).
    /// - Throws: `MizanError` `nodeNotFound` for an unknown node, `invalidNodeToken` for a revoked one.
    package func capacity(of nodeID: NodeID, limit: Int, now: Date, writeLastSeen: Bool, on db: Database) throws -> Capacity? {
        let nodes = try db.query(
            """
            SELECT models, endpoints, max_concurrency, status, health,
                (SELECT count(*) FROM mizan_jobs WHERE state = 'leased' AND node_id = ?1) AS held
            FROM mizan_nodes WHERE id = ?1
            """,
            [Rows.id(nodeID)]
        )
        guard let node = nodes.first else { throw MizanError(.nodeNotFound, "No node with id \(nodeID).") }
        guard node.column("status")?.string != Node.Status.revoked.rawValue else {
            throw MizanError(.invalidNodeToken, "The node was revoked.")
        }
        if writeLastSeen { try db.query("UPDATE mizan_nodes SET last_seen = ? WHERE id = ?", [Rows.date(now), Rows.id(nodeID)]) }
        let modelsText = node.column("models")?.string ?? "[]"
        let models = Self.nodeModels.value(modelsText) {
            Array(Set((try? JSONDecoder().decode([String].self, from: Data(modelsText.utf8))) ?? []))
        }
        let endpointsText = node.column("endpoints")?.string
        let endpoints = Self.nodeEndpoints.value(endpointsText ?? "") { Rows.endpoints(endpointsText) }
        let slotsFree = Int(node.column("max_concurrency")?.integer ?? 0) - Int(node.column("held")?.integer ?? 0)
        let free = min(limit, slotsFree)
        guard node.column("status")?.string == Node.Status.active.rawValue,
            node.column("health")?.string != Node.Health.unhealthy.rawValue,
            free > 0, !models.isEmpty, !endpoints.isEmpty
        else { return nil }
        return Capacity(models: models, endpoints: endpoints, free: free, slotsFree: slotsFree)
    }
}

/// When a lease last wrote each node's last-seen time: a lease writes it when a second has
/// passed (or the clock went back), so that a node leasing in a loop does not write its row at
/// every lease. Bounded: past 10,000 nodes it starts again.
final class NodesSeen: Sendable {
    private let written = Mutex<[NodeID: Date]>([:])

    /// Whether a lease of `node` at `now` writes its last-seen time (then counted as written).
    func due(_ node: NodeID, now: Date) -> Bool {
        written.withLock { written in
            if let last = written[node], (0..<1).contains(now.timeIntervalSince(last)) { return false }
            if written.count >= 10_000 { written = [:] }
            written[node] = now
            return true
        }
    }
}
