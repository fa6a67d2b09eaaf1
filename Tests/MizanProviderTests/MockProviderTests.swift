import Foundation
import MizanCore
import MizanMockProvider
import MizanProvider
import MizanTestSupport
import Synchronization
import Testing

/// The mock provider's scheduling knobs over real HTTP on loopback: slots, service time and
/// the prefix cache.
@Suite("Mock provider: slots, service time and prefix cache", .timeLimit(.minutes(2)))
struct MockProviderTests {
    let client = ProviderClient.shared

    /// The mock's root URL (its `/mock/…` paths).
    static func root(_ endpoint: ProviderEndpoint) -> String { endpoint.baseURL.replacingOccurrences(of: "/v1", with: "") }

    static func stats(_ endpoint: ProviderEndpoint) async throws -> [String: Int] {
        let answer = try await sendHTTP(.GET, root(endpoint) + "/mock/stats", timeout: .seconds(30))
        return (try JSONSerialization.jsonObject(with: answer.body) as? [String: Int]) ?? [:]
    }

    @Test func slotsServeAtMostThatManyAtOnceAndTheRestWaitInOrder() async throws {
        try await withMockProvider(.init(tokens: 2, slots: 2, serviceTime: .milliseconds(400))) { endpoint in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<6 { group.addTask { _ = try await client.chatCompletion(chatBody(), endpoint: endpoint) } }
                try await waitUntil("requests wait for a slot", poll: .milliseconds(5)) {
                    try await Self.stats(endpoint)["waiting"] ?? 0 >= 2
                }
                try await group.waitForAll()
            }
            let stats = try await Self.stats(endpoint)
            #expect(stats["requests"] == 6 && stats["maxInFlight"] == 2 && stats["waiting"] == 0, "\(stats)")
        }
        // One slot: answers come in the order the requests arrived.
        try await withMockProvider(.init(tokens: 2, slots: 1, serviceTime: .milliseconds(250))) { endpoint in
            let finished = Finished()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<4 {
                    group.addTask {
                        _ = try await client.streamChatCompletion(chatBody(stream: true), endpoint: endpoint).reduce(0) { n, _ in n + 1 }
                        finished.append(index)
                    }
                    try await waitUntil("request \(index) arrived", poll: .milliseconds(2)) {
                        let stats = try await Self.stats(endpoint)
                        return (stats["inFlight"] ?? 0) + (stats["waiting"] ?? 0) + (stats["streamsCompleted"] ?? 0) == index + 1
                    }
                }
                try await group.waitForAll()
            }
            #expect(finished.all == [0, 1, 2, 3])
            #expect(try await Self.stats(endpoint)["maxInFlight"] == 1)
        }
    }

    @Test func aServiceTimeHoldsEachAnswerThatLongWithTheTokensSpreadOverIt() async throws {
        let latency = Duration.milliseconds(150)
        let service = Duration.milliseconds(700)
        try await withMockProvider(.init(latency: latency, tokens: 5, serviceTime: service)) { endpoint in
            var started = ContinuousClock.now
            let answer = try await client.chatCompletion(chatBody(), endpoint: endpoint)
            #expect(ContinuousClock.now - started >= service, "a JSON answer comes at the service time")
            #expect(answer.usage?.completionTokens == 5)

            for (path, body) in [
                (Endpoint.chatCompletions, chatBody(stream: true)),
                (.responses, Data(#"{"model":"mock-model","input":"hi","stream":true}"#.utf8)),
            ] {
                started = .now
                var times: [Duration] = []
                for try await _ in try await client.stream(path, body, endpoint: endpoint) { times.append(.now - started) }
                let first = try #require(times.first)
                let last = try #require(times.last)
                #expect(times.count > 5)
                #expect(first >= latency, "\(path): the first event after the latency")
                #expect(last >= service, "\(path): the last at the service time")
            }
        }
    }

    @Test func aServedPrefixAnswersSoonerAndSaysSo() async throws {
        // Far apart, so that a hit is told from a miss on a machine busy with the whole suite.
        let latency = Duration.milliseconds(2_000)
        let configuration = MockProvider.Configuration(latency: latency, tokens: 2, prefixCache: true, cachedPrefill: .milliseconds(5))
        try await withMockProvider(configuration) { endpoint in
            func send(_ path: String, _ body: String) async throws -> (cache: String?, elapsed: Duration) {
                let started = ContinuousClock.now
                let answer = try await sendHTTP(.POST, endpoint.baseURL + path, body: body, timeout: .seconds(10))
                #expect(answer.status == 200, "\(answer.text)")
                return (answer.headers.first(name: "X-Mock-Prefix-Cache"), .now - started)
            }
            func chat(_ messages: String, stream: Bool = false) async throws -> (cache: String?, elapsed: Duration) {
                try await send("/chat/completions", #"{"model":"mock-model","stream":\#(stream),"messages":[\#(messages)]}"#)
            }
            let system = #"{"role":"system","content":"be brief"}"#
            let first = try await chat(system + #",{"role":"user","content":"one"}"#)
            #expect(first.cache == "miss" && first.elapsed >= latency)
            let second = try await chat(system + #",{"role":"user","content":"two"}"#)
            // (How much sooner a hit answers is the scheduling benchmark's to measure: on two cores
            // busy with the whole suite an upper bound on time is noise.)
            #expect(second.cache == "hit", "the same prefix, another question: \(second)")
            #expect(try await chat(#"{"role":"system","content":"be long"},{"role":"user","content":"one"}"#).cache == "miss")
            let history = system + #",{"role":"user","content":"one"},{"role":"assistant","content":"mizan balances"}"#
            // The next turn of the first conversation (its messages, the answer, a new question) finds it.
            #expect(try await chat(history + #",{"role":"user","content":"three"}"#, stream: true).cache == "hit")
            let streamed = try await chat(history + #",{"role":"user","content":"four"}"#, stream: true)
            #expect(streamed.cache == "hit", "a stream's first token too")
            #expect(try await chat(#"{"role":"user","content":"alone"}"#).cache == "miss", "nothing before the newest turn")

            let items = #"{"role":"user","content":"a"},{"role":"assistant","content":"b"}"#
            #expect(
                try await send("/responses", #"{"model":"mock-model","input":[\#(items),{"role":"user","content":"c"}]}"#).cache == "miss")
            #expect(
                try await send("/responses", #"{"model":"mock-model","input":[\#(items),{"role":"user","content":"d"}]}"#).cache == "hit")
            #expect(try await send("/responses", #"{"model":"mock-model","input":"just text"}"#).cache == "miss")
            #expect(try await send("/completions", #"{"model":"mock-model","prompt":"hi"}"#).cache == nil, "no conversation, no cache")

            let stats = try await Self.stats(endpoint)
            #expect(stats["prefixHits"] == 4 && stats["prefixMisses"] == 5, "\(stats)")
        }
        // Without the cache: no header, nothing counted.
        try await withMockProvider(.init(tokens: 2)) { endpoint in
            let answer = try await sendHTTP(
                .POST, endpoint.baseURL + "/chat/completions", body: String(decoding: chatBody(), as: UTF8.self))
            #expect(answer.status == 200 && answer.headers.first(name: "X-Mock-Prefix-Cache") == nil)
            let stats = try await Self.stats(endpoint)
            #expect(stats["prefixHits"] == 0 && stats["prefixMisses"] == 0)
        }
    }
}

/// The requests that finished, in order.
final class Finished: Sendable {
    private let order = Mutex<[Int]>([])
    func append(_ index: Int) { order.withLock { $0.append(index) } }
    var all: [Int] { order.withLock { $0 } }
}
