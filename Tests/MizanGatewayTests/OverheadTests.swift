import Foundation
import MizanCore
import MizanGateway
import MizanProvider
import MizanTestSupport
import Testing

@Suite("X-Mizan-Overhead-Ms: the gateway's own time, without its upstream's")
struct OverheadTests {
    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }

    static func overhead(_ answer: HTTPAnswer) -> Double? {
        answer.headers["X-Mizan-Overhead-Ms"].first.flatMap(Double.init)
    }

    @Test func aRoutesAnswerLeavesOutTheProvidersTime() async throws {
        try await withMock(.init(models: ["mock-model"], latency: .milliseconds(400))) { base in
            let route = ProviderRoute(model: "mock-model", baseURL: base, upstreamModel: "mock-model")
            try await withGateway(routes: [route]) { (gateway: Harness) async throws in
                for stream in [false, true] {
                    let started = ContinuousClock.now
                    let answer = try await gateway.chat(stream: stream)
                    let total = ContinuousClock.now - started
                    #expect(answer.status == 200 && total >= .milliseconds(400))
                    let overhead = try #require(Self.overhead(answer), "stream \(stream): \(answer.headers)")
                    // The 400 ms upstream is left out: what remains fits in the rest of the time
                    // (however long a loaded machine made it).
                    #expect(overhead >= 0 && overhead <= Self.milliseconds(total) - 400, "stream \(stream): \(overhead) ms of \(total)")
                }
                // Answers the gateway gives by itself carry it too (all of their time is its own).
                let refused = try await gateway.send(.GET, "/v1/models")
                #expect(refused.status == 401 && Self.overhead(refused) != nil)
            }
        }
    }

    @Test func aNodesAnswerLeavesOutTheNodesTime() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let (_, token) = try await gateway.registerNode(models: ["local"])
            let started = ContinuousClock.now
            async let answer = gateway.chat(model: "local")
            let job = try #require(try await gateway.lease(token: token).first)
            try await Task.sleep(for: .milliseconds(400))
            #expect(try await gateway.complete(job, token: token).status == 200)
            let client = try await answer
            let total = ContinuousClock.now - started
            #expect(client.status == 200)
            let overhead = try #require(Self.overhead(client))
            // The node's 400 ms (from the job's acceptance to its result) is left out.
            #expect(overhead >= 0 && overhead <= Self.milliseconds(total) - 400, "\(overhead) ms of \(total)")
        }
    }
}
