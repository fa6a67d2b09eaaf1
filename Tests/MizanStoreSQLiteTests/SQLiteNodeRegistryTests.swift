import Foundation
import MizanCore
import MizanStore
import MizanStoreSQLite
import Testing

@Suite("SQLite node registry", .timeLimit(.minutes(1)))
struct SQLiteNodeRegistryTests {
    /// A registry on a fresh file, with one registered node of model m1 (4 slots).
    func withNode(_ body: (SQLiteNodeRegistry, Node, SQLiteFile) async throws -> Void) async throws {
        try await withSQLiteFile { file, _ in
            let nodes = SQLiteNodeRegistry(connections: file.connections)
            let now = Date()
            _ = try await nodes.createNode(Node(name: "n", createdAt: now), registrationTokenHash: Data([1]))
            let node = try await nodes.registerNode(
                registrationTokenHash: Data([1]), nodeTokenHash: Data([2]), report: NodeReport(models: ["m1", "m1"], maxConcurrency: 4),
                now: now)
            try await body(nodes, node, file)
        }
    }

    /// What `node` may lease now, read on the writer as a lease does.
    func capacity(_ nodes: SQLiteNodeRegistry, _ file: SQLiteFile, _ node: NodeID, limit: Int = 10, now: Date = Date()) async throws
        -> SQLiteNodeRegistry.Capacity?
    {
        try await file.connections.write { db in
            (try nodes.capacity(of: node, limit: limit, now: now, writeLastSeen: false, on: db), [])
        }
    }

    @Test func aRegistrationTokenRegistersOnce() async throws {
        try await withNode { nodes, node, _ in
            #expect(node.status == .active && node.models == ["m1", "m1"])
            #expect(try await nodes.node(tokenHash: Data([2]))?.id == node.id)
            await #expect(throws: MizanError.self) {
                _ = try await nodes.registerNode(
                    registrationTokenHash: Data([1]), nodeTokenHash: Data([3]), report: NodeReport(models: ["m1"], maxConcurrency: 1),
                    now: Date())
            }
            let all = try await nodes.nodes()
            #expect(all.map(\.id) == [node.id])
        }
    }

    @Test func aHeartbeatRecordsTheReportAndDrainingMarksDisconnected() async throws {
        try await withNode { nodes, node, _ in
            let now = Date().addingTimeInterval(5)
            let beat = try await nodes.heartbeat(node.id, report: NodeReport(models: ["m2"], maxConcurrency: 2, inFlight: 1), now: now)
            #expect(beat.models == ["m2"] && beat.maxConcurrency == 2 && beat.inFlight == 1 && beat.lastSeen == now)
            #expect(beat.disconnectedAt == nil)
            let draining = try await nodes.heartbeat(
                node.id, report: NodeReport(models: ["m2"], maxConcurrency: 2, draining: true), now: now + 1)
            #expect(draining.disconnectedAt == now + 1)
            let connected = try await nodes.markConnected(node.id, now: now + 2)
            #expect(connected.disconnectedAt == nil && connected.lastSeen == now + 2)
            // Seen after the cut-off: not marked; then marked, and the first mark stays.
            #expect(try await nodes.markDisconnected(node.id, unlessSeenAfter: now, now: now + 3) == nil)
            #expect(try await nodes.markDisconnected(node.id, unlessSeenAfter: nil, now: now + 4)?.disconnectedAt == now + 4)
            #expect(try await nodes.markDisconnected(node.id, unlessSeenAfter: nil, now: now + 5)?.disconnectedAt == now + 4)
        }
    }

    @Test func aNodesCapacityIsItsFreeSlotsOfItsModels() async throws {
        try await withNode { nodes, node, file in
            let capacity = try #require(try await self.capacity(nodes, file, node.id, limit: 10))
            #expect(capacity.models == ["m1"], "models deduplicated")
            #expect(capacity.free == 4 && capacity.endpoints == Endpoint.all)
            #expect(try await self.capacity(nodes, file, node.id, limit: 3)?.free == 3, "at most the lease's limit")
            _ = try await nodes.heartbeat(node.id, report: NodeReport(models: ["m1"], maxConcurrency: 4, health: .unhealthy), now: Date())
            #expect(try await self.capacity(nodes, file, node.id) == nil, "an unhealthy node takes nothing")
            _ = try await nodes.revokeNode(node.id, now: Date())
            await #expect(throws: MizanError.self) { _ = try await self.capacity(nodes, file, node.id) }
            await #expect(throws: MizanError.self) { _ = try await self.capacity(nodes, file, NodeID()) }
        }
    }

    @Test func aLeaseWritesTheLastSeenTimeAtMostOnceASecond() async throws {
        try await withNode { nodes, node, file in
            let now = Date().addingTimeInterval(60)
            #expect(nodes.leaseWritesLastSeen(node.id, now: now))
            #expect(!nodes.leaseWritesLastSeen(node.id, now: now + 0.5))
            #expect(nodes.leaseWritesLastSeen(node.id, now: now + 1))
            #expect(nodes.leaseWritesLastSeen(node.id, now: now - 10), "a clock that went back writes")
            _ = try await file.connections.write { db in
                (try nodes.capacity(of: node.id, limit: 1, now: now, writeLastSeen: true, on: db), [])
            }
            #expect(try await nodes.node(node.id)?.lastSeen == now)
        }
    }
}
