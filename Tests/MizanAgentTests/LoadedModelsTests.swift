import Foundation
import Hummingbird
import Logging
import MizanCore
import MizanTestSupport
import Synchronization
import Testing

@testable import MizanAgent

/// A tiny server on a loopback port that answers `GET` on the paths given with their JSON, some
/// after a delay.
func withTinyServer<T: Sendable>(
    _ answers: [String: String], delays: [String: Duration] = [:], _ body: (_ base: String) async throws -> T
) async throws -> T {
    let router = Router()
    for (path, json) in answers {
        let delay = delays[path] ?? .zero
        router.get(RouterPath(path)) { _, _ in
            if delay > .zero { try await Task.sleep(for: delay) }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json)))
        }
    }
    return try await withServer({ onRunning in
        Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { await onRunning($0.localAddress?.port ?? 0) }, logger: Logger(label: "mizan.tests.tiny"))
    }) { port in
        try await body("http://127.0.0.1:\(port)")
    }
}

@Suite("Loaded models: what the local server holds, in heartbeats")
struct LoadedModelsTests {
    static let diskModels = #"{"object":"list","data":[{"id":"alpha:8b","object":"model"},{"id":"beta:7b","object":"model"}]}"#

    /// What a probe finds, asked up to five times: a probe that runs out of its time (a machine
    /// busy with the whole test suite) says unknown, and the agent asks again at its next check.
    static func answered(_ handler: ProviderHandler) async -> [String]? {
        for _ in 0..<5 {
            if let names = await handler.loadedModels() { return names }
        }
        return nil
    }

    @Test func aServerWithRunningModelsIsAskedThemAndAliasesNameThem() async throws {
        let ps = #"{"models":[{"name":"alpha:8b","model":"alpha:8b","size":5000,"expires_at":"2030-01-01T00:00:00Z"}]}"#
        try await withTinyServer(["/api/version": #"{"version":"0.5.1"}"#, "/api/ps": ps, "/v1/models": Self.diskModels]) { base in
            let handler = ProviderHandler(
                baseURL: base + "/v1", aliases: ModelAliases(["alpha": "alpha:8b"]), checkTimeout: .seconds(30),
                loadedProbeTimeout: .seconds(20))
            #expect(await handler.loadedModels() == nil, "unknown before a check found the server's kind")
            let catalog = try await handler.catalog()
            #expect(catalog.models == ["alpha:8b", "beta:7b", "alpha"])
            #expect(await Self.answered(handler) == ["alpha:8b", "alpha"], "only what /api/ps lists, by both names")
        }
    }

    @Test func aModelListCountsAsLoadedButWhatItsStatusSaysIsNot() async throws {
        let router = #"""
            {"object":"list","data":[
              {"id":"model-a","object":"model","status":{"value":"loaded","args":["--ctx-size","4096"]}},
              {"id":"model-b","object":"model","status":{"value":"unloaded"}},
              {"id":"model-c","object":"model","status":"loading"},
              {"id":"model-d","object":"model"}
            ]}
            """#
        try await withTinyServer(["/health": #"{"status":"ok"}"#, "/v1/models": router]) { base in
            let handler = ProviderHandler(baseURL: base + "/v1", checkTimeout: .seconds(30), loadedProbeTimeout: .seconds(20))
            _ = try await handler.catalog()
            #expect(await Self.answered(handler) == ["model-a", "model-d"])
        }
        #expect(LoadedModels.readModelList(Data(#"{"data":[{"id":"a","status":"LOADED"},{"id":"b","status":{}}]}"#.utf8)) == ["a", "b"])
        #expect(LoadedModels.readModelList(Data(#"{"error":"no"}"#.utf8)) == nil)
        #expect(LoadedModels.readRunning(Data(#"{"models":[{"model":"x:1b"},{"name":""}]}"#.utf8)) == ["x:1b"])
        #expect(LoadedModels.readRunning(Data("[]".utf8)) == nil)
    }

    @Test func aServerThatDoesNotAnswerInTimeIsUnknown() async throws {
        try await withTinyServer(["/api/version": "{}", "/v1/models": Self.diskModels]) { base in
            let handler = ProviderHandler(baseURL: base + "/v1")
            _ = try await handler.catalog()
            #expect(await handler.loadedModels() == nil, "no /api/ps: unknown")
        }
        try await withTinyServer(["/health": "{}", "/v1/models": Self.diskModels]) { base in
            let handler = ProviderHandler(baseURL: base + "/v1", checkTimeout: .seconds(30), loadedProbeTimeout: .seconds(20))
            _ = try await handler.catalog()
            #expect(await Self.answered(handler) == ["alpha:8b", "beta:7b"])
        }
        // A server whose model list takes longer than the probe may wait.
        try await withTinyServer(["/health": "{}", "/v1/models": Self.diskModels], delays: ["/v1/models": .seconds(6)]) { base in
            let handler = ProviderHandler(baseURL: base + "/v1", models: ["alpha:8b"])
            let healthy = try await handler.catalog().healthy
            #expect(healthy)
            let started = ContinuousClock.now
            #expect(await handler.loadedModels() == nil)
            #expect(ContinuousClock.now - started < .seconds(5), "the probe gives up after its 2 seconds")
        }
    }

    /// What a handler says goes out with the heartbeats: the models the node serves, and
    /// nothing (unknown) when it does not answer in time.
    @Test func heartbeatsCarryTheModelsTheNodeServes() async throws {
        try await withStack { stack in
            let loaded = LoadedAnswer(["m", "not-served", "m"])
            let handler = ReportingHandler(models: ["m", "n"], loaded: loaded)
            let agent = RunningAgent.start(
                stack.configuration(tokenFile: try temporaryTokenFile(), registrationToken: try await stack.registrationToken()),
                handler: handler)
            try await waitUntil("the node reports what is loaded", timeout: .seconds(30), poll: .milliseconds(20)) {
                try await stack.gateway.dispatcher.nodes().first?.loadedModels == ["m"]
            }
            loaded.set(nil, hang: true)
            try await waitUntil("a probe that hangs leaves them unknown", timeout: .seconds(15), poll: .milliseconds(50)) {
                try await stack.gateway.dispatcher.nodes().first?.loadedModels == []
            }
            #expect(try await stack.gateway.dispatcher.nodes().first?.health == .healthy, "and the node keeps its place")
            try await agent.stop()
        }
    }
}

/// What ``ReportingHandler`` answers about loaded models.
final class LoadedAnswer: Sendable {
    private let value: Mutex<(names: [String]?, hang: Bool)>
    init(_ names: [String]?) { value = Mutex((names, false)) }
    func set(_ names: [String]?, hang: Bool = false) { value.withLock { $0 = (names, hang) } }
    var current: (names: [String]?, hang: Bool) { value.withLock { $0 } }
}

/// A handler that answers every job with `{}` and says what `loaded` holds is loaded.
struct ReportingHandler: JobHandler {
    let models: [String]
    let loaded: LoadedAnswer

    func catalog() async throws -> HandlerCatalog { HandlerCatalog(models: models) }
    func respond(to job: AgentJob) async throws -> JobResult { JobResult(body: Data("{}".utf8)) }
    func loadedModels() async -> [String]? {
        let (names, hang) = loaded.current
        if hang { try? await Task.sleep(for: .seconds(60)) }
        return names
    }
}
