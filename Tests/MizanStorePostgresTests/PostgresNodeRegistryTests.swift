import Foundation
import MizanCore
import MizanPostgresTesting
import MizanStore
import Testing

@testable import MizanStorePostgres

@Suite("PostgreSQL node registry", .timeLimit(.minutes(2)))
struct PostgresNodeRegistryTests {
    /// A registry on a fresh, migrated database, its statements counted.
    func withRegistry(_ test: @Sendable (PostgresNodeRegistry, StatementCounter) async throws -> Void) async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let statements = StatementCounter()
            let context = makeContext(client, statements: statements)
            try await context.client.schema.migrate()
            try await test(PostgresNodeRegistry(context: context), statements)
        }
    }

    @Test func aNodesLifeCostsOneStatementPerStep() async throws {
        try await withRegistry { registry, statements in
            let registration = Data("registration".utf8)
            let token = Data("node-token".utf8)
            let created = try await registry.createNode(Node(name: "gpu-1"), registrationTokenHash: registration)
            #expect(created.status == .pending)
            let report = NodeReport(models: ["m1", "m2"], maxConcurrency: 4, labels: ["zone": "a"])
            let registered = try await registry.registerNode(
                registrationTokenHash: registration, nodeTokenHash: token, report: report, now: Date())
            #expect(registered.status == .active && registered.models == ["m1", "m2"] && registered.labels == ["zone": "a"])
            #expect(try await registry.node(tokenHash: token)?.id == created.id)
            let beat = try await registry.heartbeat(
                created.id, report: NodeReport(models: ["m1"], maxConcurrency: 2, inFlight: 1), now: Date())
            #expect(beat.models == ["m1"] && beat.maxConcurrency == 2 && beat.inFlight == 1)
            let gone = try await registry.markDisconnected(created.id, unlessSeenAfter: nil, now: Date())
            #expect(gone?.disconnectedAt != nil)
            let back = try await registry.markConnected(created.id, now: Date())
            #expect(back.disconnectedAt == nil)
            let revoked = try await registry.revokeNode(created.id, now: Date())
            #expect(revoked.status == .revoked)
            #expect(statements.value == 7, "seven steps, seven statements")
            #expect(try await registry.nodes().map(\.id) == [created.id])
        }
    }

    @Test func refusalsSayWhy() async throws {
        try await withRegistry { registry, _ in
            let registration = Data("registration".utf8)
            let node = try await registry.createNode(Node(name: "n"), registrationTokenHash: registration)
            #expect(await mizanCode { try await registry.createNode(node, registrationTokenHash: Data("other".utf8)) } == .conflict)
            let report = NodeReport(models: ["m1"], maxConcurrency: 1)
            #expect(
                await mizanCode { try await registry.heartbeat(node.id, report: report, now: Date()) } == .invalidNodeToken,
                "not active yet")
            #expect(await mizanCode { try await registry.heartbeat(NodeID(), report: report, now: Date()) } == .nodeNotFound)
            _ = try await registry.registerNode(
                registrationTokenHash: registration, nodeTokenHash: Data("t".utf8), report: report, now: Date())
            #expect(
                await mizanCode {
                    try await registry.registerNode(
                        registrationTokenHash: registration, nodeTokenHash: Data("t2".utf8), report: report, now: Date())
                } == .invalidNodeToken, "a registration token works once")
            _ = try await registry.revokeNode(node.id, now: Date())
            #expect(await mizanCode { try await registry.markConnected(node.id, now: Date()) } == .invalidNodeToken)
            #expect(await mizanCode { try await registry.revokeNode(NodeID(), now: Date()) } == .nodeNotFound)
        }
    }

    @Test func aNodeSeenSinceIsNotMarkedGone() async throws {
        try await withRegistry { registry, _ in
            let registration = Data("registration".utf8)
            let node = try await registry.createNode(Node(name: "n"), registrationTokenHash: registration)
            let seen = Date()
            _ = try await registry.registerNode(
                registrationTokenHash: registration, nodeTokenHash: Data("t".utf8), report: NodeReport(models: ["m1"], maxConcurrency: 1),
                now: seen)
            let kept = try await registry.markDisconnected(node.id, unlessSeenAfter: seen.addingTimeInterval(-5), now: Date())
            #expect(kept == nil, "its agent was seen after the channel ended")
            let gone = try await registry.markDisconnected(node.id, unlessSeenAfter: seen.addingTimeInterval(5), now: Date())
            #expect(gone?.disconnectedAt != nil)
        }
    }
}
