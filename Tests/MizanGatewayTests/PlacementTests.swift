import Foundation
import MizanCore
import MizanGateway
import MizanTestSupport
import Testing

/// The placement seam: one policy decides which capacity serves a request, in which order.
@Suite("Placement: which capacity serves a request")
struct PlacementTests {
    /// Agent nodes first, provider routes when no node serves the model.
    struct NodesFirst: PlacementPolicy {
        func order(model: String, endpoint: Endpoint) -> [Capacity] { [.agentNodes, .providerRoutes] }
    }

    @Test func theDefaultTriesRoutesFirst() {
        #expect(RoutesFirst().order(model: "m", endpoint: .chatCompletions) == [.providerRoutes, .agentNodes])
    }

    @Test func aPolicyCanPutNodesBeforeRoutes() async throws {
        try await withMock { base in
            let routes = [ProviderRoute(model: "mock-model", baseURL: base)]
            try await withGateway(routes: routes, configuration: .init(placement: NodesFirst()), inProcess: true) { gateway in
                // No node serves the model yet: its route does.
                let routed = try await gateway.chat()
                #expect(routed.status == 200 && !routed.text.contains("from the node"), "\(routed.text)")
                // With a healthy node the node serves it, though the route is there.
                let node = try await gateway.registerNode(models: ["mock-model"])
                async let answer = gateway.chat()
                let job = try #require(try await gateway.lease(token: node.token).first)
                #expect(try await gateway.complete(job, token: node.token).status == 200)
                let served = try await answer
                #expect(served.status == 200 && served.text.contains("from the node"), "\(served.text)")
            }
        }
    }

    @Test func aKindLeftOutIsNeverTried() async throws {
        struct RoutesOnly: PlacementPolicy {
            func order(model: String, endpoint: Endpoint) -> [Capacity] { [.providerRoutes] }
        }
        try await withGateway(configuration: .init(placement: RoutesOnly()), inProcess: true) { gateway in
            _ = try await gateway.registerNode(models: ["node-model"])
            let answer = try await gateway.chat(model: "node-model")
            #expect(answer.status == 503 && answer.errorCode == "no_healthy_node", "\(answer.text)")
        }
    }
}
