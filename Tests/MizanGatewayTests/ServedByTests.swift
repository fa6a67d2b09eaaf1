import Foundation
import MizanCore
import MizanGateway
import MizanTestSupport
import Testing

/// `X-Mizan-Served-By`: every answer says who served it, JSON and streams, route and node.
@Suite("Who served an answer, in its X-Mizan-Served-By header")
struct ServedByTests {
    @Test func aRouteNamesItselfOnJSONAndStreams() async throws {
        try await withMock(.init(tokens: 3)) { base in
            let route = ProviderRoute(model: "mock-model", baseURL: base)
            try await withGateway(routes: [route]) { (gateway: Harness) async throws in
                let json = try await gateway.chat()
                #expect(json.status == 200)
                #expect(json.headers["X-Mizan-Served-By"].first == route.name, "\(json.headers)")
                let stream = try await gateway.chat(stream: true)
                #expect(stream.status == 200 && stream.text.hasSuffix("data: [DONE]\n\n"))
                #expect(stream.headers["X-Mizan-Served-By"].first == route.name, "\(stream.headers)")
                // No model, no server: nothing to name.
                let unknown = try await gateway.chat(model: "no-such-model")
                #expect(unknown.status == 404 && unknown.headers["X-Mizan-Served-By"].isEmpty)
            }
        }
    }

    @Test func aNodeIsNamedOnJSONAndStreams() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["m"], name: "gpu-box")
            async let json = gateway.chat(model: "m")
            let job = try #require(try await gateway.lease(token: node.token).first)
            #expect(try await gateway.complete(job, token: node.token).status == 200)
            let answer = try await json
            #expect(answer.status == 200)
            #expect(answer.headers["X-Mizan-Served-By"].first == "node:gpu-box", "\(answer.headers)")

            async let streamed = gateway.chat(model: "m", stream: true)
            let streaming = try #require(try await gateway.lease(token: node.token).first)
            let chunk =
                #"{"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}"#
            let frames = "data: \(chunk)\n\ndata: [DONE]\n\n"
            let posted = try await gateway.send(
                .POST, "/agent/v1/jobs/\(streaming.jobID)/stream?attempt=\(streaming.attempt)", token: node.token, body: frames)
            #expect(posted.status == 200)
            #expect(try await gateway.complete(streaming, token: node.token).status == 200)
            let stream = try await streamed
            #expect(stream.status == 200 && stream.text.contains("hi"))
            #expect(stream.headers["X-Mizan-Served-By"].first == "node:gpu-box", "\(stream.headers)")
        }
    }
}
