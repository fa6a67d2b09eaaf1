import Foundation
import Testing

@testable import MizanCore

@Suite("A node's condition: one decision for every view")
struct NodeConditionTests {
    static let now = Date(timeIntervalSinceReferenceDate: 1_000_000)

    static func node(
        status: Node.Status = .active, health: Node.Health = .healthy, seenAgo: TimeInterval? = 1, disconnected: Bool = false
    ) -> Node {
        Node(
            name: "n", models: ["m"], status: status, health: health, lastSeen: seenAgo.map { now.addingTimeInterval(-$0) },
            disconnectedAt: disconnected ? now.addingTimeInterval(-2) : nil)
    }

    @Test(arguments: [
        (node(), NodeCondition.healthy),
        (node(health: .unknown), .healthy),
        (node(health: .unhealthy), .unhealthy),
        (node(seenAgo: 31), .stale),
        (node(seenAgo: nil), .stale),
        (node(disconnected: true), .disconnected),
        (node(health: .unhealthy, seenAgo: 40, disconnected: true), .disconnected),
        (node(status: .pending, seenAgo: nil), .pending),
        (node(status: .revoked, disconnected: true), .revoked),
    ])
    func decidesFromStatusConnectionFreshnessAndHealth(node: Node, expected: NodeCondition) {
        #expect(NodeCondition.of(node, now: Self.now, staleAfter: 30) == expected)
    }

    @Test func onlyAHealthyNodeTakesRequestsAndOnlyAConnectedOneHoldsTheQueue() {
        #expect(NodeCondition.allCases.filter(\.takesRequests) == [.healthy])
        #expect(Set(NodeCondition.allCases.filter(\.holdsQueue)) == [.healthy, .unhealthy])
    }

    @Test func theAdminEntryCarriesTheNodeAndItsCondition() throws {
        let entry = AdminWire.NodeEntry(node: Self.node(disconnected: true), condition: .disconnected)
        let data = try AgentWire.encoder().encode(entry)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["condition"] as? String == "disconnected")
        #expect(object["name"] as? String == "n" && object["disconnectedAt"] != nil)
        // Dates travel in whole seconds: the decoded entry names the same node and condition.
        let decoded = try AgentWire.decoder().decode(AdminWire.NodeEntry.self, from: data)
        #expect(decoded.condition == .disconnected && decoded.node.id == entry.node.id && decoded.node.disconnectedAt != nil)
    }

    @Test func aDrainingReportSaysSoAndAnOrdinaryOneIsUnchanged() throws {
        let plain = String(decoding: try JSONEncoder().encode(NodeReport(models: ["m"], maxConcurrency: 1)), as: UTF8.self)
        #expect(!plain.contains("draining"))
        let draining = try JSONEncoder().encode(NodeReport(models: ["m"], maxConcurrency: 1, draining: true))
        #expect(try JSONDecoder().decode(NodeReport.self, from: draining).draining)
        #expect(try JSONDecoder().decode(NodeReport.self, from: Data(plain.utf8)).draining == false)
    }

    @Test func loadedModelsTravelOnlyWhenKnownAndANodeWithoutThemReadsAsUnknown() throws {
        let plain = String(decoding: try JSONEncoder().encode(NodeReport(models: ["m"], maxConcurrency: 1)), as: UTF8.self)
        #expect(!plain.contains("loadedModels"))
        #expect(try JSONDecoder().decode(NodeReport.self, from: Data(plain.utf8)).loadedModels == nil)
        let known = try JSONEncoder().encode(NodeReport(models: ["m", "n"], maxConcurrency: 1, loadedModels: ["n"]))
        #expect(try JSONDecoder().decode(NodeReport.self, from: known).loadedModels == ["n"])
        let node = Node(name: "n", models: ["m", "n"], loadedModels: ["n"])
        let object = try #require(try JSONSerialization.jsonObject(with: try AgentWire.encoder().encode(node)) as? [String: Any])
        #expect(object["loadedModels"] as? [String] == ["n"])
        let older =
            #"{"id":"\#(node.id)","name":"n","models":[],"maxConcurrency":1,"labels":{},"status":"active","health":"healthy","inFlight":0,"createdAt":"2026-01-01T00:00:00Z"}"#
        #expect(try AgentWire.decoder().decode(Node.self, from: Data(older.utf8)).loadedModels == [])
    }
}
